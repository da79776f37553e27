// The lsbench report file (schema "lsbench-report", version 1; see reports/SCHEMA.md and
// ../shared/spec/measurement.md): a context block saying exactly what was run where (made by the
// drivers, bench/context.hpp: this layer probes no hardware), and results. Written atomically
// (temporary file, then rename). Knows nothing about tensors.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

constexpr int kSchemaVersion = 1;

nlohmann::json make_report(nlohmann::json context, nlohmann::json results);
// Writes `report` to `path` via path.tmp + rename. Throws InputError naming the path on failure.
void write_report(const std::string& path, const nlohmann::json& report);
// Stable id of a result: FNV-1a 64 of the canonical (sorted-key) dump of its config, in hex.
std::string config_id(const nlohmann::json& config);
// Checks a report against schema version 1; returns the problems found (empty = valid).
std::vector<std::string> validate_report(const nlohmann::json& report);
// Reads and validates a report file. InputError naming the file and the first problem (its JSON path)
// for a missing, malformed, truncated or wrong-version file.
nlohmann::json read_report(const std::string& path);
// What --resume may continue: a report of the command resuming it, each result of one of `kinds`
// ("sweep-point", "train-run", "maxlen"); another command's report is an InputError naming the file, the
// kind it holds and `who` ("sweep --resume"), never merged into this one.
void require_result_kinds(const nlohmann::json& report, const std::string& path, const std::vector<std::string>& kinds,
                          const std::string& who);

}  // namespace lsb
