#include "reports/compare.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "reports/text.hpp"

namespace lsb {

namespace {

// The number in front of a unit suffix ("10%" -> 10 with suffix "%").
double number_with_suffix(const std::string& text, const std::vector<std::string>& suffixes, std::string& suffix,
                          const std::string& option) {
  suffix.clear();
  for (const auto& s : suffixes)
    if (text.size() > s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0) {
      suffix = s;
      break;
    }
  const std::string num = text.substr(0, text.size() - suffix.size());
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(num, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (num.empty() || used != num.size() || !(v >= 0) || !std::isfinite(v))
    throw UsageError(fmt::format("{} {}: expected a non-negative number with one of the units {}", option, text,
                                 fmt::join(suffixes, ", ")));
  return v;
}

std::string signed_pct(double base, double next) {
  if (base <= 0) return "";
  return fmt::format(" ({:+.1f}%)", 100.0 * (next - base) / base);
}

// "train-step ls(r=32,w=8) n=4096 b=8 D=64 h=2 L=2 cpu": what a reader calls the point.
std::string label(const nlohmann::json& r) {
  const auto& c = r["config"];
  std::string params;
  const nlohmann::json vp = c.value("variant_params", nlohmann::json::object());
  for (const auto& [k, v] : vp.items())
    params += fmt::format("{}{}={}", params.empty() ? "" : ",", k, v.is_string() ? v.get<std::string>() : v.dump());
  std::string s = fmt::format("{} {}{}", c.value("mode", "?"), c.value("variant", "?"), params.empty() ? "" : "(" + params + ")");
  if (c.contains("task")) s += " " + c["task"].get<std::string>();
  for (const auto& [key, tag] : std::vector<std::pair<std::string, std::string>>{
           {"n", "n"}, {"batch", "b"}, {"dim", "D"}, {"heads", "h"}, {"layers", "L"}})
    if (c.contains(key) && !(key == "layers" && c.value("mode", "").rfind("attn-", 0) == 0))
      s += fmt::format(" {}={}", tag, c[key].dump());
  s += " " + c.value("device", "?");
  if (c.value("precision", "fp32") != "fp32") s += " " + c["precision"].get<std::string>();
  if (r.value("kind", "") != "sweep-point") s += " [" + r.value("kind", "") + "]";
  return s;
}

// The accuracy a training run is judged by, in percent (test at the best validation, else the best
// validation), or NaN.
double accuracy_pct(const nlohmann::json& r) {
  const auto a = r.value("accuracy", nlohmann::json::object());
  for (const char* k : {"test_at_best_val", "val_best"})
    if (a.contains(k) && a[k].is_number()) return 100.0 * a[k].get<double>();
  return NAN;
}

// A language model's bits per character, judged as accuracy_pct is (test, else validation), or NaN.
double bpc_of(const nlohmann::json& r) {
  const auto a = r.value("bpc", nlohmann::json::object());
  for (const char* k : {"test_at_best_val", "val_best"})
    if (a.contains(k) && a[k].is_number()) return a[k].get<double>();
  return NAN;
}

double number_at(const nlohmann::json& r, const char* a, const char* b) {
  if (r.contains(a) && r[a].is_object() && r[a].contains(b) && r[a][b].is_number()) return r[a][b].get<double>();
  return NAN;
}

struct Row {
  int order = 0;  // 0 regressed, 1 improved, 2 new, 3 missing, 4 unchanged
  std::string verdict, point, status, time, memory, accuracy, why;
};

// What differs between two contexts that changes what a timing means.
std::vector<std::string> context_differences(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::string> out;
  auto get = [](const nlohmann::json& c, const std::vector<std::string>& path) {
    const nlohmann::json* x = &c;
    for (const auto& p : path) {
      if (!x->is_object() || !x->contains(p)) return std::string("(none)");
      x = &(*x)[p];
    }
    return x->is_string() ? x->get<std::string>() : x->dump();
  };
  for (const auto& path : std::vector<std::vector<std::string>>{{"cpu", "model"},
                                                                 {"cpu", "threads_used"},
                                                                 {"gpu", "name"},
                                                                 {"build_type"},
                                                                 {"host"},
                                                                 {"libraries", "onednn"}}) {
    const std::string va = get(a, path), vb = get(b, path);
    if (va != vb) out.push_back(fmt::format("{}: {} vs {}", fmt::join(path, "."), va, vb));
  }
  return out;
}

}  // namespace

double parse_fraction(const std::string& text, const std::string& option) {
  std::string suffix;
  const double v = number_with_suffix(text, {"%", ""}, suffix, option);
  return suffix == "%" ? v / 100.0 : v;
}

double parse_duration_s(const std::string& text, const std::string& option) {
  std::string suffix;
  const double v = number_with_suffix(text, {"us", "ms", "s"}, suffix, option);
  if (suffix.empty()) throw UsageError(fmt::format("{} {}: give a unit: us, ms or s", option, text));
  return suffix == "us" ? v * 1e-6 : suffix == "ms" ? v * 1e-3 : v;
}

double parse_points(const std::string& text, const std::string& option) {
  std::string suffix;
  return number_with_suffix(text, {"pt", ""}, suffix, option);
}

Comparison compare_reports(const nlohmann::json& base, const nlohmann::json& next, const std::string& base_name,
                           const std::string& next_name, const CompareThresholds& t) {
  Comparison cmp;
  std::map<std::string, const nlohmann::json*> in_base, in_next;
  for (const auto& r : base["results"]) in_base[r["id"].get<std::string>()] = &r;
  for (const auto& r : next["results"]) in_next[r["id"].get<std::string>()] = &r;
  std::vector<Row> rows;

  for (const auto& r : next["results"]) {
    const std::string id = r["id"];
    Row row;
    row.point = label(r);
    const std::string st_new = r["status"];
    if (!in_base.count(id)) {
      row.order = 2, row.verdict = "new", row.status = st_new;
      cmp.added++;
      rows.push_back(row);
      continue;
    }
    const nlohmann::json& b = *in_base[id];
    const std::string st_old = b["status"];
    row.status = st_old == st_new ? st_new : st_old + " -> " + st_new;
    std::vector<std::string> worse, better;
    if (st_old == "ok" && st_new != "ok") worse.push_back("status " + st_new);
    if (st_old != "ok" && st_new == "ok") better.push_back("now ok");
    // Time: the median, judged against both thresholds.
    const double t0 = number_at(b, "time_s", "median"), t1 = number_at(r, "time_s", "median");
    if (!std::isnan(t0) && !std::isnan(t1)) {
      row.time = fmt::format("{} -> {}{}", time_text(t0, 3), time_text(t1, 3), signed_pct(t0, t1));
      if (t1 - t0 > t.time_abs_s && t1 > t0 * (1 + t.time_rel)) worse.push_back("slower");
      if (t0 - t1 > t.time_abs_s && t1 < t0 * (1 - t.time_rel)) better.push_back("faster");
    }
    const double m0 = number_at(b, "memory", "peak_tracked_bytes"), m1 = number_at(r, "memory", "peak_tracked_bytes");
    if (!std::isnan(m0) && !std::isnan(m1)) {
      row.memory = fmt::format("{} -> {}{}", bytes_text(m0), bytes_text(m1), signed_pct(m0, m1));
      if (m1 > m0 * (1 + t.memory_rel)) worse.push_back("more memory");
      if (m1 < m0 * (1 - t.memory_rel)) better.push_back("less memory");
    }
    const double a0 = accuracy_pct(b), a1 = accuracy_pct(r);
    if (!std::isnan(a0) && !std::isnan(a1)) {
      row.accuracy = fmt::format("{:.2f}% -> {:.2f}%", a0, a1);
      if (a0 - a1 > t.accuracy_pts) worse.push_back("lower accuracy");
      if (a1 - a0 > t.accuracy_pts) better.push_back("higher accuracy");
    }
    const double c0 = bpc_of(b), c1 = bpc_of(r);  // lower is better
    if (!std::isnan(c0) && !std::isnan(c1)) {
      row.accuracy = fmt::format("{:.4f} -> {:.4f} bpc", c0, c1);
      if (c1 - c0 > t.bpc_abs) worse.push_back("higher bpc");
      if (c0 - c1 > t.bpc_abs) better.push_back("lower bpc");
    }
    if (b.contains("max_n") && r.contains("max_n")) {
      const auto n0 = b["max_n"].get<std::int64_t>(), n1 = r["max_n"].get<std::int64_t>();
      row.memory = fmt::format("max n {} -> {}", n0, n1);
      if (n1 < n0) worse.push_back("shorter max n");
      if (n1 > n0) better.push_back("longer max n");
    }
    if (!worse.empty()) {
      row.order = 0, row.verdict = "**regressed**", row.why = fmt::format("{}", fmt::join(worse, ", "));
      cmp.regressed++;
    } else if (!better.empty()) {
      row.order = 1, row.verdict = "improved", row.why = fmt::format("{}", fmt::join(better, ", "));
      cmp.improved++;
    } else {
      row.order = 4, row.verdict = "unchanged";
      cmp.unchanged++;
    }
    rows.push_back(row);
  }
  for (const auto& r : base["results"])
    if (!in_next.count(r["id"].get<std::string>())) {
      Row row;
      row.order = 3, row.verdict = "missing", row.point = label(r), row.status = r["status"].get<std::string>();
      cmp.missing++;
      rows.push_back(row);
    }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.order < b.order; });

