// The command line as a user meets it: exit codes, one-line errors, and the interop path.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attention_impls/registry.hpp"
#include "attention_impls/reference_f64.hpp"
#include "nn/cuda/device.hpp"
#include "bench/cli.hpp"
#include "nn/files.hpp"
#include "nn/matmul.hpp"
#include "nn/npy.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using namespace lsb::test;
namespace fs = std::filesystem;

namespace {
const std::string kQuick = " --batch 2 --dim 16 --heads 2 --warmup 1 --min-reps 2 --min-time 0 ";
}  // namespace

TEST_CASE("usage errors exit 2 with one line naming the option and what is valid", "[cli]") {
  const std::pair<std::string, std::vector<std::string>> cases[] = {
      {"attention bench --variant nope --n 64" + kQuick, {"unknown variant 'nope'", "sliding"}},
      {"attention bench --variant ls:w=0,r=0 --n 64" + kQuick, {"w=0 and r=0"}},
      {"attention bench --variant linformer:k=8,n_max=100 --n 200" + kQuick, {"exceeds n_max 100"}},
      {"attention bench --variant full --n 64 --mode sideways" + kQuick, {"--mode sideways"}},
      {"attention bench --variant full --n 64 --memory-budget lots" + kQuick, {"--memory-budget: 'lots' is not a size"}},
      {"attention bench --variant full --n 64 --device cuda" + kQuick, {"--device cuda"}},
      {"attention bench --variant cudnn --n 64" + kQuick, {"--variant cudnn", "only with --device cuda"}},
      {"attention bench --variant full --n 64 --precision fp16" + kQuick, {"--precision", "'fp16'", "bf16"}},
      {"attention bench --n 64", {"--variant"}},
      // Specs are read where the command line is: before any data, measurement or file.
      {"train --task listops --data-dir /nonexistent --variant nope", {"unknown variant 'nope'"}},
      {"sweep --variants full,nope --n 64 --list", {"unknown variant 'nope'"}},
      {"sweep --variants ls:w=0,r=0 --n 64,128 --list", {"--variants ls:w=0,r=0: no point can use it", "w=0 and r=0"}},
      {"sweep --variants sliding:X=3 --n 64 --list", {"unknown key 'X'", "R"}},
      {"lra --data-dir /nonexistent --out /nonexistent/r.json --variants ls:w", {"'w' is not key=value"}},
      {"maxlen --variant full --variant :k=1 --memory-budget 1GiB", {"missing variant name"}},
      {"data generate pathx --out /tmp/x", {"pathx"}},
  };
  for (const auto& [args, expected] : cases) {
    INFO(args);
    if (args.find("--device cuda") != std::string::npos && cuda::device_count() > 0) continue;  // it runs there
    const auto r = run_cli(args);
    CHECK(r.code == 2);
    for (const auto& e : expected) CHECK_THAT(r.output, Catch::Contains(e));
  }
  CHECK(run_cli("--help").code == 0);
  // An unknown variant is one line naming the option, the spec and the valid names.
  const auto unknown = run_cli("sweep --variants full,nope:k=2 --n 64 --list");
  CHECK(unknown.code == 2);
  CHECK(std::count(unknown.output.begin(), unknown.output.end(), '\n') == 1);
  CHECK_THAT(unknown.output, Catch::Contains("--variants 'nope:k=2': unknown variant 'nope'; valid: full, flash"));
}

TEST_CASE("info names the machine, the CUDA status and where bf16 products can run", "[cli]") {
  const auto r = run_cli("info");
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("measured fp32 peak"));
  CHECK_THAT(r.output, Catch::Contains(std::string("bf16 products: cpu ") + (bf16_matmul_available() ? "yes" : "no")));
  if (cuda::device_count() == 0) CHECK_THAT(r.output, Catch::Contains("cuda: " + cuda::unavailable_reason()) ||
                                                          Catch::Contains("cuda: compiled in; " + cuda::unavailable_reason()));
}

TEST_CASE("CPU commands start without the CUDA libraries and under a 600 MB address-space limit", "[cli]") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("skipped under AddressSanitizer: its shadow memory needs terabytes of address space");
  return;
