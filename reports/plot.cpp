#include "reports/plot.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "reports/text.hpp"

namespace lsb {
namespace {

// Tableau 10: distinct on screen and in grey print.
const char* const kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

// Compact tick text: 1K, 1.5K, 1M (n); 256 MiB, 4 GiB; 100 us, 10 ms, 2 s; 40%; 0.5.
std::string tick_text(double v, AxisUnit unit) {
  auto trim = [](double x) {
    return x == std::round(x) && std::abs(x) < 1e6 ? fmt::format("{:.0f}", x) : fmt::format("{:.3g}", x);
  };
  switch (unit) {
    case AxisUnit::count:
      if (std::abs(v) >= 1024.0 * 1024) return trim(v / (1024.0 * 1024)) + "M";
      if (std::abs(v) >= 1024) return trim(v / 1024) + "K";
      return trim(v);
    case AxisUnit::bytes:
      if (v >= 1024.0 * 1024 * 1024) return trim(v / (1024.0 * 1024 * 1024)) + " GiB";
      if (v >= 1024.0 * 1024) return trim(v / (1024.0 * 1024)) + " MiB";
      if (v >= 1024) return trim(v / 1024) + " KiB";
      return trim(v) + " B";
    case AxisUnit::seconds:
      if (v >= 1) return trim(v) + " s";
      if (v >= 1e-3) return trim(v * 1e3) + " ms";
      return trim(v * 1e6) + " us";
    case AxisUnit::percent: return trim(v) + "%";
    case AxisUnit::plain: break;
  }
  return trim(v);
}

// One axis: its range (after padding) and its ticks.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  double t(double v) const { return log ? std::log10(v) : v; }
  double frac(double v) const { return (t(v) - t(lo)) / (t(hi) - t(lo)); }
};

Axis make_axis(std::vector<double> values, bool log, AxisUnit unit) {
  Axis a;
  a.log = log;
  if (log) values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !(v > 0); }), values.end());
  if (values.empty()) values = {log ? 1.0 : 0.0, log ? 10.0 : 1.0};
  double lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
  if (log) {
    if (hi / lo < 1.5) lo /= 1.25, hi *= 1.25;
    const double pad = std::pow(hi / lo, 0.05);
    a.lo = lo / pad, a.hi = hi * pad;
    // Powers of 2 for sizes, of 10 for the rest (with 2 and 5 between when fewer than 3 decades show).
    const bool binary = unit == AxisUnit::count || unit == AxisUnit::bytes;
    std::vector<double> cand;
    if (binary) {
      for (int e = static_cast<int>(std::floor(std::log2(a.lo))); e <= static_cast<int>(std::ceil(std::log2(a.hi))); ++e)
        cand.push_back(std::ldexp(1.0, e));
    } else {
      const int e0 = static_cast<int>(std::floor(std::log10(a.lo))), e1 = static_cast<int>(std::ceil(std::log10(a.hi)));
      for (int e = e0; e <= e1; ++e)
        for (double m : (e1 - e0 <= 3 ? std::vector<double>{1, 2, 5} : std::vector<double>{1}))
          cand.push_back(m * std::pow(10.0, e));
    }
    std::vector<double> inside;
    for (double c : cand)
      if (c >= a.lo && c <= a.hi) inside.push_back(c);
    const std::size_t stride = std::max<std::size_t>(1, (inside.size() + 7) / 8);  // at most 8 ticks
    for (std::size_t i = 0; i < inside.size(); i += stride) a.ticks.push_back(inside[i]);
    return a;
  }
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) lo -= 0.5, hi += 0.5;
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  a.lo = std::floor(lo / step) * step, a.hi = std::ceil(hi / step) * step;
  for (double v = a.lo; v <= a.hi + step * 1e-9; v += step) a.ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return a;
}

constexpr double kWidth = 760, kHeight = 420, kLeft = 80, kRight = 230, kTop = 40, kBottom = 56;
constexpr std::size_t kLegendChars = 26;  // longer names are cut with an ellipsis (data-name keeps them whole)

}  // namespace

