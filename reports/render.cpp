#include "reports/render.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "reports/text.hpp"

namespace lsb {
namespace {

std::string str(const nlohmann::json& j, const char* key, const std::string& fallback = "") {
  if (!j.is_object() || !j.contains(key)) return fallback;
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

// "ls:r=32,w=8": the variant as a spec string (linformer's n_max left out where it is the default,
// the length itself, so that one column holds every n).
std::string variant_label(const nlohmann::json& c) {
  std::string s = str(c, "variant", "?");
  char sep = ':';
  if (c.contains("variant_params"))
    for (const auto& [k, v] : c["variant_params"].items()) {
      if (k == "n_max" && c.contains("n") && v == c["n"]) continue;
      s += fmt::format("{}{}={}", sep, k, v.is_string() ? v.get<std::string>() : v.dump());
      sep = ',';
    }
  return s;
}

// The cell of one sweep point: median (spread), tokens/s, peak memory; or its status.
std::string point_cell(const nlohmann::json& r) {
  const std::string st = str(r, "status");
  if (st == "oom") {
    const auto m = r.value("memory", nlohmann::json::object());
    return m.contains("requested_bytes") ? "oom (asked " + bytes_text(m["requested_bytes"].get<double>()) + ")" : "oom";
  }
  if (st != "ok") return st;
  const auto& t = r["time_s"];
  const double med = t["median"].get<double>(), sd = t["stdev"].get<double>();
  std::string cell = fmt::format("{} ±{:.0f}%", time_text(med), med > 0 ? 100 * sd / med : 0.0);
  if (r.contains("throughput") && r["throughput"].contains("tokens_per_s"))
    cell += " · " + rate_text(r["throughput"]["tokens_per_s"].get<double>()) + " tok/s";
  if (r.contains("memory") && r["memory"].contains("peak_tracked_bytes"))
    cell += " · " + bytes_text(r["memory"]["peak_tracked_bytes"].get<double>());
  return cell;
}

struct Reference {
  const char* source;
  const char* model;
  const char* variant;  // the lsbench variant it corresponds to
  double acc[6];        // listops, text, retrieval, image, pathfinder, pathx (NAN: FAIL or not given)
};
const char* const kTasks[6] = {"listops", "text", "retrieval", "image", "pathfinder", "pathx"};
// ../shared/spec/lra.md, "Published reference points" (test accuracy, %).
const Reference kReferences[] = {
    {"LRA paper, Table 1", "Transformer", "full", {36.37, 64.27, 57.46, 42.44, 71.40, NAN}},
    {"LRA paper, Table 1", "Linformer", "linformer", {35.70, 53.94, 52.27, 38.56, 76.34, NAN}},
    {"Nystromformer paper, PyTorch small recipe", "softmax attention", "full", {37.10, 65.02, 79.35, 38.20, 74.16, NAN}},
    {"Nystromformer paper, PyTorch small recipe", "Linformer", "linformer", {37.25, 55.91, 79.37, 37.84, 67.60, NAN}},
};

std::string context_block(const nlohmann::json& c) {
  std::string md;
  const auto cpu = c.value("cpu", nlohmann::json::object());
  md += fmt::format("| | |\n|---|---|\n");
  md += fmt::format("| lsbench | {} (commit {}, {}) |\n", str(c, "tool_version"), str(c, "git_commit"), str(c, "build_type"));
  md += fmt::format("| machine | {} · {} |\n", md_cell(str(c, "host")), md_cell(str(c, "os")));
  md += fmt::format("| CPU | {} · {} threads used of {}{} |\n", md_cell(str(cpu, "model")), str(cpu, "threads_used"),
                    str(cpu, "cores"),
                    cpu.contains("peak_gflops_fp32")
                        ? fmt::format(" · measured fp32 peak {:.0f} GFLOP/s", cpu["peak_gflops_fp32"].get<double>())
                        : "");
  if (c.contains("gpu") && c["gpu"].is_object())
    md += fmt::format("| GPU | {} · {} · driver {} · CUDA runtime {} |\n", md_cell(str(c["gpu"], "name")),
                      bytes_text(c["gpu"].value("memory_bytes", 0.0)), str(c["gpu"], "driver"),
                      str(c["gpu"], "cuda_runtime"));
  std::string libs;
  const nlohmann::json lib = c.value("libraries", nlohmann::json::object());
  for (const auto& [k, v] : lib.items())
    libs += fmt::format("{}{} {}", libs.empty() ? "" : ", ", k, v.get<std::string>());
  md += fmt::format("| libraries | {} · {} |\n", libs, md_cell(str(c, "compiler")));
  md += fmt::format("| started | {} |\n", str(c, "started_at"));
  std::string cmd;
  for (const auto& a : c.value("command_line", nlohmann::json::array())) {
    if (!cmd.empty()) cmd += ' ';
    cmd += a.get<std::string>();
  }
  md += fmt::format("| command | `{}` |\n", md_cell(cmd));
  if (c.contains("merged_from") && c["merged_from"].size() > 1)
    md += fmt::format("| merged from | {} reports |\n", c["merged_from"].size());
  return md + "\n";
}

}  // namespace

nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names) {
  nlohmann::json context, merged_from = nlohmann::json::array(), results = nlohmann::json::array();
  std::set<std::string> seen;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    if (context.is_null()) context = r["context"];
    merged_from.push_back({{"path", i < names.size() ? names[i] : fmt::format("report {}", i)}, {"context", r["context"]}});
    for (const auto& x : r["results"])
      if (seen.insert(x["id"].get<std::string>()).second) results.push_back(x);
  }
  context["merged_from"] = merged_from;
  context["shard"] = {{"index", 0}, {"count", 1}};
  return {{"schema", "lsbench-report"}, {"schema_version", 1}, {"context", context}, {"results", results}};
}