#endif
  // What the loader maps before main: nothing of CUDA (the static runtime opens the driver, and blas.cu
  // opens cuBLAS, at first use), so the binary also starts on a node that has no CUDA libraries at all.
  const auto loaded = run_cli("", "LD_TRACE_LOADED_OBJECTS=1");
  INFO(loaded.output);
  REQUIRE(loaded.code == 0);
  REQUIRE_THAT(loaded.output, Catch::Contains("libgomp"));  // the trace lists the libraries
  for (const char* cuda_library : {"libcublas", "libcudart", "libcuda.so", "libcudnn"})
    CHECK_THAT(loaded.output, !Catch::Contains(cuda_library));

  // A shared login node's limit (`ulimit -v`): before, every command failed to map libcublasLt here.
  const std::string limit = "ulimit -v 600000;";
  const std::string report = (fresh_dir("no_cuda_at_start") / "bench.json").string();
  for (const std::string& args : {std::string("info"),
                                  "attention bench --variant full --variant ls:w=8,r=4 --n 64 --mode fwdbwd" + kQuick +
                                      "--json " + report,
                                  "report " + report}) {
    const auto r = run_cli(args, limit);
    INFO(args << "\n" << r.output);
    CHECK(r.code == 0);
  }
  // Opened on first use, cuBLAS is still found: the toolkit this binary was built with is on this machine.
  if (cuda::compiled()) CHECK(cuda::cublas_problem().empty());
  if (cuda::compiled() && cuda::device_count() == 0) {  // asked for, the GPU is still refused by its reason
    const auto r = run_cli("attention bench --variant full --n 64 --device cuda" + kQuick, limit);
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Catch::Contains("--device cuda: " + cuda::unavailable_reason()));
  }
}

TEST_CASE("bench writes a valid report where a point over budget is oom and the others still run", "[cli][report]") {
  const auto dir = fresh_dir("bench");
  const auto json = (dir / "r.json").string();
  // Budget 24 MiB: full at n = 2048 needs b*h*n^2*4 = 64 MiB of probabilities; flash fits.
  const auto r = run_cli("attention bench --variant full --variant flash --n 256 --n 2048 --mode fwdbwd "
                         "--memory-budget 24MiB --json " + json + kQuick);
  INFO(r.output);
  CHECK(r.code == 4);
  CHECK_THAT(r.output, Catch::Contains("did not fit the memory budget"));
  std::ifstream f(json);
  const auto rep = nlohmann::json::parse(f);
  CHECK(validate_report(rep).empty());
  REQUIRE(rep["results"].size() == 4);
  std::map<std::string, std::string> status;
  for (const auto& x : rep["results"])
    status[x["config"]["variant"].get<std::string>() + std::to_string(x["config"]["n"].get<int>())] = x["status"];
  CHECK(status["full256"] == "ok");
  CHECK(status["full2048"] == "oom");
  CHECK(status["flash256"] == "ok");
  CHECK(status["flash2048"] == "ok");
  for (const auto& x : rep["results"]) {
    if (x["status"] == "oom") {
      CHECK_THAT(x["message"].get<std::string>(), Catch::Contains("full attention probabilities"));
      continue;
    }
    CHECK(x["time_s"]["samples"].get<int>() >= 2);
    CHECK(x["memory"]["peak_tracked_bytes"].get<double>() > 0);
    CHECK(x["memory"]["tracked_allocations_while_timing"] == 0);
    CHECK(x["check"]["grad_rel_error"].get<double>() < 1e-3);
  }
}

TEST_CASE("bench --precision bf16 checks against float64 with the bf16 tolerance and says so in the report",
          "[cli][bf16]") {
  if (!bf16_matmul_available()) {
    const auto r = run_cli("attention bench --variant full --n 64 --precision bf16" + kQuick);
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Catch::Contains("--precision bf16"));
    return;
  }
  const auto dir = fresh_dir("bench_bf16");
  const auto json = (dir / "r.json").string();
  const auto r = run_cli("attention bench --variant ls:w=8,r=4 --variant linformer:k=16 --n 128 --mode fwdbwd "
                         "--precision bf16 --json " + json + kQuick);
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto rep = nlohmann::json::parse(std::ifstream(json));
  CHECK(validate_report(rep).empty());
  REQUIRE(rep["results"].size() == 2);
  for (const auto& x : rep["results"]) {
    CHECK(x["config"]["precision"] == "bf16");
    CHECK(x["status"] == "ok");
    // bf16 products: errors far above fp32's 1e-6, within the 2^-5 rule.
    const double e = x["check"]["forward_rel_error"].get<double>();
    CHECK(e > 1e-4);
    CHECK(e <= 0x1p-5);
    // GFLOP/s are compared with the measured fp32 peak, and the report says so.
    CHECK(x["throughput"]["peak_basis"] == "fp32 FMA peak, measured");
    CHECK(x["throughput"]["peak_fraction"].get<double>() > 0);
  }
}

