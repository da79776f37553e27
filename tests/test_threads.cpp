// Results do not depend on the threads OpenMP really grants (nn/threads.hpp): with the environment's
// OMP_THREAD_LIMIT=1 or OMP_DYNAMIC=true a run that asks for --threads 2 computes what the normal run
// does (bit for bit where it gets the same threads, within rounding where it gets fewer), says so in a
// warning and in its report, and never leaves part of a product undone.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attention_impls/registry.hpp"
#include "nn/npy.hpp"
#include "nn/threads.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/data_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using namespace lsb::test;
namespace fs = std::filesystem;

namespace {

constexpr const char* kThreadLimit = "OMP_THREAD_LIMIT=1";
constexpr const char* kDynamic = "OMP_DYNAMIC=true";

bool two_cpus() {
  if (usable_cpus() >= 2) return true;
  WARN("skipped: this process may use one CPU, so --threads 2 is refused");
  return false;
}

std::vector<float> load(const fs::path& p) {
  return load_npy_f32(p.string(), read_npy(p.string()).shape, p.filename().string());
}

// Every file of `dir` (outputs, gradients) against the same file of `ref`: equal bit for bit, or
// within `tol` relative to the largest value (the lost work made differences as large as that).
void compare_dirs(const fs::path& dir, const fs::path& ref, bool bitwise, double tol = 1e-5) {
  int files = 0;
  for (const auto& e : fs::directory_iterator(ref)) {
    INFO(e.path().filename().string());
    const auto want = load(e.path()), got = load(dir / e.path().filename());
    REQUIRE(got.size() == want.size());
    if (bitwise)
      CHECK(got == want);
    else
      CHECK(max_rel_diff(got, want, 1e-3) < tol);
    ++files;
  }
  CHECK(files > 1);
}

}  // namespace

TEST_CASE("attention run gives the normal run's outputs and gradients under any thread grant", "[cli][threads]") {
  if (!two_cpus()) return;
  const auto dir = fresh_dir("threads_attention");
  const std::int64_t b = 2, n = 64, D = 32, h = 2;
  const Problem pr = make_problem(b, n, D, h, 5, 3);
  write_npy_f32((dir / "x.npy").string(), {b, n, D}, pr.x.data());
  std::vector<float> mask_f(pr.mask.begin(), pr.mask.end()), dy(b * n * D);
  write_npy_f32((dir / "mask.npy").string(), {b, n}, mask_f.data());
  Rng rng(7);
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  write_npy_f32((dir / "dy.npy").string(), {b, n, D}, dy.data());

  for (const std::string spec : {"full", "flash", "linformer:k=16", "sliding:R=8", "ls:w=8,r=4", "lsra",
                                 "performer:features=16", "nystromformer:m=8"}) {
    INFO(spec);
    const fs::path w = dir / ("w-" + spec);
    auto a = make_attention(VariantSpec::parse(spec), D, h, n);
    randomize(*a, 11);
    fs::create_directories(w);
    for (auto& p : a->params()) write_npy_f32((w / (p.name + ".npy")).string(), p.value.shape(), p.value.data());
    auto run = [&](const std::string& env, const std::string& name) {
      const fs::path out = dir / (spec + "-" + name);
      fs::create_directories(out);
      const auto r = run_cli(fmt::format("attention run --variant {} --heads {} --threads 2 --weights {} --input {} "
                                         "--mask {} --grad-output {} --output {} --grads {}",
                                         spec, h, w.string(), (dir / "x.npy").string(), (dir / "mask.npy").string(),
                                         (dir / "dy.npy").string(), (out / "y.npy").string(), out.string()),
                             env);
      INFO(r.output);
      REQUIRE(r.code == 0);
      return std::pair{out, r.output};
    };
    const auto [normal, normal_output] = run("", "normal");
    CHECK_THAT(normal_output, !Catch::Contains("warning"));
    // Dynamic adjustment is switched off: the same two threads, the same bits.
    compare_dirs(run(kDynamic, "dynamic").first, normal, true);
    // One thread granted: the same results up to the order of sums, and a warning that says why.
    const auto [limited, limited_output] = run(kThreadLimit, "limited");
    CHECK_THAT(limited_output, Catch::Contains("2 threads asked for, 1 used") && Catch::Contains("OMP_THREAD_LIMIT"));
    compare_dirs(limited, normal, false);
  }
}

