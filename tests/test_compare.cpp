// `lsbench compare`: the decisions (time against both thresholds, memory, status, accuracy, new and
// missing points), the loud note for different machines, exit codes 0 / 1 / 2, and the gate run on
// two sweeps of the same build (it must not cry wolf).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "reports/compare.hpp"
#include "bench/context.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

nlohmann::json point(std::int64_t n, double median_s, std::int64_t peak, const std::string& status = "ok") {
  nlohmann::json c = {{"variant", "ls"}, {"variant_params", {{"w", 8}, {"r", 32}}}, {"n", n}, {"batch", 8},
                      {"dim", 64},       {"heads", 2},                            {"layers", 1},
                      {"mode", "attn-fwd"}, {"device", "cpu"},                    {"precision", "fp32"}};
  nlohmann::json r = {{"id", config_id(c)}, {"kind", "sweep-point"}, {"config", c}, {"status", status}};
  if (status == "ok") {
    r["time_s"] = {{"min", median_s}, {"median", median_s}, {"mean", median_s}, {"max", median_s}, {"stdev", 0.0}, {"samples", 5}};
    r["throughput"] = {{"tokens_per_s", 8 * n / median_s}};
    r["memory"] = {{"peak_tracked_bytes", peak}};
  } else {
    r["message"] = "out of memory";
  }
  return r;
}

nlohmann::json train_run(double test_acc) {
  nlohmann::json c = {{"variant", "full"}, {"variant_params", nlohmann::json::object()}, {"task", "listops"},
                      {"mode", "train"},   {"device", "cpu"},                             {"precision", "fp32"}};
  return {{"id", config_id(c)},  {"kind", "train-run"}, {"config", c}, {"status", "ok"},
          {"accuracy", {{"val_best", 0.3}, {"test_at_best_val", test_acc}, {"test_final", test_acc}}},
          {"curves", {{"step", {1}}, {"loss", {2.0}}}},
          {"memory", {{"peak_tracked_bytes", 1000}}}, {"data", nlohmann::json::object()}};
}

nlohmann::json report(nlohmann::json results) {
  return make_report(make_context({{"lsbench", "test"}, {.requested = 2, .granted = 2, .why_fewer = {}}, 100.0}), std::move(results));
}

std::string save(const fs::path& dir, const std::string& name, const nlohmann::json& rep) {
  const auto p = (dir / name).string();
  write_report(p, rep);
  return p;
}

}  // namespace

TEST_CASE("compare judges time against both thresholds and memory status and accuracy", "[compare]") {
  const CompareThresholds t;  // 10% and 1 ms, 5%, 1 pt
  const auto base = report({point(1024, 0.010, 1000), point(2048, 0.0020, 1000), point(4096, 0.050, 1000),
                            point(8192, 0.100, 1000), point(16384, 0.200, 1000), train_run(0.40), point(32, 0.001, 10)});
  const auto next = report({point(1024, 0.012, 1000),   // +20% and +2 ms: regressed
                            point(2048, 0.0028, 1000),  // +40% but only +0.8 ms: unchanged
                            point(4096, 0.040, 900),    // -20% and -10 ms, less memory: improved
                            point(8192, 0.100, 1100),   // +10% memory: regressed
                            point(16384, 0, 0, "oom"),  // ok -> oom: regressed
                            train_run(0.385),           // -1.5 pt: regressed
                            point(64, 0.001, 10)});     // new (and n = 32 missing)
  const Comparison c = compare_reports(base, next, "base.json", "new.json", t);
  INFO(c.markdown);
  CHECK(c.regressed == 4);
  CHECK(c.improved == 1);
  CHECK(c.unchanged == 1);
  CHECK(c.added == 1);
  CHECK(c.missing == 1);
  CHECK_FALSE(c.contexts_differ);
  CHECK(c.markdown.find("| **regressed** | attn-fwd ls(r=32,w=8) n=1024") != std::string::npos);
  CHECK(c.markdown.find("status oom") != std::string::npos);
  CHECK(c.markdown.find("lower accuracy") != std::string::npos);
  CHECK(c.markdown.find("more memory") != std::string::npos);
  // Regressions come first in the table.
  CHECK(c.markdown.find("**regressed**") < c.markdown.find("| improved |"));

  // A looser accuracy threshold lets the 1.5 pt pass; a tighter time threshold catches the 0.8 ms.
  CompareThresholds loose = t;
  loose.accuracy_pts = 2;
  CHECK(compare_reports(base, next, "a", "b", loose).regressed == 3);
  CompareThresholds tight = t;
  tight.time_abs_s = 0.5e-3;
  CHECK(compare_reports(base, next, "a", "b", tight).regressed == 5);
}