TEST_CASE("attention run reproduces the float64 reference from .npy weights and writes gradients",
          "[cli][interop]") {
  const auto dir = fresh_dir("interop");
  const std::int64_t b = 2, n = 10, D = 8, h = 2;  // n = 10 is padded to 12 for w = 4
  const std::string spec = "ls:w=4,r=2";
  auto a = make_attention(VariantSpec::parse(spec), D, h, 12);
  randomize(*a, 5);
  fs::create_directories(dir / "w");
  for (auto& p : a->params()) write_npy_f32((dir / "w" / (p.name + ".npy")).string(), p.value.shape(), p.value.data());
  const Problem pr = make_problem(b, n, D, h, 3, 9);
  write_npy_f32((dir / "x.npy").string(), {b, n, D}, pr.x.data());
  std::vector<float> mask_f(pr.mask.begin(), pr.mask.end());
  write_npy_f32((dir / "mask.npy").string(), {b, n}, mask_f.data());
  std::vector<float> dy(b * n * D, 0.25f);
  write_npy_f32((dir / "dy.npy").string(), {b, n, D}, dy.data());

  const std::string base = "attention run --variant " + spec + " --heads 2 --weights " + (dir / "w").string() +
                           " --input " + (dir / "x.npy").string() + " --mask " + (dir / "mask.npy").string() +
                           " --output " + (dir / "y.npy").string();
  auto r = run_cli(base + " --grad-output " + (dir / "dy.npy").string() + " --grads " + (dir / "g").string());
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto y = load_npy_f32((dir / "y.npy").string(), {b, n, D}, "y");
  const auto ref = reference_attention("ls", a->resolved_params(), D, h, b, n, params_f64(*a), to_f64(pr.x), pr.mask);
  CHECK(compare_to_reference(y.data(), ref).max_rel < 2e-6);
  CHECK(load_npy_f32((dir / "g" / "dx.npy").string(), {b, n, D}, "dx").size() == std::size_t(b * n * D));
  for (auto& p : a->params()) CHECK(fs::exists(dir / "g" / ("d" + p.name + ".npy")));

  // bf16 products: within the bf16 rule of float64 and visibly not fp32 (docs/VARIANTS.md).
  r = run_cli(base + " --precision bf16");
  if (bf16_matmul_available()) {
    REQUIRE(r.code == 0);
    const double err = compare_to_reference(load_npy_f32((dir / "y.npy").string(), {b, n, D}, "y").data(), ref).max_rel;
    CHECK(err <= 0x1p-5);
    CHECK(err >= 0x1p-10);
  } else {
    CHECK(r.code == 2);
  }
  // On the GPU: the same outputs (the CUDA rule: within twice the CPU's error, floor 2e-6); without one, a
  // usage error naming the reason.
  r = run_cli(base + " --device cuda --grad-output " + (dir / "dy.npy").string() + " --grads " + (dir / "g").string());
  if (cuda::device_count() > 0) {
    REQUIRE(r.code == 0);
    CHECK(compare_to_reference(load_npy_f32((dir / "y.npy").string(), {b, n, D}, "y").data(), ref).max_rel < 4e-6);
  } else {
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Catch::Contains("--device cuda"));
  }

  // A missing weight, and a misshapen one, are input errors naming the file and the shape.
  fs::remove(dir / "w" / "wp.npy");
  r = run_cli(base);
  CHECK(r.code == 3);
  CHECK_THAT(r.output, Catch::Contains("wp.npy: missing weight 'wp' of shape (4, 8)"));
  std::vector<float> junk(5);
  write_npy_f32((dir / "w" / "wp.npy").string(), {5}, junk.data());
  r = run_cli(base);
  CHECK(r.code == 3);
  CHECK_THAT(r.output, Catch::Contains("wp.npy: weight wp must have shape (4, 8), found (5,)"));
}