std::string render_markdown(const nlohmann::json& report) {
  std::string md = "# lsbench report\n\n" + context_block(report["context"]);
  // Sweep points, grouped by everything but the variant and n.
  std::map<std::string, std::vector<const nlohmann::json*>> groups;
  std::vector<std::string> group_order;
  for (const auto& r : report["results"]) {
    if (str(r, "kind") != "sweep-point") continue;
    const auto& c = r["config"];
    std::string key = fmt::format("{}, {}, b={}, D={}, h={}", str(c, "mode"), str(c, "device"), str(c, "batch"),
                                  str(c, "dim"), str(c, "heads"));
    if (str(c, "mode").rfind("attn-", 0) != 0) key += fmt::format(", L={}, Dmlp={}", str(c, "layers"), str(c, "mlp_dim"));
    if (c.contains("task")) key += ", task " + str(c, "task");
    if (!groups.count(key)) group_order.push_back(key);
    groups[key].push_back(&r);
  }
  if (!group_order.empty())
    md += "## Time and memory\n\nEach cell: median time ± spread (stdev / median) · tokens/s · peak tracked memory; "
          "or the point's status.\n\n";
  for (const auto& key : group_order) {
    std::vector<std::string> variants;
    std::set<std::int64_t> ns;
    std::map<std::pair<std::string, std::int64_t>, const nlohmann::json*> cell;
    for (const auto* r : groups[key]) {
      const std::string v = variant_label((*r)["config"]);
      if (std::find(variants.begin(), variants.end(), v) == variants.end()) variants.push_back(v);
      const std::int64_t n = (*r)["config"].value("n", std::int64_t{0});
      ns.insert(n);
      cell[{v, n}] = r;
    }
    md += fmt::format("### {}\n\n| n | {} |\n|---:|", key, fmt::join(variants, " | "));
    for (std::size_t i = 0; i < variants.size(); ++i) md += "---|";
    md += "\n";
    for (const auto n : ns) {
      md += fmt::format("| {} |", n);
      for (const auto& v : variants)
        md += fmt::format(" {} |", cell.count({v, n}) ? md_cell(point_cell(*cell[{v, n}])) : std::string());
      md += "\n";
    }
    md += "\n";
  }
  // maxlen.
  std::vector<const nlohmann::json*> maxlens;
  std::int64_t full_n = 0;
  for (const auto& r : report["results"])
    if (str(r, "kind") == "maxlen") {
      maxlens.push_back(&r);
      if (str(r["config"], "variant") == "full") full_n = r.value("max_n", std::int64_t{0});
    }
  if (!maxlens.empty()) {
    md += "## Longest sequence that fits\n\n| variant | mode | budget | longest n | ratio to full | note |\n|---|---|---:|---:|---:|---|\n";
    for (const auto* r : maxlens) {
      const auto& c = (*r)["config"];
      const std::int64_t n = r->value("max_n", std::int64_t{0});
      md += fmt::format("| {} | {} | {} | {} | {} | {} |\n", md_cell(variant_label(c)), str(c, "mode"),
                        bytes_text(c.value("memory_budget_bytes", 0.0)), n,
                        full_n > 0 ? fmt::format("{:.2f}x", static_cast<double>(n) / full_n) : "",
                        md_cell(str(*r, "message")));
    }
    md += "\n";
  }
  // Training runs: the LRA accuracy table.
  std::map<std::string, std::map<std::string, std::string>> acc;  // variant -> task -> cell
  std::vector<std::string> run_variants;
  for (const auto& r : report["results"]) {
    if (str(r, "kind") != "train-run") continue;
    const auto& c = r["config"];
    const std::string v = variant_label(c), task = str(c, "task");
    if (std::find(run_variants.begin(), run_variants.end(), v) == run_variants.end()) run_variants.push_back(v);
    const auto a = r.value("accuracy", nlohmann::json::object());
    std::string text = str(r, "status");
    if (a.contains("test_at_best_val"))
      text = fmt::format("{:.2f}", 100 * a["test_at_best_val"].get<double>());
    else if (a.contains("val_best"))
      text = fmt::format("({} val {:.2f})", str(r, "status"), 100 * a["val_best"].get<double>());
    acc[v][task] = text + (str(c, "preset").empty() ? "" : " [" + str(c, "preset") + "]");
  }
  if (!run_variants.empty()) {
    md += "## Accuracy (test, %, at the best validation step)\n\n| model | ";
    for (const char* t : kTasks) md += std::string(t) + " | ";
    md += "average of 5 |\n|---|";
    for (int i = 0; i < 7; ++i) md += "---:|";
    md += "\n";
    for (const auto& v : run_variants) {
      md += "| lsbench " + md_cell(v) + " |";
      double sum = 0;
      int counted = 0;
      for (const char* t : kTasks) {
        const std::string cellv = acc[v].count(t) ? acc[v][t] : "";
        md += fmt::format(" {} |", cellv);
        if (std::string(t) == "pathx") continue;
        try {
          std::size_t used = 0;
          const double x = std::stod(cellv, &used);
          if (used > 0) sum += x, ++counted;
        } catch (const std::exception&) {
        }
      }
      md += counted == 5 ? fmt::format(" {:.2f} |\n", sum / 5) : " |\n";
    }
    for (const auto& ref : kReferences) {
      md += fmt::format("| {} ({}) |", ref.model, ref.source);
      double sum = 0;
      for (int i = 0; i < 6; ++i) {
        md += std::isnan(ref.acc[i]) ? " FAIL |" : fmt::format(" {:.2f} |", ref.acc[i]);
        if (i < 5) sum += ref.acc[i];
      }
      md += fmt::format(" {:.2f} |\n", sum / 5);
    }
    md += "\nPublished rows: ../shared/spec/lra.md (test accuracy). The average is over the five tasks other than "
          "Path-X, as in LRA's Table 1, where every model failed Path-X. `sliding` is not LRA's \"Local Attention\" "
          "(non-overlapping blocks) and has no published row.\n\n";
  }
  return md;
}

