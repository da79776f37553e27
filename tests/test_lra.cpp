// `lsbench lra`: the suite end to end on a small plan (generated ListOps and Path-X, text without its
// data), the Table 1 and Table 2 summary, out-of-memory and missing data recorded per run, --resume
// keeping finished runs, and bad options named.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "nn/cuda/device.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

const nlohmann::json* run_of(const nlohmann::json& report, const std::string& task, const std::string& variant) {
  for (const auto& r : report["results"])
    if (r["kind"] == "train-run" && r["config"]["task"] == task && r["config"]["variant"] == variant) return &r;
  return nullptr;
}

}  // namespace

TEST_CASE("lra runs every task x variant into one report with both summary tables and resumes", "[lra][cli]") {
  const auto dir = test::fresh_dir("lra");
  const std::string cmd = fmt::format(
      "lra --preset smoke --tasks listops,text,pathx --variants full,ls:w=8,r=16 --data-dir {} --out {} "
      "--memory-budget 1GiB --efficiency-lengths 256 --efficiency-batch 1 --no-progress --threads 2",
      (dir / "data").string(), (dir / "lra.json").string());
  const auto r = test::run_cli(cmd);
  INFO(r.output);
  CHECK(r.code == 4);  // full attention on Path-X needs 4 GiB for its probabilities: out of memory
  const nlohmann::json rep = read_report((dir / "lra.json").string());
  const auto* listops_full = run_of(rep, "listops", "full");
  const auto* listops_ls = run_of(rep, "listops", "ls");
  REQUIRE(listops_full);
  REQUIRE(listops_ls);
  CHECK((*listops_full)["status"] == "ok");
  CHECK((*listops_ls)["data"]["generated"] == true);
  CHECK((*run_of(rep, "pathx", "full"))["status"] == "oom");
  CHECK((*run_of(rep, "pathx", "ls"))["status"] == "ok");
  CHECK((*run_of(rep, "pathx", "ls"))["config"]["n"] == 16384);
  // No IMDb data in the data folder and no --archives: text is skipped with the reason, not failed.
  const auto* text = run_of(rep, "text", "full");
  REQUIRE(text);
  CHECK((*text)["status"] == "skipped");
  CHECK((*text)["message"].get<std::string>().find("aclImdb") != std::string::npos);
  // The efficiency sweep: one train-step point per variant on byte-level text.
  int points = 0;
  for (const auto& x : rep["results"])
    if (x["kind"] == "sweep-point") {
      ++points;
      CHECK(x["config"]["mode"] == "train-step");
      CHECK(x["config"]["task"] == "text");
    }
  CHECK(points == 2);
  const std::string md = test::read_file(dir / "lra.json.md");
  CHECK(md.find("## Accuracy (test, %, at the best validation step)") != std::string::npos);
  CHECK(md.find("## Efficiency (LRA Table 2 shape)") != std::string::npos);
  CHECK(md.find("| lsbench ls:r=16,w=8 |") != std::string::npos);
  CHECK(md.find("Transformer (LRA Table 2, TPU v3)") != std::string::npos);
  CHECK(r.output.find("## Accuracy") != std::string::npos);  // printed too

  // --resume: the finished runs (ok and oom) are kept as they are, the skipped one is tried again.
  const auto again = test::run_cli(cmd + " --resume");
  INFO(again.output);
  CHECK(again.code == 4);
  CHECK(again.output.find("listops full: finished earlier (ok), kept") != std::string::npos);
  CHECK(again.output.find("pathx full: finished earlier (oom), kept") != std::string::npos);
  CHECK(again.output.find("taken from the earlier run") != std::string::npos);  // the efficiency points
  const nlohmann::json rep2 = read_report((dir / "lra.json").string());
  CHECK(*run_of(rep2, "listops", "full") == *listops_full);
  CHECK(rep2["results"].size() == rep["results"].size());
}

TEST_CASE("lra names bad options", "[lra][cli]") {
  const auto dir = test::fresh_dir("lra_bad");
  const auto task = test::run_cli(fmt::format("lra --tasks listops,chess --data-dir {} --out {}", dir.string(),
                                              (dir / "r.json").string()));
  CHECK(task.code == 2);
  CHECK(task.output.find("chess") != std::string::npos);
  const auto variant = test::run_cli(fmt::format("lra --variants full,nope --data-dir {} --out {}", dir.string(),
                                                 (dir / "r.json").string()));
  CHECK(variant.code == 2);
  CHECK(variant.output.find("nope") != std::string::npos);
  const auto device = test::run_cli(fmt::format("lra --device tpu --data-dir {} --out {}", dir.string(),
                                                (dir / "r.json").string()));
  CHECK(device.code == 2);
  CHECK(device.output.find("--device tpu: expected cpu or cuda") != std::string::npos);
  if (cuda::device_count() == 0) {  // a missing GPU is found before anything runs
    const auto gpu = test::run_cli(fmt::format("lra --device cuda --data-dir {} --out {}", dir.string(),
                                               (dir / "r.json").string()));
    CHECK(gpu.code == 2);
    CHECK(gpu.output.find("--device cuda: " + cuda::unavailable_reason()) != std::string::npos);
  }
  CHECK(!fs::exists(dir / "r.json"));  // nothing ran
}