TEST_CASE("model run computes the golden model's logits, loss and gradients, and names a bad array", "[cli][interop]") {
  const fs::path golden = fs::path(LSBENCH_GOLDEN_DIR) / "interop" / "ls";
  const fs::path out = fs::temp_directory_path() / "lsbench_cli_model_run";
  fs::remove_all(out);
  fs::create_directories(out);
  const std::string base = fmt::format("model run --weights {} --variant ls:w=4,r=3 --heads 2 --input {} --mask {} ",
                                       (golden / "weights").string(), (golden / "ids.npy").string(),
                                       (golden / "mask.npy").string());
  const auto r = run_cli(base + fmt::format("--labels {} --grads {} --output {} --pooling mean-all",
                                            (golden / "labels.npy").string(), (out / "g").string(),
                                            (out / "logits.npy").string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("loss 1.0952"));  // the golden loss, 1.09529564
  const NpyArray want = read_npy((golden / "logits.npy").string());
  const auto got = load_npy_f32((out / "logits.npy").string(), want.shape, "logits");
  for (std::size_t i = 0; i < got.size(); ++i) {
    double w;
    std::memcpy(&w, want.bytes.data() + 8 * i, 8);
    CHECK(got[i] == Approx(w).epsilon(1e-5).margin(1e-6));
  }
  CHECK(fs::exists(out / "g" / "model.transformer_1.mha.dconv_fc.weight.npy"));
  CHECK(fs::exists(out / "g" / "loss.npy"));
  // lsbench's own pooling gives other logits on padded sequences.
  CHECK(run_cli(base + fmt::format("--output {}", (out / "mean.npy").string())).code == 0);
  CHECK(load_npy_f32((out / "mean.npy").string(), want.shape, "logits") != got);

  const std::pair<std::string, std::vector<std::string>> bad[] = {
      {"--variant full", {"missing array 'model.transformer_0.mha.ff.weight'"}},  // ls weights, full variant
      {"--pooling cls", {"cls_token"}},
      {"--labels " + (golden / "ids.npy").string(), {"--labels must have shape (4,)"}},
  };
  for (const auto& [extra, expected] : bad) {
    INFO(extra);
    std::string args = base + "--output " + (out / "x.npy").string() + " " + extra;
    if (extra.starts_with("--variant")) args = std::regex_replace(args, std::regex("--variant ls:w=4,r=3 "), "");
    const auto e = run_cli(args);
    CHECK(e.code == 3);
    for (const auto& s : expected) CHECK_THAT(e.output, Catch::Contains(s));
  }
  fs::copy(golden / "weights", out / "w");
  fs::remove(out / "w" / "model.norm.bias.npy");
  const auto missing = run_cli(std::regex_replace(base, std::regex((golden / "weights").string()), (out / "w").string()) +
                               "--output " + (out / "x.npy").string());
  CHECK(missing.code == 3);
  CHECK_THAT(missing.output, Catch::Contains("missing array 'model.norm.bias'"));
  CHECK(run_cli(base + "--output x.npy --grads g").code == 2);  // gradients need labels
  fs::remove_all(out);
}

TEST_CASE("hostile command lines and files get a one-line error and their exit code, never a crash or exit 0", "[cli][hardening]") {
  const auto dir = fresh_dir("hostile");
  const std::string bench = "attention bench --variant full --n 64" + kQuick;
  // Options: impossible values are usage errors (exit 2) naming the option.
  const std::pair<std::string, std::vector<std::string>> usage[] = {
      {bench + " --threads 100000", {"the CPUs this process may use"}},
      {bench + " --threads -1", {"--threads"}},
      {"attention bench --variant full --n 64 --batch 2 --dim 16 --heads 2 --warmup -1", {"--warmup"}},
      {"attention bench --variant full --n 64 --batch 2 --dim 16 --heads 2 --min-reps -1", {"--min-reps"}},
      {"attention bench --variant full --n 64 --batch 2 --dim 16 --heads 2 --min-time nan", {"--min-time", "finite"}},
      {"attention bench --variant full --n 64 --batch 2 --dim 16 --heads 2 --max-time -1", {"--max-time"}},
      {bench + " --memory-budget 99999999999999999999999GiB", {"larger than any memory"}},
      {"attention bench --variant full --n 99999999999 --batch 8 --dim 64 --heads 2", {"beyond any machine"}},
      {"sweep --variants full --n 64 --batch 1 --dim 16 --heads 2 --threads 100000", {"--threads", "the CPUs this process may use"}},
  };
  for (const auto& [args, expected] : usage) {
    INFO(args);
    const auto r = run_cli(args);
    CHECK(r.code == 2);
    for (const auto& e : expected) CHECK_THAT(r.output, Catch::Contains(e));
  }
  // Reports: anything but an lsbench report is unusable input naming the file (report, merge: 3; compare: 2).
  const auto good = (dir / "good.json").string();
  REQUIRE(run_cli("attention bench --variant full --n 32 --batch 1 --dim 16 --heads 2 --warmup 0 --min-reps 1 "
                  "--min-time 0 --json " + good).code == 0);
  nlohmann::json g;
  std::ifstream(good) >> g;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream((dir / name).string()) << text;
    return (dir / name).string();
  };
  nlohmann::json no_time = g, twice = g, version = g;
  no_time["results"][0].erase("time_s");
  twice["results"].push_back(twice["results"][0]);
  version["schema_version"] = "1";
  const std::pair<std::string, std::string> bad[] = {
      {write("array.json", "[1, 2]"), "not an object"},
      {write("null.json", "null"), "not an object"},
      {write("version.json", version.dump()), "schema_version"},
      {write("huge.json", "{\"schema\": 1e99900144269}"), "huge.json"},
      {write("notime.json", no_time.dump()), "time_s"},
      {write("twice.json", twice.dump()), "id of an earlier result"},
      {dir.string(), "is a directory"},
  };
  for (const auto& [path, expected] : bad) {
    INFO(path);
    const auto r = run_cli("report " + path);
    CHECK(r.code == 3);
    CHECK_THAT(r.output, Catch::Contains(expected));
    CHECK(run_cli("merge " + path + " " + good + " -o " + (dir / "m.json").string()).code == 3);
    CHECK(run_cli("compare " + good + " " + path).code == 2);
  }
  CHECK(run_cli("compare " + good + " " + good).code == 2);
  CHECK_THAT(run_cli("merge " + good + " " + good + " -o " + (dir / "m.json").string()).output, Catch::Contains("twice"));
  // attention run: outputs that cannot be written and inputs that do not fit fail before anything is written.
  auto a = make_attention(VariantSpec::parse("full"), 8, 2, 4);
  fs::create_directories(dir / "w");
  for (auto& p : a->params()) write_npy_f32((dir / "w" / (p.name + ".npy")).string(), p.value.shape(), p.value.data());
  std::vector<float> x(2 * 4 * 8, 0.5f), dy_bad(2 * 4 * 7, 1.0f);
  write_npy_f32((dir / "x.npy").string(), {2, 4, 8}, x.data());
  write_npy_f32((dir / "dy.npy").string(), {2, 4, 7}, dy_bad.data());
  const std::string run = "attention run --variant full --heads 2 --weights " + (dir / "w").string() + " --input " +
                          (dir / "x.npy").string();
  fs::create_directories(dir / "out_dir");
  auto r = run_cli(run + " --output " + (dir / "out_dir").string());
  CHECK(r.code == 3);
  CHECK_THAT(r.output, Catch::Contains("is a directory"));
  CHECK_FALSE(fs::exists(dir / "out_dir.tmp"));
  r = run_cli(run + " --output " + (dir / "y.npy").string() + " --grad-output " + (dir / "dy.npy").string() +
              " --grads " + good);
  CHECK(r.code == 3);
  CHECK_THAT(r.output, Catch::Contains("--grads names a file"));
  r = run_cli(run + " --output " + (dir / "y.npy").string() + " --grad-output " + (dir / "dy.npy").string() +
              " --grads " + (dir / "g").string());
  CHECK(r.code == 3);
  CHECK_THAT(r.output, Catch::Contains("dy.npy"));
  CHECK_FALSE(fs::exists(dir / "y.npy"));  // nothing written before the misshapen gradient was found
  // A valid setting is run: the reference check's small copy stays within the spec's n_max.
  CHECK(run_cli("attention bench --variant linformer:k=4,n_max=16 --n 16" + kQuick).code == 0);
  // A window larger than memory is out of memory or a usage error, not an internal error. (Not under
  // AddressSanitizer: its allocator aborts on such a request instead of throwing std::bad_alloc.)
#ifndef __SANITIZE_ADDRESS__
  const int huge_window = run_cli("attention bench --variant ls:w=1000000000 --n 64" + kQuick).code;
  CHECK((huge_window == 2 || huge_window == 4));
#endif
}