  std::string md = fmt::format("## lsbench compare: `{}` -> `{}`\n\n", base_name, next_name);
  const auto diffs = context_differences(base["context"], next["context"]);
  cmp.contexts_differ = !diffs.empty();
  if (cmp.contexts_differ)
    md += fmt::format("> **Warning: the two reports come from different machines or builds; timings may not be "
                      "comparable.** {}\n\n",
                      fmt::join(diffs, "; "));
  md += fmt::format("**{}** regressed, {} improved, {} unchanged, {} new, {} missing. Thresholds: time +{:.3g}% and "
                    "+{}, memory +{:.3g}%, accuracy -{:.3g} pt, bits per character +{:.3g}.\n\n",
                    cmp.regressed, cmp.improved, cmp.unchanged, cmp.added, cmp.missing, 100 * t.time_rel,
                    time_text(t.time_abs_s, 3), 100 * t.memory_rel, t.accuracy_pts, t.bpc_abs);
  md += "| verdict | point | status | median time | peak memory | accuracy or BPC | why |\n";
  md += "|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows)
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", r.verdict, md_cell(r.point), md_cell(r.status), r.time,
                      r.memory, r.accuracy, md_cell(r.why));
  cmp.markdown = md;
  return cmp;
}

}  // namespace lsb
