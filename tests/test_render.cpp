// `lsbench report`: Markdown and CSV renders of a fixed report checked against golden files
// (tests/golden/), merging by id, and bad input named by file.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "reports/render.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

nlohmann::json with_id(nlohmann::json r) {
  r["id"] = config_id(r["config"]);
  return r;
}

nlohmann::json sweep_point(const std::string& variant, nlohmann::json params, std::int64_t n, double median,
                           std::int64_t peak, const std::string& status = "ok") {
  nlohmann::json r = {{"kind", "sweep-point"},
                      {"status", status},
                      {"config", {{"variant", variant}, {"variant_params", params}, {"n", n}, {"padded_n", n},
                                  {"batch", 8}, {"dim", 64}, {"heads", 2}, {"layers", 2}, {"mlp_dim", 128},
                                  {"mode", "train-step"}, {"device", "cpu"}, {"precision", "fp32"}, {"threads", 2}}}};
  if (status == "ok") {
    r["time_s"] = {{"min", median}, {"median", median}, {"mean", median}, {"max", median}, {"stdev", median / 20}, {"samples", 5}};
    r["throughput"] = {{"tokens_per_s", 8 * n / median}, {"steps_per_s", 1 / median}, {"gflops", 10.5}};
    r["memory"] = {{"peak_tracked_bytes", peak}, {"analytic_bytes", peak - 1024}};
  } else {
    r["message"] = "out of memory: full attention probabilities";
    r["memory"] = {{"requested_bytes", peak}};
  }
  return with_id(r);
}

nlohmann::json run(const std::string& variant, nlohmann::json params, const std::string& task, double test) {
  nlohmann::json r = {{"kind", "train-run"},
                      {"status", "ok"},
                      {"config", {{"variant", variant}, {"variant_params", params}, {"task", task}, {"preset", "lra-small"},
                                  {"mode", "train"}, {"device", "cpu"}, {"precision", "fp32"}}},
                      {"accuracy", {{"val_best", test + 0.01}, {"test_at_best_val", test}, {"test_final", test - 0.005}}},
                      {"curves", {{"step", {10}}, {"loss", {1.5}}}},
                      {"memory", {{"peak_tracked_bytes", 1 << 30}}},
                      {"data", nlohmann::json::object()}};
  return with_id(r);
}

// A report whose every field is fixed (the context too), so renders can be compared byte for byte.
nlohmann::json fixture() {
  nlohmann::json context = {
      {"tool_version", "0.1.0"}, {"git_commit", "0123456789ab"}, {"build_type", "Release"},
      {"command_line", {"lsbench", "sweep", "--mode", "train-step"}}, {"started_at", "2026-11-22T12:00:00Z"},
      {"host", "ci"}, {"os", "Debian 12"}, {"compiler", "gcc 12.2.0"},
      {"cpu", {{"model", "Test CPU"}, {"cores", 2}, {"threads_used", 2}, {"peak_gflops_fp32", 450.0}}},
      {"gpu", nullptr}, {"libraries", {{"onednn", "2.6.3"}}}, {"shard", {{"index", 0}, {"count", 1}}}};
  nlohmann::json results = nlohmann::json::array();
  const nlohmann::json ls = {{"w", 8}, {"r", 32}};
  results.push_back(sweep_point("full", nlohmann::json::object(), 1024, 0.113, 353698400));
  results.push_back(sweep_point("full", nlohmann::json::object(), 8192, 0, 4294967296, "oom"));
  results.push_back(sweep_point("ls", ls, 1024, 0.0633, 118370000));
  results.push_back(sweep_point("ls", ls, 8192, 0.5598, 922650000));
  for (const auto& [v, n] : std::vector<std::pair<std::string, std::int64_t>>{{"full", 7936}, {"ls", 153088}}) {
    nlohmann::json c = {{"variant", v}, {"variant_params", v == "ls" ? ls : nlohmann::json::object()},
                        {"mode", "train-step"}, {"device", "cpu"}, {"precision", "fp32"},
                        {"memory_budget_bytes", 17179869184LL}, {"granule", 256}};
    results.push_back(with_id({{"kind", "maxlen"}, {"status", "ok"}, {"config", c}, {"max_n", n},
                               {"attempts", {{{"n", 256}, {"status", "ok"}}}}}));
  }
  results.push_back(run("full", nlohmann::json::object(), "listops", 0.3712));
  results.push_back(run("ls", ls, "listops", 0.3805));
  results.push_back(run("ls", ls, "text", 0.6541));
  return make_report(context, results);
}

std::string golden(const std::string& name) {
  std::ifstream f(fs::path(LSBENCH_GOLDEN_DIR) / name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("report renders Markdown and CSV equal to the golden files", "[render]") {
  const auto rep = fixture();
  REQUIRE(validate_report(rep).empty());
  const std::string md = render_markdown(rep), csv = render_csv(rep);
  // To refresh after an intended change: LSBENCH_WRITE_GOLDEN=1 rewrites the files, then review the diff.
  if (std::getenv("LSBENCH_WRITE_GOLDEN")) {
    std::ofstream(fs::path(LSBENCH_GOLDEN_DIR) / "report.md") << md;
    std::ofstream(fs::path(LSBENCH_GOLDEN_DIR) / "report.csv") << csv;
  }
  CHECK(md == golden("report.md"));
  CHECK(csv == golden("report.csv"));
}

TEST_CASE("report merges files by id and names a bad one", "[render][cli]") {
  const auto dir = test::fresh_dir("render");
  auto rep = fixture();
  write_report((dir / "a.json").string(), rep);
  auto part = rep;
  part["results"] = nlohmann::json::array({rep["results"][0], rep["results"][2]});  // duplicates of a.json's
  write_report((dir / "b.json").string(), part);
  const auto r = test::run_cli(fmt::format("report {} {} --format csv -o {}", (dir / "a.json").string(),
                                           (dir / "b.json").string(), (dir / "all.csv").string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::ifstream f(dir / "all.csv");
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == render_csv(rep));  // the duplicates are dropped
  std::ofstream(dir / "bad.json") << "{\"schema\": \"lsbench-report\"";
  const auto bad = test::run_cli(fmt::format("report {} {}", (dir / "a.json").string(), (dir / "bad.json").string()));
  CHECK(bad.code == 3);
  CHECK(bad.output.find("bad.json") != std::string::npos);
  CHECK(bad.output.find("# lsbench report") == std::string::npos);  // nothing rendered half
}