std::string run_label(const nlohmann::json& c) {
  const std::string device = c.value("device", "cpu"), precision = c.value("precision", "fp32");
  return variant_label(c) + (device == "cpu" ? "" : " " + device) + (precision == "fp32" ? "" : " " + precision);
}

std::string variant_label(const nlohmann::json& c) {
  std::string s = c.contains("variant") ? field_text(c, "variant") : "?";
  char sep = ':';
  const VariantInfo* info = c.contains("variant") && c["variant"].is_string() ? find_variant(c["variant"].get<std::string>()) : nullptr;
  if (c.contains("variant_params"))
    for (const auto& [k, v] : c["variant_params"].items()) {
      if (info && info->is_length_key(k) && c.contains("n") && v == c["n"]) continue;  // a length key equal to n
      s += fmt::format("{}{}={}", sep, k, v.is_string() ? v.get<std::string>() : v.dump());
      sep = ',';
    }
  return s;
}

std::string sweep_group(const nlohmann::json& c) {
  std::string key = fmt::format("{}, {}, b={}, D={}, h={}", field_text(c, "mode"), field_text(c, "device"), field_text(c, "batch"),
                                field_text(c, "dim"), field_text(c, "heads"));
  if (field_text(c, "mode").rfind("attn-", 0) != 0) key += fmt::format(", L={}, Dmlp={}", field_text(c, "layers"), field_text(c, "mlp_dim"));
  if (c.contains("task")) key += ", task " + field_text(c, "task");
  if (c.value("precision", "fp32") != "fp32") key += ", " + field_text(c, "precision");
  return key;
}

std::string sweep_group_slug(const nlohmann::json& c) {
  std::string s = fmt::format("{}-{}-b{}-d{}-h{}", field_text(c, "mode"), field_text(c, "device"), field_text(c, "batch"), field_text(c, "dim"),
                              field_text(c, "heads"));
  if (field_text(c, "mode").rfind("attn-", 0) != 0) s += fmt::format("-l{}-mlp{}", field_text(c, "layers"), field_text(c, "mlp_dim"));
  if (c.contains("task")) s += fmt::format("-{}", field_text(c, "task"));
  if (c.value("precision", "fp32") != "fp32") s += fmt::format("-{}", field_text(c, "precision"));
  return slugify(s);
}

std::string train_curve_slug(const std::string& task, const std::string& curve) {
  return slugify(fmt::format("train-{}-{}", task, curve));
}