TEST_CASE("hostile values of the probe's second round: empty and huge axes, bad numbers, bad environment, deep JSON, "
          "device outputs",
          "[cli][hardening]") {
  const auto dir = fresh_dir("hostile2");
  const std::string sweep = "sweep --variants full --batch 1 --dim 16 --heads 2 --list ";
  // Each is a usage error (exit 2) naming the option, never a crash, a hang or exit 0.
  const std::pair<std::string, std::vector<std::string>> usage[] = {
      {sweep + "--n ''", {"--n", "empty"}},
      {sweep + "--n ,", {"--n", "empty item"}},
      {sweep + "--n 64,,128", {"--n", "empty item"}},
      {sweep + "--n 64,64", {"--n", "twice"}},
      {sweep + "--n 64:9223372036854775807:x2", {"--n", "beyond any machine"}},  // 57 values, the last too large
      {sweep + "--n 1:9223372036854775807:+1", {"--n", "more than 4096 values"}},
      {sweep + "--n 64 --mode attn-fwd,", {"--mode", "empty item"}},
      {sweep + "--n 64 --causal maybe", {"--causal maybe"}},
      {sweep + "--n 64 --mlp-dim -5", {"--mlp-dim"}},
      {"sweep --variants full,,flash --n 64 --list", {"--variants", "empty item"}},
      {"train --task listops --data-dir /tmp --val-from bogus", {"--val-from"}},
      {"train --task listops --data-dir /tmp --lr nan", {"--lr"}},
      {"train --task listops --data-dir /tmp --weight-decay inf", {"--weight-decay"}},
      {"train --task listops --data-dir /tmp --clip-norm nan", {"--clip-norm"}},
      {"train --task listops --data-dir /tmp --seed -1", {"--seed"}},
      {"train --task listops --data-dir /tmp --max-val -1", {"--max-val"}},
      {"train --task listops --data-dir /tmp --attention-dropout -0.5", {"--attention-dropout"}},
      {"train --task listops --data-dir /tmp --length 0", {"--length"}},
      {"data generate listops --out " + (dir / "l").string() + " --min-length 10 --max-length 11", {"--min-length"}},
  };
  for (const auto& [args, expected] : usage) {
    INFO(args);
    const auto r = run_cli(args);
    CHECK(r.code == 2);
    for (const auto& e : expected) CHECK_THAT(r.output, Catch::Contains(e));
  }
  // Sharding from the environment: strict integers, blamed on the variable.
  const auto slurm = run_cli(sweep + "--n 64", "SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=4");
  CHECK(slurm.code == 2);
  CHECK_THAT(slurm.output, Catch::Contains("SLURM_ARRAY_TASK_ID='x'"));
  // Every exit code in the help footer.
  CHECK_THAT(run_cli("--help").output, Catch::Contains("6 a training run diverged"));
  // A report nested deeper than any report is refused before it is walked.
  std::ofstream(dir / "deep.json") << std::string(100000, '[') << std::string(100000, ']');
  const auto deep = run_cli("report " + (dir / "deep.json").string());
  CHECK(deep.code == 3);
  CHECK_THAT(deep.output, Catch::Contains("nested 100000 deep"));
  // A FIFO as input is refused, not read for ever.
  REQUIRE(::mkfifo((dir / "fifo.json").c_str(), 0600) == 0);
  const auto fifo = run_cli("report " + (dir / "fifo.json").string());
  CHECK(fifo.code == 3);
  CHECK_THAT(fifo.output, Catch::Contains("not a regular file"));
  // Outputs: an empty path is refused; a character device (a copy of /dev/null made for the test, where the
  // system lets us) is written in place, never replaced by a regular file.
  const std::string bench = "attention bench --variant full --n 32 --batch 1 --dim 16 --heads 2 --warmup 0 "
                            "--min-reps 1 --min-time 0 --json ";
  CHECK(run_cli(bench + "''").code == 2);
  const fs::path dev = dir / "null-copy";
  if (::mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) {
    CHECK(run_cli(bench + dev.string()).code == 0);
    CHECK(fs::is_character_file(dev));
  } else {
    WARN("skipped the device-output case: mknod is not permitted here");
  }
}