TEST_CASE("model run and attention bench agree with the normal run under a thread limit", "[cli][threads]") {
  if (!two_cpus()) return;
  const auto dir = fresh_dir("threads_model");
  const fs::path golden = fs::path(LSBENCH_GOLDEN_DIR) / "interop" / "ls";
  auto model = [&](const std::string& env, const std::string& name) {
    const fs::path out = dir / name;
    fs::create_directories(out);
    const auto r = run_cli(fmt::format("model run --weights {} --variant ls:w=4,r=3 --heads 2 --input {} --mask {} "
                                       "--labels {} --pooling mean-all --threads 2 --output {}",
                                       (golden / "weights").string(), (golden / "ids.npy").string(),
                                       (golden / "mask.npy").string(), (golden / "labels.npy").string(),
                                       (out / "logits.npy").string()),
                           env);
    INFO(r.output);
    REQUIRE(r.code == 0);
    return out;
  };
  const fs::path normal = model("", "normal");
  const auto want = load(normal / "logits.npy");
  CHECK(load(model(kDynamic, "dynamic") / "logits.npy") == want);
  CHECK(max_rel_diff(load(model(kThreadLimit, "limited") / "logits.npy"), want, 1e-3) < 1e-5);

  // attention bench checks every variant against float64 before timing; the report records both counts.
  const std::string out = (dir / "bench.json").string();
  const auto r = run_cli("attention bench --variant full flash ls:w=8,r=4 --n 64 128 --batch 2 --dim 32 --heads 2 "
                         "--warmup 1 --min-reps 2 --min-time 0 --threads 2 --json " + out,
                         kThreadLimit);
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto rep = nlohmann::json::parse(std::ifstream(out));
  CHECK(rep["context"]["cpu"]["threads_used"] == 1);
  CHECK(rep["context"]["cpu"]["threads_requested"] == 2);
  CHECK_THAT(rep["context"]["cpu"]["threads_warning"].get<std::string>(), Catch::Contains("OMP_THREAD_LIMIT"));
  for (const auto& res : rep["results"]) CHECK(res["status"] == "ok");
}

TEST_CASE("a training run's losses do not depend on the threads granted", "[cli][threads][train]") {
  if (!two_cpus()) return;
  const auto dir = fresh_dir("threads_train");
  auto train = [&](const std::string& env, const std::string& name) {
    const std::string out = (dir / (name + ".json")).string();
    const auto r = run_cli(fmt::format("train --task listops --data-dir {} --preset smoke --variant ls:w=8,r=32 "
                                       "--steps 6 --batch 8 --eval-every 3 --log-every 1 --max-val 32 --max-test 32 "
                                       "--threads 2 --no-progress --out {}",
                                       smoke_listops_dir(), out),
                           env);
    INFO(r.output);
    REQUIRE(r.code == 0);
    return nlohmann::json::parse(std::ifstream(out))["results"][0];
  };
  const auto normal = train("", "normal");
  const auto dynamic = train(kDynamic, "dynamic");
  CHECK(dynamic["curves"]["loss"] == normal["curves"]["loss"]);
  CHECK(dynamic["accuracy"] == normal["accuracy"]);
  const auto limited = train(kThreadLimit, "limited");
  const auto& want = normal["curves"]["loss"];
  const auto& got = limited["curves"]["loss"];
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("loss point " << i);
    CHECK(got[i].get<double>() == Approx(want[i].get<double>()).epsilon(1e-4));
  }
}

TEST_CASE("OMP_NUM_THREADS beyond the usable CPUs is capped and said", "[cli][threads]") {
  const auto r = run_cli("info", "OMP_NUM_THREADS=10000");
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains(fmt::format("OpenMP threads {} ", usable_cpus())));
  CHECK_THAT(r.output, Catch::Contains(fmt::format("10000 threads asked for, {} used", usable_cpus())));
}