std::string render_svg(const Plot& p) {
  std::vector<double> xs, ys;
  bool any_oom = false;
  for (const auto& s : p.series) {
    for (const auto& [x, y] : s.points) xs.push_back(x), ys.push_back(y);
    for (double x : s.oom_x) xs.push_back(x), any_oom = true;
  }
  if (p.budget_y > 0) ys.push_back(p.budget_y);
  const Axis ax = make_axis(xs, p.log_x, p.x_unit), ay = make_axis(ys, p.log_y, p.y_unit);
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + ax.frac(x) * pw; };
  auto py = [&](double y) { return kTop + (1 - ay.frac(y)) * ph; };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n"
      "<title>{2}</title>\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text class=\"title\" x=\"{3}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{2}</text>\n",
      kWidth, kHeight, xml_escape(p.title), kLeft + pw / 2);
  // Axes: grid line and label per tick, then the axis label.
  svg += fmt::format("<g class=\"axis\" data-axis=\"x\" data-label=\"{}\">\n", xml_escape(p.x_label));
  for (double t : ax.ticks)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e0e0e0\"/>"
        "<text class=\"tick\" data-value=\"{3}\" x=\"{0:.1f}\" y=\"{4}\" text-anchor=\"middle\">{5}</text>\n",
        px(t), kTop, kTop + ph, t, kTop + ph + 16, xml_escape(tick_text(t, p.x_unit)));
  svg += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n</g>\n", kLeft + pw / 2,
                     kHeight - 14, xml_escape(p.x_label + (p.log_x ? " (log scale)" : "")));
  svg += fmt::format("<g class=\"axis\" data-axis=\"y\" data-label=\"{}\">\n", xml_escape(p.y_label));
  for (double t : ay.ticks)
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e0e0e0\"/>"
        "<text class=\"tick\" data-value=\"{3}\" x=\"{4}\" y=\"{5:.1f}\" text-anchor=\"end\">{6}</text>\n",
        kLeft, py(t), kLeft + pw, t, kLeft - 6, py(t) + 4, xml_escape(tick_text(t, p.y_unit)));
  svg += fmt::format(
      "<text class=\"label\" transform=\"translate(16 {0}) rotate(-90)\" text-anchor=\"middle\">{1}</text>\n</g>\n",
      kTop + ph / 2, xml_escape(p.y_label + (p.log_y ? " (log scale)" : "")));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", kLeft, kTop,
                     pw, ph);
  const double oom_y = p.budget_y > 0 ? py(p.budget_y) : kTop;
  if (p.budget_y > 0)
    svg += fmt::format(
        "<line class=\"budget\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\" fill=\"#c00\">budget {5}</text>\n",
        kLeft, oom_y, kLeft + pw, kLeft + pw - 4, oom_y - 5, xml_escape(tick_text(p.budget_y, p.y_unit)));
  // Series and legend.
  std::string legend = "<g class=\"legend\">\n";
  for (std::size_t i = 0; i < p.series.size(); ++i) {
    const auto& s = p.series[i];
    const char* colour = kColours[i % std::size(kColours)];
    auto pts = s.points;
    std::sort(pts.begin(), pts.end());
    svg += fmt::format("<g class=\"series\" data-name=\"{}\" stroke=\"{}\" fill=\"{}\">\n", xml_escape(s.name), colour,
                       colour);
    std::string line;
    for (const auto& [x, y] : pts) line += fmt::format("{}{:.1f},{:.1f}", line.empty() ? "" : " ", px(x), py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke-width=\"2\" points=\"{}\"/>\n", line);
    const double r = pts.size() > 40 ? 1.5 : 3;  // dense curves (training logs): small markers
    for (const auto& [x, y] : pts)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" data-x=\"{}\" data-y=\"{}\"/>\n", px(x), py(y), r,
                         x, y);
    for (double x : s.oom_x)
      svg += fmt::format(
          "<path class=\"oom\" data-x=\"{2}\" d=\"M{0:.1f} {1:.1f} l8 8 m0 -8 l-8 8\" transform=\"translate(-4 -4)\" "
          "stroke-width=\"2\" fill=\"none\"/>\n",
          px(x), oom_y, x);
    svg += "</g>\n";
    const double ly = kTop + 8 + 18 * static_cast<double>(i);
    legend += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\" stroke-width=\"2\"/>"
        "<text x=\"{4}\" y=\"{5:.1f}\">{6}</text>\n",
        kLeft + pw + 12, ly, kLeft + pw + 32, colour, kLeft + pw + 38, ly + 4,
        xml_escape(s.name.size() > kLegendChars ? s.name.substr(0, kLegendChars - 1) + "…" : s.name));
  }
  if (any_oom) {
    const double ly = kTop + 8 + 18 * static_cast<double>(p.series.size());
    legend += fmt::format(
        "<path d=\"M{0} {1:.1f} l8 8 m0 -8 l-8 8\" stroke=\"#444\" stroke-width=\"2\"/>"
        "<text x=\"{2}\" y=\"{3:.1f}\">out of memory</text>\n",
        kLeft + pw + 18, ly - 4, kLeft + pw + 38, ly + 4);
  }
  return svg + legend + "</g>\n</svg>\n";
}