TEST_CASE("compare says loudly when the reports come from different machines", "[compare]") {
  const auto a = report({point(1024, 0.01, 1000)});
  auto b = a;
  b["context"]["cpu"]["model"] = "Some Other CPU";
  b["context"]["cpu"]["threads_used"] = 64;
  const Comparison c = compare_reports(a, b, "a", "b", {});
  CHECK(c.contexts_differ);
  CHECK(c.markdown.find("Warning: the two reports come from different machines") != std::string::npos);
  CHECK(c.markdown.find("cpu.model") != std::string::npos);
  CHECK(c.markdown.find("cpu.threads_used: 2 vs 64") != std::string::npos);
}

TEST_CASE("compare thresholds parse with their units", "[compare]") {
  CHECK(parse_fraction("10%", "--t") == Approx(0.10));
  CHECK(parse_fraction("0.2", "--t") == Approx(0.2));
  CHECK(parse_duration_s("1ms", "--t") == Approx(1e-3));
  CHECK(parse_duration_s("250us", "--t") == Approx(250e-6));
  CHECK(parse_duration_s("2s", "--t") == Approx(2.0));
  CHECK(parse_points("1pt", "--t") == Approx(1.0));
  for (const char* bad : {"ten%", "-5%", "1", "ms", "1 ms"}) CHECK_THROWS_AS(parse_duration_s(bad, "--t"), UsageError);
  CHECK_THROWS_AS(parse_fraction("x", "--t"), UsageError);
}

TEST_CASE("compare on the command line: exit 1 on regression, 0 otherwise, 2 on unusable input", "[compare][cli]") {
  const auto dir = test::fresh_dir("compare");
  const auto base = save(dir, "base.json", report({point(1024, 0.010, 1000), point(2048, 0.020, 1000)}));
  const auto same = save(dir, "same.json", report({point(1024, 0.0101, 1000), point(2048, 0.020, 1000)}));
  const auto slow = save(dir, "slow.json", report({point(1024, 0.020, 1000), point(2048, 0.020, 1000)}));
  auto r = test::run_cli(fmt::format("compare {} {} -o {}", base, same, (dir / "summary.md").string()));
  CHECK(r.code == 0);
  CHECK(r.output.find("**0** regressed, 0 improved, 2 unchanged") != std::string::npos);
  std::ifstream md(dir / "summary.md");
  CHECK(std::string(std::istreambuf_iterator<char>(md), {}) == r.output);
  r = test::run_cli(fmt::format("compare {} {}", base, slow));
  CHECK(r.code == 1);
  CHECK(r.output.find("slower") != std::string::npos);
  // Unusable input: a truncated report, a wrong version, a missing file; each named.
  const std::string text = read_report(base).dump();
  std::ofstream(dir / "cut.json") << text.substr(0, text.size() / 3);
  auto v9 = read_report(base);
  v9["schema_version"] = 9;
  std::ofstream(dir / "v9.json") << v9.dump();
  for (const char* name : {"cut.json", "v9.json", "nothere.json"}) {
    r = test::run_cli(fmt::format("compare {} {}", base, (dir / name).string()));
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK(r.output.find(name) != std::string::npos);
  }
  CHECK(test::run_cli(fmt::format("compare {} {} --time-threshold lots", base, same)).code == 2);
}

TEST_CASE("the gate passes two sweeps of the same build", "[compare][cli][sweep]") {
  // What CI does: a baseline and a new run of a smoke sweep from the same binary; timing noise on
  // points this small stays under the 1 ms absolute threshold, so the gate must say 0.
  const auto dir = test::fresh_dir("compare_gate");
  const std::string sweep = "sweep --variants full,flash,linformer:k=16,sliding:R=8,ls:w=8,r=4 --n 64,128 --batch 1 "
                            "--dim 16 --heads 2 --mode attn-fwdbwd --min-reps 3 --min-time 0 --warmup 1 --no-progress "
                            "--threads 1 --out ";
  REQUIRE(test::run_cli(sweep + (dir / "base.json").string()).code == 0);
  REQUIRE(test::run_cli(sweep + (dir / "new.json").string()).code == 0);
  const auto r = test::run_cli(fmt::format("compare {} {}", (dir / "base.json").string(), (dir / "new.json").string()));
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("0 new, 0 missing") != std::string::npos);
}
