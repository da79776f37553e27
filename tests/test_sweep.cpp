// Sweeps, maxlen and merge: axis parsing, the canonical point list and its pasteable commands, oom
// and skipped points that do not stop a sweep, resume after a real SIGKILL, shards that merge back
// into the whole, and the longest length that fits a budget.
#include <catch2/catch.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "bench/sweep.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/data_helpers.hpp"
#include "tests/helpers.hpp"

extern char** environ;

using namespace lsb;
namespace fs = std::filesystem;

namespace {

// A quick sweep: tiny shapes, one repetition.
const std::string kQuick = " --min-reps 1 --min-time 0 --warmup 0 --no-progress --threads 1";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// The parts of a result that do not depend on timing.
std::vector<std::string> outline(const nlohmann::json& report) {
  std::vector<std::string> out;
  for (const auto& r : report["results"]) out.push_back(r["id"].get<std::string>() + " " + r["status"].get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("sweep axes parse from the command line forms", "[sweep]") {
  CHECK(split_variant_list("full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32") ==
        std::vector<std::string>{"full", "flash", "linformer:k=256", "sliding:R=64", "ls:w=8,r=32"});
  CHECK(split_variant_list("ls:w=8,r=32,full") == std::vector<std::string>{"ls:w=8,r=32", "full"});
  CHECK(parse_length_list("1024:32768:x2", "--n") == std::vector<std::int64_t>{1024, 2048, 4096, 8192, 16384, 32768});
  CHECK(parse_length_list("1024:4096:+1024", "--n") == std::vector<std::int64_t>{1024, 2048, 3072, 4096});
  CHECK(parse_length_list("512,100,7", "--n") == std::vector<std::int64_t>{512, 100, 7});
  for (const char* bad : {"0", "1024:512:x2", "1024:4096:x1", "1024:4096:*2", "abc", "1024:4096"})
    CHECK_THROWS_AS(parse_length_list(bad, "--n"), UsageError);
  CHECK(parse_shard("2/5") == std::pair<int, int>{2, 5});
  for (const char* bad : {"5/5", "-1/2", "1", "a/2", "1/0"}) CHECK_THROWS_AS(parse_shard(bad), UsageError);
  int i = -1, n = -1;
  ::setenv("SLURM_ARRAY_TASK_ID", "3", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "4", 1);
  ::setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
  CHECK(shard_from_slurm(i, n));
  CHECK((i == 3 && n == 4));
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  CHECK_FALSE(shard_from_slurm(i, n));
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
  ::unsetenv("SLURM_ARRAY_TASK_MIN");
}

TEST_CASE("sweep points are the cartesian product in one order and each listed command reruns its point",
          "[sweep][cli]") {
  SweepOptions o;
  o.variants = VariantSpec::parse_all({"full", "ls:w=8,r=32"});
  o.lengths = {64, 128};
  o.batches = {1, 2};
  o.modes = {"attn-fwd", "train-step"};
  o.layers = {1, 2};
  const auto pts = sweep_points(o);
  // attn modes have one layer axis value; train-step takes both layer counts.
  CHECK(pts.size() == 2 * 2 * 2 * 1 + 2 * 2 * 2 * 2);
  CHECK(pts.front().mode == "attn-fwd");
  CHECK(pts.front().n == 64);
  CHECK(pts[1].n == 128);  // n varies fastest

  const auto list = test::run_cli("sweep --variants full,ls:w=8,r=32 --n 64,128 --batch 1,2 --mode attn-fwd,train-step "
                                  "--layers 1,2 --list");
  REQUIRE(list.code == 0);
  const auto cmds = lines_of(list.output);
  REQUIRE(cmds.size() == pts.size());
  for (std::size_t i = 0; i < cmds.size(); ++i) CHECK(cmds[i] == pts[i].command());
  // Pasting a line back (with --list) gives exactly that line.
  for (const std::size_t i : {std::size_t{0}, cmds.size() - 1}) {
    const auto again = test::run_cli(cmds[i].substr(std::string("lsbench ").size()) + " --list");
    CHECK(lines_of(again.output) == std::vector<std::string>{cmds[i]});
  }
  // Shards partition the list.
  std::vector<std::string> joined;
  for (int s = 0; s < 3; ++s) {
    const auto part = test::run_cli(fmt::format("sweep --variants full,ls:w=8,r=32 --n 64,128 --batch 1,2 --mode "
                                                "attn-fwd,train-step --layers 1,2 --list --shard {}/3", s));
    for (const auto& l : lines_of(part.output)) joined.push_back(l);
  }
  CHECK(std::multiset<std::string>(joined.begin(), joined.end()) == std::multiset<std::string>(cmds.begin(), cmds.end()));
}

TEST_CASE("precision is a sweep axis: bf16 points name it, and bf16 on CUDA is skipped with the reason",
          "[sweep][cli][bf16]") {
  SweepOptions o;
  o.variants = VariantSpec::parse_all({"ls:w=8,r=4"});
  o.lengths = {64};
  o.precisions = {Precision::fp32, Precision::bf16};
  const auto pts = sweep_points(o);
  REQUIRE(pts.size() == 2);
  CHECK(pts[0].command().find("--precision") == std::string::npos);  // fp32 is the default
  CHECK(pts[1].command().find("--precision bf16") != std::string::npos);
  const auto fp8 = test::run_cli("sweep --variants ls:w=8,r=4 --n 64 --precision fp32,fp8 --list");
  CHECK(fp8.code == kUsage);
  CHECK_THAT(fp8.output, Catch::Contains("--precision") && Catch::Contains("fp8"));

  const auto dir = test::fresh_dir("sweep_bf16");
  const std::string out = (dir / "s.json").string();
  const auto r = test::run_cli("sweep --variants ls:w=8,r=4 --n 64 --batch 1 --dim 16 --heads 2 --mode attn-fwdbwd,train-step "
                               "--layers 1 --task listops --precision fp32,bf16 --device cpu,cuda --out " + out + kQuick);
  INFO(r.output);
  const auto rep = read_report(out);
  REQUIRE(rep["results"].size() == 8);
  std::set<std::string> ids;
  for (const auto& x : rep["results"]) {
    const auto& c = x["config"];
    INFO(c.dump());
    ids.insert(x["id"].get<std::string>());
    if (c["device"] == "cuda" && cuda::device_count() == 0) {
      CHECK(x["status"] == "skipped");
      CHECK_THAT(x["message"].get<std::string>(), Catch::Contains(cuda::unavailable_reason()));
    } else if (c["device"] == "cuda") {
      CHECK(x["status"] == "ok");  // bf16 too: every GPU the device machine lends has bf16 tensor cores
    } else {
      CHECK(x["status"] == (c["precision"] == "fp32" || bf16_matmul_available() ? "ok" : "skipped"));
    }
  }
  CHECK(ids.size() == 8);  // the precision is part of every point's id
}

// --profile: the ops of a training step, each call counted (LayerNorm: two per layer and the final one;
// linear: four projections and two MLP products per layer, two in the head; the attention core once
// per layer each way), the shares adding up to the whole, the step's time split without overlap.
TEST_CASE("sweep --profile splits a training step by op and counts every call", "[sweep][cli]") {
  const auto dir = test::fresh_dir("sweep_profile");
  const std::string out = (dir / "s.json").string();
  const auto r = test::run_cli("sweep --variants flash,ls:w=8,r=4 --n 64 --batch 2 --dim 16 --heads 2 --layers 2 "
                               "--mode train-step,model-fwd --task listops --profile 2 --out " + out + kQuick);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("profile, per step"));
  const auto rep = read_report(out);
  REQUIRE(rep["results"].size() == 4);
  for (const auto& x : rep["results"]) {
    INFO(x["config"].dump());
    REQUIRE(x["status"] == "ok");
    const bool train = x["config"]["mode"] == "train-step";
    const auto& p = x["profile"];
    CHECK(p["steps"] == 2);
    const auto& ops = p["ops"];
    auto calls = [&](const char* op) { return ops.contains(op) ? ops[op]["calls_per_step"].get<double>() : 0.0; };
    CHECK(calls("layernorm forward") == 5);
    CHECK(calls("linear forward") == 14);
    CHECK(calls("attention core forward") == 2);
    CHECK(calls("attention core backward") == (train ? 2 : 0));
    CHECK(calls("layernorm backward") == (train ? 5 : 0));
    CHECK(calls("adamw update") == (train ? x["config"]["variant"] == "flash" ? 40 : 52 : 0));
    double fractions = 0, seconds = 0;
    for (const auto& [name, e] : ops.items()) {
      fractions += e["fraction"].get<double>();
      seconds += e["seconds_per_step"].get<double>();
    }
    CHECK(fractions == Approx(1.0).epsilon(1e-9));
    CHECK(seconds == Approx(p["seconds_per_step"].get<double>()).epsilon(1e-9));
    CHECK(p["seconds_per_step"].get<double>() > 0);
  }
  // Without --profile, no profile.
  const std::string plain = (dir / "plain.json").string();
  REQUIRE(test::run_cli("sweep --variants flash --n 64 --batch 1 --dim 16 --heads 2 --layers 1 --mode train-step "
                        "--task listops --out " + plain + kQuick).code == 0);
  CHECK_FALSE(read_report(plain)["results"][0].contains("profile"));
}

TEST_CASE("a sweep records oom and skipped points with reasons and goes on", "[sweep][cli]") {
  const auto dir = test::fresh_dir("sweep_oom");
  const std::string out = (dir / "s.json").string();
  // full at n = 512 needs b*h*n^2 floats of probabilities (2 MiB): over a 1.5 MiB budget; the rest fits.
  const auto r = test::run_cli("sweep --variants full,ls:w=8,r=4,linformer:k=8,n_max=128 --n 128,512 --batch 1 --dim 16 "
                               "--heads 2 --mode attn-fwdbwd,model-fwd --layers 1 --device cpu,cuda --memory-budget 1536KiB "
                               "--out " + out + kQuick);
  INFO(r.output);
  CHECK(r.code == 4);  // some point out of memory
  const auto rep = read_report(out);  // valid against the schema
  CHECK_FALSE(fs::exists(out + ".journal"));
  std::map<std::string, int> statuses;
  for (const auto& x : rep["results"]) {
    const auto& c = x["config"];
    const std::string st = x["status"];
    statuses[st]++;
    INFO(c.dump() << " " << x.dump());
    if (c["variant"] == "full" && c["n"] == 512 && c["device"] == "cpu") {
      CHECK(st == "oom");
      CHECK(x["memory"]["requested_bytes"].get<std::int64_t>() > 0);
    }
    if (c["variant"] == "linformer" && c["n"] == 512 && c["device"] == "cpu") {
      CHECK(st == "skipped");
      CHECK(x["message"].get<std::string>().find("n_max") != std::string::npos);
    }
    if (c["device"] == "cuda" && cuda::device_count() == 0) CHECK(st == "skipped");
    if (st == "ok") {
      CHECK(x["memory"]["peak_tracked_bytes"].get<std::int64_t>() <= 1536 * 1024);
      CHECK(x["time_s"]["samples"].get<int>() >= 1);
    }
  }
  CHECK(rep["results"].size() == 3 * 2 * 2 * 2);
  CHECK(statuses["ok"] >= 6);
}

TEST_CASE("a sweep killed with SIGKILL resumes to the same report as an uninterrupted one", "[sweep][cli]") {
  const auto dir = test::fresh_dir("sweep_kill");
  const std::string args = "sweep --variants full,flash,ls:w=8,r=4 --n 64:4096:x2 --batch 1 --dim 16 --heads 2 "
                           "--mode attn-fwdbwd --min-reps 3 --min-time 0.05 --warmup 1 --no-progress --threads 1";
  const auto whole = test::run_cli(args + " --out " + (dir / "whole.json").string());
  REQUIRE(whole.code == 0);

  const fs::path killed = dir / "killed.json";
  const std::string cmd = fmt::format("exec {} {} --out {} >/dev/null 2>&1", LSBENCH_BIN, args, killed.string());
  pid_t pid;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  REQUIRE(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) == 0);
  // Kill it once a few points are in the report.
  const auto t0 = std::chrono::steady_clock::now();
  auto finished = [&]() -> std::size_t {
    try {
      return read_report(killed.string())["results"].size();
    } catch (const std::exception&) {
      return 0;
    }
  };
  while (finished() < 4 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::size_t before = finished();
  INFO("killed: " << WIFSIGNALED(status) << ", points in the report at the kill: " << before);
  REQUIRE(before >= 4);
  const auto resumed = test::run_cli(args + " --resume --out " + killed.string());
  INFO(resumed.output);
  REQUIRE(resumed.code == 0);
  if (WIFSIGNALED(status)) CHECK(resumed.output.find("taken from the earlier run") != std::string::npos);
  CHECK(outline(read_report(killed.string())) == outline(read_report((dir / "whole.json").string())));
  CHECK_FALSE(fs::exists(killed.string() + ".journal"));
}

TEST_CASE("shards of a sweep merge into the whole and merge refuses bad reports", "[sweep][cli]") {
  const auto dir = test::fresh_dir("sweep_shards");
  const std::string args = "sweep --variants full,ls:w=8,r=4 --n 64,128,256 --batch 1 --dim 16 --heads 2 --mode attn-fwd" + kQuick;
  REQUIRE(test::run_cli(args + " --out " + (dir / "whole.json").string()).code == 0);
  std::string parts;
  for (int s = 0; s < 2; ++s) {
    const auto p = dir / fmt::format("part{}.json", s);
    REQUIRE(test::run_cli(args + fmt::format(" --shard {}/2 --out {}", s, p.string())).code == 0);
    CHECK(read_report(p.string())["context"]["shard"]["count"] == 2);
    parts += fmt::format(" {}", p.string());
  }
  // A copy of a part under another name: its points are duplicates, dropped (the same file twice is refused).
  fs::copy_file(dir / "part0.json", dir / "copy0.json");
  CHECK(test::run_cli("merge" + parts + " " + (dir / "part0.json").string() + " -o " + (dir / "all.json").string()).code == 2);
  const auto merged = test::run_cli("merge" + parts + " " + (dir / "copy0.json").string() + " -o " + (dir / "all.json").string());
  INFO(merged.output);
  REQUIRE(merged.code == 0);
  const auto all = read_report((dir / "all.json").string());
  CHECK(all["context"]["merged_from"].size() == 3);
  const auto whole = outline(read_report((dir / "whole.json").string()));
  const auto got = outline(all);
  CHECK(std::multiset<std::string>(got.begin(), got.end()) == std::multiset<std::string>(whole.begin(), whole.end()));

  // Bad input: a wrong schema version, a truncated file, a missing file. Each names the file.
  auto bad = read_report((dir / "whole.json").string());
  bad["schema_version"] = 99;
  std::ofstream(dir / "v99.json") << bad.dump();
  const std::string text = read_report((dir / "whole.json").string()).dump();
  std::ofstream(dir / "cut.json") << text.substr(0, text.size() / 2);
  for (const char* name : {"v99.json", "cut.json", "missing.json"}) {
    const auto r = test::run_cli("merge " + (dir / "whole.json").string() + " " + (dir / name).string() + " -o " +
                                 (dir / "x.json").string());
    INFO(r.output);
    CHECK(r.code == 3);
    CHECK(r.output.find(name) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir / "x.json"));
}

TEST_CASE("maxlen finds the longest length that fits and full fits less than ls", "[sweep][cli]") {
  const auto dir = test::fresh_dir("maxlen");
  const std::string out = (dir / "m.json").string();
  const auto r = test::run_cli("maxlen --variants full,ls:w=8,r=4 --mode attn-fwd --memory-budget 2MiB --granule 64 "
                               "--batch 1 --dim 16 --heads 2 --threads 1 --out " + out);
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto rep = read_report(out);
  REQUIRE(rep["results"].size() == 2);
  const auto full_n = rep["results"][0]["max_n"].get<std::int64_t>();
  const auto ls_n = rep["results"][1]["max_n"].get<std::int64_t>();
  CHECK(full_n > 0);
  CHECK(full_n % 64 == 0);
  CHECK(ls_n > 2 * full_n);
  CHECK(r.output.find("x full") != std::string::npos);
  // The answer fits and one granule more does not.
  const std::string point = "sweep --variants full --batch 1 --dim 16 --heads 2 --mode attn-fwd --memory-budget 2MiB" + kQuick;
  CHECK(test::run_cli(point + fmt::format(" --n {}", full_n)).code == 0);
  CHECK(test::run_cli(point + fmt::format(" --n {}", full_n + 64)).code == 4);
  CHECK(test::run_cli("maxlen --variant ls --mode attn-fwd").code == 2);  // no budget
}

TEST_CASE("a resumed sweep with other points keeps every finished point of its report", "[sweep][cli]") {
  const fs::path dir = fs::temp_directory_path() / "lsbench_sweep_resume_other";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string out = (dir / "r.json").string();
  const std::string base = "sweep --variants full --batch 1 --dim 16 --heads 2 --mode attn-fwd" + kQuick;
  REQUIRE(test::run_cli(base + " --n 32,48 --out " + out).code == 0);
  // Another set of points (48 again, and 64): the earlier 32 must survive the rewrite.
  const auto r = test::run_cli(base + " --n 48,64 --resume --out " + out);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("1 taken from the earlier run") && Catch::Contains("1 other points of the earlier report kept"));
  const nlohmann::json rep = read_report(out);
  std::set<std::int64_t> ns;
  for (const auto& x : rep["results"]) ns.insert(x["config"]["n"].get<std::int64_t>());
  CHECK(ns == std::set<std::int64_t>{32, 48, 64});
  fs::remove_all(dir);
}

TEST_CASE("a point's repro line carries the sweep's seed and budget, and rerun it gets the same config id and outcome",
          "[sweep][cli]") {
  const auto dir = test::fresh_dir("sweep_repro");
  // full at n = 512 does not fit 1.5 MiB (its probabilities alone are 2 MiB), ls does: the budget decides.
  const std::string axes = "--variants full,ls:w=8,r=4 --n 512 --batch 1 --dim 16 --heads 2 --mode attn-fwdbwd "
                           "--seed 7 --memory-budget 1536KiB";
  const auto list = test::run_cli("sweep " + axes + " --list");
  REQUIRE(list.code == 0);
  const auto cmds = lines_of(list.output);
  REQUIRE(cmds.size() == 2);
  const std::string sweep_out = (dir / "sweep.json").string();
  const auto all = test::run_cli("sweep " + axes + " --out " + sweep_out + kQuick);
  INFO(all.output);
  const auto whole = read_report(sweep_out);
  REQUIRE(whole["results"].size() == 2);
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    INFO(cmds[i]);
    CHECK_THAT(cmds[i], Catch::Contains(" --seed 7") && Catch::Contains(" --memory-budget 1536KiB"));
    const std::string out = (dir / fmt::format("point{}.json", i)).string();
    const auto one = test::run_cli(cmds[i].substr(std::string("lsbench ").size()) + " --out " + out + kQuick);
    INFO(one.output);
    const auto rep = read_report(out);
    REQUIRE(rep["results"].size() == 1);
    CHECK(rep["results"][0]["id"] == whole["results"][i]["id"]);
    CHECK(rep["results"][0]["status"] == whole["results"][i]["status"]);
  }
  CHECK(whole["results"][0]["status"] == "oom");
  CHECK(whole["results"][1]["status"] == "ok");
}

