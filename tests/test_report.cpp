#include <catch2/catch.hpp>

#include "reports/report.hpp"

using namespace lsb;

TEST_CASE("a report built by the writer validates and ids are stable hashes of the config", "[report]") {
  nlohmann::json config = {{"variant", "ls"}, {"n", 1024}, {"variant_params", {{"w", 8}, {"r", 32}}}};
  nlohmann::json same = {{"n", 1024}, {"variant_params", {{"r", 32}, {"w", 8}}}, {"variant", "ls"}};
  CHECK(config_id(config) == config_id(same));
  CHECK(config_id(config) != config_id({{"variant", "ls"}, {"n", 2048}}));
  nlohmann::json res = {{"id", config_id(config)}, {"kind", "sweep-point"}, {"config", config}, {"status", "ok"}};
  auto rep = make_report(make_context({{"lsbench", "x"}, 2, 100.0}), nlohmann::json::array({res}));
  CHECK(validate_report(rep).empty());
  CHECK(rep["context"]["cpu"]["peak_gflops_fp32"] == 100.0);

  auto bad = rep;
  bad["results"][0]["status"] = "oom";  // not ok needs a message
  bad["results"][0]["config"]["n"] = 4096;  // id no longer matches
  bad["schema_version"] = 2;
  const auto errs = validate_report(bad);
  CHECK(errs.size() == 3);
}
