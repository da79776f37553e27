#include "reports/report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include "reports/json_schema.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"

namespace lsb {

nlohmann::json make_report(nlohmann::json context, nlohmann::json results) {
  return {{"schema", "lsbench-report"},
          {"schema_version", kSchemaVersion},
          {"context", std::move(context)},
          {"results", std::move(results)}};
}

namespace {
// When LSBENCH_REPORT_SCHEMA names the JSON Schema file (the test suite sets it), every report is
// checked against it before it is written: a report that does not match is a bug, not a file.
void check_against_schema_file(const std::string& path, const nlohmann::json& report) {
  static const char* schema_path = std::getenv("LSBENCH_REPORT_SCHEMA");
  if (!schema_path || !*schema_path) return;
  static const nlohmann::json schema = load_json_schema(schema_path);
  const auto problems = validate_json_schema(report, schema);
  if (!problems.empty())
    throw std::logic_error(fmt::format("report {} does not match {}: {}{}", path, schema_path, problems.front(),
                                       problems.size() > 1 ? fmt::format(" (and {} more)", problems.size() - 1) : ""));
}
}  // namespace

void write_report(const std::string& path, const nlohmann::json& report) {
  check_against_schema_file(path, report);
  write_file_atomic(path, report.dump(2) + "\n");
}

std::string config_id(const nlohmann::json& config) {
  const std::string s = config.dump();  // nlohmann::json objects keep keys sorted: canonical
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

std::vector<std::string> validate_report(const nlohmann::json& r) {
  std::vector<std::string> errs;
  auto need = [&](const nlohmann::json& obj, const char* key, auto pred, const std::string& where) {
    if (!obj.is_object() || !obj.contains(key) || !pred(obj.at(key)))
      errs.push_back(fmt::format("{}.{} missing or of the wrong type", where, key));
  };
  auto is_str = [](const nlohmann::json& j) { return j.is_string(); };
  auto is_num = [](const nlohmann::json& j) { return j.is_number(); };
  auto is_obj = [](const nlohmann::json& j) { return j.is_object(); };
  auto is_arr = [](const nlohmann::json& j) { return j.is_array(); };
  // A field's string value, or "" where it is missing or not a string (never a type error).
  auto text = [](const nlohmann::json& obj, const char* key) {
    return obj.is_object() && obj.contains(key) && obj.at(key).is_string() ? obj.at(key).get<std::string>() : "";
  };
  if (!r.is_object()) return {fmt::format("the top level is a JSON {}, not an object", r.type_name())};
  if (text(r, "schema") != "lsbench-report") errs.push_back("schema must be \"lsbench-report\"");
  if (!r.contains("schema_version") || !r["schema_version"].is_number_integer() || r["schema_version"] != kSchemaVersion)
    errs.push_back("schema_version must be the number 1");
  need(r, "context", is_obj, "report");
  need(r, "results", is_arr, "report");
  if (!r.contains("context") || !r["context"].is_object() || !r.contains("results") || !r["results"].is_array())
    return errs;
  const auto& c = r["context"];
  for (const char* k : {"tool_version", "git_commit", "started_at", "host", "os", "compiler", "build_type"})
    need(c, k, is_str, "context");
  need(c, "command_line", is_arr, "context");
  need(c, "cpu", is_obj, "context");
  need(c, "libraries", is_obj, "context");
  if (c.contains("cpu")) {
    need(c["cpu"], "model", is_str, "context.cpu");
    need(c["cpu"], "cores", is_num, "context.cpu");
    need(c["cpu"], "threads_used", is_num, "context.cpu");
  }
  static const std::vector<std::string> kinds = {"sweep-point", "train-run", "maxlen"};
  static const std::vector<std::string> statuses = {"ok", "oom", "error", "skipped", "diverged", "running"};
  std::set<std::string> ids;
  for (std::size_t i = 0; i < r["results"].size(); ++i) {
    const auto& x = r["results"][i];
    const std::string where = fmt::format("results[{}]", i);
    if (!x.is_object()) {
      errs.push_back(fmt::format("{} is a JSON {}, not an object", where, x.type_name()));
      continue;
    }
    need(x, "id", is_str, where);
    if (!text(x, "id").empty() && !ids.insert(text(x, "id")).second)
      errs.push_back(fmt::format("{}.id {} is the id of an earlier result too (one result per configuration)", where,
                                 text(x, "id")));
    need(x, "kind", is_str, where);
    need(x, "config", is_obj, where);
    need(x, "status", is_str, where);
    if (x.contains("kind") && x["kind"].is_string() &&
        std::find(kinds.begin(), kinds.end(), x["kind"].get<std::string>()) == kinds.end())
      errs.push_back(where + ".kind is not one of sweep-point, train-run, maxlen");
    if (x.contains("status") && x["status"].is_string()) {
      const auto st = x["status"].get<std::string>();
      if (std::find(statuses.begin(), statuses.end(), st) == statuses.end())
        errs.push_back(where + ".status is not one of ok, oom, error, skipped, diverged, running");
      if (st != "ok") need(x, "message", is_str, where);
    }
    if (x.contains("config") && x["config"].is_object() && x.contains("id") && x["id"].is_string() &&
        x["id"] != config_id(x["config"]))
      errs.push_back(where + ".id is not the hash of its config");
    const bool ok = text(x, "status") == "ok";
    if (ok && text(x, "kind") == "sweep-point") need(x, "time_s", is_obj, where);  // what every render reads
    if (ok && text(x, "kind") != "maxlen") need(x, "memory", is_obj, where);
    if (x.contains("time_s") && x["time_s"].is_object())
      for (const char* k : {"min", "median", "mean", "max", "stdev", "samples"}) need(x["time_s"], k, is_num, where + ".time_s");
    if (x.contains("memory") && x["memory"].is_object() && ok)
      need(x["memory"], "peak_tracked_bytes", is_num, where + ".memory");
    if (text(x, "kind") == "train-run" && ok) {
      // The task's metric: accuracy, or a language model's bits per character.
      const char* metric = x.contains("bpc") ? "bpc" : "accuracy";
      need(x, metric, is_obj, where);
      for (const char* k : {"val_best", "test_at_best_val", "test_final"})
        if (x.contains(metric)) need(x[metric], k, is_num, where + "." + metric);
      need(x, "curves", is_obj, where);
      need(x, "data", is_obj, where);
    }
    if (x.contains("curves") && x["curves"].is_object()) {
      // Parallel arrays: every train-step series as long as "step", every validation one as "val_step".
      const auto& cv = x["curves"];
      for (const auto& [key, arr] : cv.items()) {
        const bool val = key.rfind("val_", 0) == 0;
        const char* base = val ? "val_step" : "step";
        if (!arr.is_array() || !cv.contains(base) || arr.size() != cv[base].size())
          errs.push_back(fmt::format("{}.curves.{} is not an array as long as curves.{}", where, key, base));
      }
    }
  }
  return errs;
}

namespace {

// The deepest nesting of arrays and objects in JSON text (brackets inside strings not counted), so that a
// hostile file is refused before any recursive walk of it.
int json_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

void require_result_kinds(const nlohmann::json& report, const std::string& path, const std::vector<std::string>& kinds,
                          const std::string& who) {
  for (const auto& r : report.at("results")) {
    const std::string kind = r.value("kind", "");
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end())
      throw InputError(fmt::format("{}: holds a '{}' result, not one of {} ({} continues only its own reports); give "
                                   "another --out",
                                   path, kind, fmt::join(kinds, ", "), who));
  }
}

nlohmann::json read_report(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InputError(fmt::format("{}: is a directory, not a report", path));
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw InputError(fmt::format("{}: not a regular file (a device, FIFO or socket), not a report", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open the report", path));
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  constexpr int kMaxDepth = 64;  // a report nests 6 deep; the schema allows free-form blocks below that
  if (const int depth = json_depth(text); depth > kMaxDepth)
    throw InputError(fmt::format("{}: JSON nested {} deep (more than {}): not an lsbench report", path, depth, kMaxDepth));
  nlohmann::json r;
  try {
    r = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not a JSON report (byte {}: {})", path, e.byte, e.what()));
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    throw InputError(fmt::format("{}: not a usable JSON report ({})", path, e.what()));
  }
  const auto problems = validate_report(r);
  if (!problems.empty())
    throw InputError(fmt::format("{}: not a valid lsbench report: {}{}", path, problems.front(),
                                 problems.size() > 1 ? fmt::format(" (and {} more)", problems.size() - 1) : ""));
  return r;
}

}  // namespace lsb