TEST_CASE("attention bench and sweep measure a point through one path, and every result's repro line reproduces "
          "its id",
          "[sweep][cli]") {
  const auto dir = test::fresh_dir("one_path");
  const std::string quick = " --warmup 0 --min-reps 1 --min-time 0 ";
  const auto bench = test::run_cli("attention bench --variant full ls:w=8,r=4 --n 64 100 --batch 2 --dim 16 --heads 2 "
                                   "--mode fwdbwd --seed 3" + quick + "--json " + (dir / "bench.json").string());
  INFO(bench.output);
  REQUIRE(bench.code == 0);
  const auto sweep = test::run_cli("sweep --variants full,ls:w=8,r=4 --n 64,100 --batch 2 --dim 16 --heads 2 "
                                   "--mode attn-fwdbwd --seed 3 --no-progress" + quick + "--out " +
                                   (dir / "sweep.json").string());
  INFO(sweep.output);
  REQUIRE(sweep.code == 0);
  const auto b = read_report((dir / "bench.json").string())["results"];
  const auto s = read_report((dir / "sweep.json").string())["results"];
  REQUIRE(b.size() == 4);
  REQUIRE(s.size() == 4);
  for (std::size_t i = 0; i < b.size(); ++i) {
    INFO(b[i]["repro"]);
    CHECK(b[i]["id"] == s[i]["id"]);
    CHECK(b[i]["status"] == s[i]["status"]);
    CHECK(b[i]["memory"]["peak_tracked_bytes"] == s[i]["memory"]["peak_tracked_bytes"]);
    CHECK(b[i]["memory"]["analytic_bytes"] == s[i]["memory"]["analytic_bytes"]);
    CHECK(b[i]["throughput"]["flops"] == s[i]["throughput"]["flops"]);
    CHECK(b[i]["repro"] == s[i]["repro"]);
    // The repro line, run as it stands, gives a report with the same id.
    std::string repro = b[i]["repro"].get<std::string>();
    REQUIRE(repro.rfind("lsbench ", 0) == 0);
    const auto again = test::run_cli(repro.substr(8) + quick + "--no-progress --out " + (dir / "again.json").string());
    REQUIRE(again.code == 0);
    CHECK(read_report((dir / "again.json").string())["results"][0]["id"] == b[i]["id"]);
  }
  // The same line for a point in both commands' output.
  CHECK_THAT(bench.output, Catch::Contains("attn-fwdbwd ls n=100 b=2 D=16 h=2 cpu: "));
  CHECK_THAT(sweep.output, Catch::Contains("attn-fwdbwd ls n=100 b=2 D=16 h=2 cpu: "));
  // A skipped point prints its repro line.
  const auto skipped = test::run_cli("sweep --variants linformer:k=8,n_max=64 --n 64,128 --batch 1 --dim 16 --heads 2 "
                                     "--mode attn-fwd --no-progress" + quick);
  CHECK_THAT(skipped.output, Catch::Contains("skipped") &&
                                 Catch::Contains("(rerun: lsbench sweep --variants linformer:k=8,n_max=64 --n 128"));
}