std::string render_csv(const nlohmann::json& report) {
  auto q = [](std::string s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
  };
  auto num = [](const nlohmann::json& j, const char* a, const char* b) -> std::string {
    if (j.contains(a) && j[a].is_object() && j[a].contains(b) && j[a][b].is_number()) return j[a][b].dump();
    return "";
  };
  std::string csv = "id,kind,status,variant,mode,device,task,n,padded_n,batch,dim,heads,layers,threads,median_s,"
                    "stdev_s,samples,tokens_per_s,steps_per_s,gflops,peak_tracked_bytes,analytic_bytes,"
                    "test_at_best_val,test_final,max_n,message\n";
  for (const auto& r : report["results"]) {
    const auto& c = r["config"];
    std::vector<std::string> f = {str(r, "id"), str(r, "kind"), str(r, "status"), variant_label(c), str(c, "mode"),
                                  str(c, "device"), str(c, "task"), str(c, "n"), str(c, "padded_n"), str(c, "batch"),
                                  str(c, "dim"), str(c, "heads"), str(c, "layers"), str(c, "threads"),
                                  num(r, "time_s", "median"), num(r, "time_s", "stdev"), num(r, "time_s", "samples"),
                                  num(r, "throughput", "tokens_per_s"), num(r, "throughput", "steps_per_s"),
                                  num(r, "throughput", "gflops"), num(r, "memory", "peak_tracked_bytes"),
                                  num(r, "memory", "analytic_bytes"), num(r, "accuracy", "test_at_best_val"),
                                  num(r, "accuracy", "test_final"), str(r, "max_n"), str(r, "message")};
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (i) csv += ',';
      csv += q(f[i]);
    }
    csv += "\n";
  }
  return csv;
}

}  // namespace lsb
