#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>

#include "reports/json_schema.hpp"
#include "bench/context.hpp"
#include "reports/report.hpp"

using namespace lsb;

TEST_CASE("a report built by the writer validates and ids are stable hashes of the config", "[report]") {
  nlohmann::json config = {{"variant", "ls"}, {"n", 1024}, {"variant_params", {{"w", 8}, {"r", 32}}}};
  nlohmann::json same = {{"n", 1024}, {"variant_params", {{"r", 32}, {"w", 8}}}, {"variant", "ls"}};
  CHECK(config_id(config) == config_id(same));
  CHECK(config_id(config) != config_id({{"variant", "ls"}, {"n", 2048}}));
  nlohmann::json res = {{"id", config_id(config)}, {"kind", "sweep-point"}, {"config", config}, {"status", "ok"},
                        {"time_s", {{"min", 1}, {"median", 1}, {"mean", 1}, {"max", 1}, {"stdev", 0}, {"samples", 5}}},
                        {"memory", {{"peak_tracked_bytes", 100}}}};
  auto rep = make_report(make_context({{"lsbench", "x"}, {.requested = 2, .granted = 2, .why_fewer = {}}, 100.0}), nlohmann::json::array({res}));
  CHECK(validate_report(rep).empty());
  auto no_time = rep;  // what every render reads of an ok point
  no_time["results"][0].erase("time_s");
  CHECK(validate_report(no_time).size() == 1);
  CHECK(rep["context"]["cpu"]["peak_gflops_fp32"] == 100.0);

  auto bad = rep;
  bad["results"][0]["status"] = "oom";  // not ok needs a message
  bad["results"][0]["config"]["n"] = 4096;  // id no longer matches
  bad["schema_version"] = 2;
  const auto errs = validate_report(bad);
  CHECK(errs.size() == 3);
}

TEST_CASE("the JSON Schema file accepts what the writer writes and names what is wrong", "[report][schema]") {
  // The suite runs with LSBENCH_REPORT_SCHEMA set (tests/CMakeLists.txt), so every report any test
  // writes, in process or through the CLI, is checked against this file before it is written.
  const char* hook = std::getenv("LSBENCH_REPORT_SCHEMA");
  if (!hook) WARN("LSBENCH_REPORT_SCHEMA is not set: run through ctest to check every written report");
  const nlohmann::json schema = load_json_schema(LSBENCH_REPORT_SCHEMA_FILE);
  const nlohmann::json config = {{"variant", "ls"},  {"variant_params", {{"w", 8}, {"r", 32}}},
                                 {"n", 1024},        {"batch", 8},
                                 {"mode", "attn-fwd"}, {"device", "cpu"},
                                 {"precision", "fp32"}};
  nlohmann::json ok = {{"id", config_id(config)},
                       {"kind", "sweep-point"},
                       {"config", config},
                       {"status", "ok"},
                       {"time_s", {{"min", 1}, {"median", 1}, {"mean", 1}, {"max", 1}, {"stdev", 0}, {"samples", 5}}},
                       {"throughput", {{"tokens_per_s", 10.0}}},
                       {"memory", {{"peak_tracked_bytes", 100}}}};
  const auto rep = make_report(make_context({{"lsbench", "x"}, {.requested = 2, .granted = 2, .why_fewer = {}}, 100.0}), nlohmann::json::array({ok}));
  CHECK(validate_json_schema(rep, schema).empty());

  // One defect at a time, each reported with its JSON path.
  auto expect = [&](nlohmann::json bad, const std::string& path) {
    const auto problems = validate_json_schema(bad, schema);
    INFO(bad.dump());
    REQUIRE_FALSE(problems.empty());
    CHECK(std::any_of(problems.begin(), problems.end(), [&](const std::string& p) { return p.rfind(path, 0) == 0; }));
  };
  auto b = rep;
  b["context"].erase("host");
  expect(b, "$.context: missing \"host\"");
  b = rep;
  b["results"][0]["status"] = "done";
  expect(b, "$.results[0].status");
  b = rep;
  b["results"][0]["status"] = "oom";  // not ok without a message
  expect(b, "$.results[0]: missing \"message\"");
  b = rep;
  b["results"][0].erase("time_s");  // an ok sweep point without its timing
  expect(b, "$.results[0]: missing \"time_s\"");
  b = rep;
  b["results"][0]["config"]["n"] = 0;
  expect(b, "$.results[0].config.n");
  b = rep;
  b["results"][0]["config"]["device"] = "tpu";
  expect(b, "$.results[0].config.device");
  b = rep;
  b["context"]["gpu"] = {{"name", "X"}};  // neither null nor a complete GPU block
  expect(b, "$.context.gpu");
  b = rep;
  b["extra"] = 1;
  expect(b, "$.extra");
}