TEST_CASE("two commands writing one report at once: the second is refused and the first loses nothing",
          "[cli][hardening]") {
  const auto dir = fresh_dir("report_lock");
  const std::string out = (dir / "sweep.json").string();
  const std::string sweep = fmt::format(
      "sweep --variants full --n 64 --batch 1 --dim 16 --heads 2 --mode attn-fwd --warmup 0 --min-reps 1 --min-time 0 "
      "--no-progress --out {}",
      out);
  {
    const OutputLock held(out);  // as a sweep in progress holds it
    CHECK(std::filesystem::exists(out + ".lock"));
    const auto r = run_cli(sweep);
    CHECK(r.code == kUsage);
    CHECK_THAT(r.output, Catch::Contains(out) && Catch::Contains("another lsbench is writing"));
    CHECK_FALSE(std::filesystem::exists(out));
    CHECK_THROWS_AS(OutputLock(out), UsageError);  // in-process too
    for (const std::string& cmd : {"train --task listops --data-dir /nonexistent --out " + out,
                                   "maxlen --variant full --memory-budget 1MiB --out " + out}) {
      const auto refused = run_cli(cmd);
      CHECK(refused.code == kUsage);
      CHECK_THAT(refused.output, Catch::Contains("another lsbench is writing"));
    }
  }
  CHECK_FALSE(std::filesystem::exists(out + ".lock"));  // released and removed
  CHECK(run_cli(sweep).code == 0);
  CHECK(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".lock"));
  const OutputLock devnull("/dev/null");  // not a regular file: nothing to lock
}