TEST_CASE("maxlen and train results carry a repro line that reproduces their id", "[sweep][cli][train]") {
  const auto dir = test::fresh_dir("repro_maxlen");
  const auto m = test::run_cli("maxlen --variant full --mode attn-fwd --batch 1 --dim 16 --heads 2 --granule 64 "
                               "--limit 256 --memory-budget 64MiB --out " + (dir / "m.json").string());
  REQUIRE(m.code == 0);
  const auto r = read_report((dir / "m.json").string())["results"][0];
  const std::string repro = r["repro"].get<std::string>();
  INFO(repro);
  REQUIRE(test::run_cli(repro.substr(8) + " --out " + (dir / "again.json").string()).code == 0);
  CHECK(read_report((dir / "again.json").string())["results"][0]["id"] == r["id"]);
  CHECK(r["attempts"][0].contains("repro"));

  // A training run with overrides of its preset.
  const auto t = test::run_cli(fmt::format("train --task listops --data-dir {} --preset smoke --variant ls:w=8,r=4 "
                                           "--steps 4 --eval-every 2 --max-val 16 --max-test 16 --lr 0.003 --seed 5 "
                                           "--no-progress --out {}",
                                           test::smoke_listops_dir(), (dir / "t.json").string()));
  REQUIRE(t.code == 0);
  const auto run = read_report((dir / "t.json").string())["results"][0];
  const std::string train_repro = run["repro"].get<std::string>();
  INFO(train_repro);
  CHECK_THAT(train_repro, Catch::Contains("--steps 4") && Catch::Contains("--seed 5") && !Catch::Contains("--batch"));
  REQUIRE(test::run_cli(train_repro.substr(8) + " --no-progress --out " + (dir / "t2.json").string()).code == 0);
  CHECK(read_report((dir / "t2.json").string())["results"][0]["id"] == run["id"]);
}