std::vector<Plot> report_plots(const nlohmann::json& report) {
  std::vector<Plot> plots;
  // Sweep groups, in the order of their first point.
  std::vector<std::string> order;
  std::map<std::string, std::pair<Plot, Plot>> groups;  // key -> (time, memory)
  auto series_of = [](Plot& p, const std::string& name) -> PlotSeries& {
    for (auto& s : p.series)
      if (s.name == name) return s;
    p.series.push_back({name, {}, {}});
    return p.series.back();
  };
  for (const auto& r : report["results"]) {
    if (field_text(r, "kind") != "sweep-point") continue;
    const auto& c = r["config"];
    const std::string key = sweep_group(c);
    if (!groups.count(key)) {
      order.push_back(key);
      const std::string slug = sweep_group_slug(c);
      Plot t{slug + "-time", "Time per call: " + key, "sequence length n", "median time", AxisUnit::count,
             AxisUnit::seconds, true, true, {}, 0};
      Plot m{slug + "-memory", "Peak tracked memory: " + key, "sequence length n", "peak memory", AxisUnit::count,
             AxisUnit::bytes, true, true, {}, 0};
      groups.emplace(key, std::make_pair(t, m));
    }
    auto& [tp, mp] = groups.at(key);
    const std::string v = variant_label(c), st = field_text(r, "status");
    const double n = c.value("n", 0.0);
    auto& ts = series_of(tp, v);
    auto& ms = series_of(mp, v);
    if (st == "ok") {
      ts.points.emplace_back(n, r["time_s"]["median"].get<double>());
      if (r.contains("memory") && r["memory"].contains("peak_tracked_bytes"))
        ms.points.emplace_back(n, r["memory"]["peak_tracked_bytes"].get<double>());
    } else if (st == "oom") {
      ts.oom_x.push_back(n);
      ms.oom_x.push_back(n);
      // The budget the point hit (an oom result records it).
      if (r.contains("memory") && r["memory"].contains("budget_bytes"))
        mp.budget_y = std::max(mp.budget_y, r["memory"]["budget_bytes"].get<double>());
    }
  }
  for (const auto& key : order) {
    plots.push_back(groups.at(key).first);
    plots.push_back(groups.at(key).second);
  }
  // Training curves per task.
  std::vector<std::string> tasks;
  std::map<std::string, std::pair<Plot, Plot>> curves;  // task -> (loss, val accuracy)
  for (const auto& r : report["results"]) {
    if (field_text(r, "kind") != "train-run" || !r.contains("curves")) continue;
    const auto& c = r["config"];
    const auto& cv = r["curves"];
    const std::string task = field_text(c, "task");
    const bool bpc = cv.contains("val_bpc");  // a language model: bits per character, not accuracy
    if (!curves.count(task)) {
      tasks.push_back(task);
      Plot l{train_curve_slug(task, "loss"), "Training loss: " + task, "optimiser step", "loss (mean since the previous point)",
             AxisUnit::plain, AxisUnit::plain, false, false, {}, 0};
      Plot a = bpc ? Plot{train_curve_slug(task, "val-bpc"), "Validation bits per character: " + task, "optimiser step",
                          "validation BPC", AxisUnit::plain, AxisUnit::plain, false, false, {}, 0}
                   : Plot{train_curve_slug(task, "val-accuracy"), "Validation accuracy: " + task, "optimiser step",
                          "validation accuracy", AxisUnit::plain, AxisUnit::percent, false, false, {}, 0};
      curves.emplace(task, std::make_pair(l, a));
    }
    auto& [lp, ap] = curves.at(task);
    std::string name = run_label(c);
    if (c.contains("preset")) name += " [" + field_text(c, "preset") + "]";
    auto add = [&](Plot& p, const char* xs, const char* ys, double scale) {
      if (!cv.contains(xs) || !cv.contains(ys)) return;
      PlotSeries s{name, {}, {}};
      for (std::size_t i = 0; i < cv[xs].size() && i < cv[ys].size(); ++i)
        if (cv[ys][i].is_number()) s.points.emplace_back(cv[xs][i].get<double>(), scale * cv[ys][i].get<double>());
      p.series.push_back(std::move(s));
    };
    add(lp, "step", "loss", 1.0);
    add(ap, "val_step", bpc ? "val_bpc" : "val_accuracy", bpc ? 1.0 : 100.0);
  }
  for (const auto& t : tasks) {
    plots.push_back(curves.at(t).first);
    plots.push_back(curves.at(t).second);
  }
  return plots;
}

}  // namespace lsb