TEST_CASE("symbolic link loops, FIFOs and directories where an input file belongs are input errors naming the path",
          "[cli][hardening]") {
  namespace fs = std::filesystem;
  const auto dir = fresh_dir("input_kinds");
  const std::string loop = (dir / "loop_a").string(), fifo = (dir / "fifo").string(), folder = (dir / "folder").string();
  fs::create_symlink(dir / "loop_b", loop);
  fs::create_symlink(loop, dir / "loop_b");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  fs::create_directories(dir / "folder" / "last.ckpt");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model run --weights " + loop + " --variant full --heads 2 --input " + loop + " --output o.npy", loop},
      {"train --task listops --data-dir " + loop + " --preset smoke", loop},
      {"train --task enwik8 --data-dir " + loop + " --preset smoke", loop},
      {"data stats text " + loop, loop},
      {"sweep --variants full --n 64 --out " + loop + " --resume", loop},
      {"model sample --checkpoint " + fifo, fifo},  // would block forever if read
      {"model sample --checkpoint " + folder, folder},
      {"attention run --variant full --heads 2 --weights " + folder + " --input " + fifo + " --output o.npy", fifo},
      {"train --task listops --data-dir " + loop + " --preset smoke --init-weights " + loop, loop},
      {"train --task corpus --data-dir " + fifo + " --preset smoke", fifo},
  };
  for (const auto& [args, path] : cases) {
    INFO(args);
    const auto r = run_cli(args);
    CHECK(r.code == kBadInput);
    CHECK_THAT(r.output, Catch::Contains(path) && !Catch::Contains("internal error"));
  }
}

TEST_CASE("a model whose parameters cannot fit is refused before any data is read", "[cli][hardening]") {
  // Before, --layers 100000000 allocated block after block until the system stopped the run.
  const auto machine = run_cli("train --task listops --preset smoke --layers 100000000 --data-dir /nonexistent-lsbench");
  INFO(machine.output);
  CHECK(machine.code == 4);
  CHECK_THAT(machine.output, Catch::Contains("--layers 100000000") && Catch::Contains("machine's memory"));
  const auto budget = run_cli("train --task listops --preset smoke --layers 1000 --dim 512 --memory-budget 1GiB "
                              "--data-dir /nonexistent-lsbench");
  INFO(budget.output);
  CHECK(budget.code == 4);
  CHECK_THAT(budget.output, Catch::Contains("--layers 1000 --dim 512") && Catch::Contains("--memory-budget 1GiB"));
  // One that fits goes on to the data, whose absence is then the error.
  const auto fits = run_cli("train --task listops --preset smoke --layers 2 --data-dir /nonexistent-lsbench");
  CHECK(fits.code == 3);
}

TEST_CASE("a resumed command continues only a report of its own kind", "[cli][hardening]") {
  const auto dir = fresh_dir("resume_kinds");
  const std::string out = (dir / "maxlen.json").string();
  REQUIRE(run_cli(fmt::format("maxlen --variant full --memory-budget 1MiB --granule 64 --out {}", out)).code == 0);
  const std::string before = read_file(out);
  for (const std::string& cmd :
       {fmt::format("sweep --variants full --n 64 --batch 1 --dim 16 --heads 2 --mode attn-fwd --out {} --resume", out),
        fmt::format("lra --preset smoke --tasks listops --data-dir {} --out {} --resume --no-efficiency",
                    (dir / "data").string(), out)}) {
    INFO(cmd);
    const auto r = run_cli(cmd);
    CHECK(r.code == kBadInput);
    CHECK_THAT(r.output, Catch::Contains(out) && Catch::Contains("'maxlen'"));
  }
  CHECK(read_file(out) == before);  // untouched
}

namespace {

struct InProcess {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// The command line run in this process (cli_main) with one environment variable set to 1 for the call,
// its stdout and stderr captured: hundreds of cases in the time of a few process starts.
InProcess cli_in_process(std::vector<std::string> args, const char* env) {
  args.insert(args.begin(), "lsbench");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::setenv(env, "1", 1);
  std::cout.flush(), std::cerr.flush(), std::fflush(nullptr);
  FILE* tmp = std::tmpfile();
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  ::dup2(::fileno(tmp), 1), ::dup2(::fileno(tmp), 2);
  InProcess r;
  r.code = cli_main(static_cast<int>(args.size()), argv.data());
  std::cout.flush(), std::cerr.flush(), std::fflush(nullptr);
  ::dup2(saved_out, 1), ::dup2(saved_err, 2);
  ::close(saved_out), ::close(saved_err);
  ::unsetenv(env);
  std::rewind(tmp);
  for (int c; (c = std::fgetc(tmp)) != EOF;) r.output += static_cast<char>(c);
  std::fclose(tmp);
  return r;
}

}  // namespace

TEST_CASE("every option of every command refuses blank and malformed values and names itself", "[cli][hardening]") {
  struct Opt {
    std::string name, type;
    bool required, positional, takes_value;
  };
  std::map<std::string, std::vector<Opt>> commands;  // from the CLI's own registry: a new option is walked too
  std::istringstream listing(cli_in_process({}, "LSBENCH_LIST_OPTIONS").output);
  for (std::string line; std::getline(listing, line);) {
    std::vector<std::string> f;
    std::istringstream cols(line);
    for (std::string c; std::getline(cols, c, '\t');) f.push_back(c);
    REQUIRE(f.size() == 5);
    commands[f[0]].push_back({f[1], f[2], f[3] == "required", f[4] == "positional", f[4] != "flag"});
  }
  REQUIRE(commands.size() >= 18);
  // A valid value for every required option (a new required option needs one here).
  const std::map<std::string, std::string> valid = {
      {"--variant", "full"},   {"--n", "64"},          {"--heads", "2"},          {"--weights", "w"},
      {"--input", "x.npy"},    {"--output", "y.npy"},  {"--out", "o.json"},       {"--count", "1"},
      {"--from-imdb", "imdb"}, {"--task", "listops"},  {"--data-dir", "d"},       {"--memory-budget", "1GiB"},
      {"dir", "d"},            {"task", "listops"},    {"reports", "r.json"},     {"base", "a.json"},
      {"new", "b.json"}};
  const std::vector<std::string> blank = {"", " ", "\t"};
  const std::vector<std::string> not_a_number = {"nan", "inf", "-inf", "0x10", "010", "1e999", "abc", "1,", ",", "\xef\xbc\x91"};
  const std::vector<std::string> not_an_integer = {"1.5", "99999999999999999999999", "1e3"};
  int cases = 0;
  for (const auto& [command, opts] : commands) {
    std::vector<std::string> words;
    std::istringstream ws(command);
    for (std::string w; ws >> w;) words.push_back(w);
    // The command with its required options, leaving one out.
    auto base = [&](const std::string& without) {
      std::vector<std::string> args = words;
      for (const Opt& o : opts) {
        if (!o.required || o.name == without) continue;
        INFO(command << ": no valid value for the required " << o.name << " in this test's table");
        REQUIRE(valid.count(o.name) == 1);
        if (!o.positional) args.push_back(o.name);
        args.push_back(valid.at(o.name));
      }
      return args;
    };
    {
      INFO(command);
      const InProcess ok = cli_in_process(base(""), "LSBENCH_PARSE_ONLY");
      INFO(ok.output);
      CHECK(ok.code == 0);
    }
    for (const Opt& o : opts) {
      if (!o.takes_value || o.positional) continue;
      const std::string kind = o.type.substr(0, o.type.find(':'));
      std::vector<std::string> values = blank;
      if (kind == "INT" || kind == "UINT" || kind == "FLOAT") values.insert(values.end(), not_a_number.begin(), not_a_number.end());
      if (kind == "INT" || kind == "UINT") values.insert(values.end(), not_an_integer.begin(), not_an_integer.end());
      for (const std::string& v : values) {
        std::vector<std::string> args = base(o.name);
        args.push_back(o.name);
        args.push_back(v);
        const InProcess r = cli_in_process(args, "LSBENCH_PARSE_ONLY");
        INFO(command << " " << o.name << " '" << v << "' (" << o.type << "): exit " << r.code << ": " << r.output);
        CHECK(r.code == kUsage);
        CHECK_THAT(r.output, Catch::Contains(o.name));
        ++cases;
      }
    }
  }
  CHECK(cases > 500);
}
