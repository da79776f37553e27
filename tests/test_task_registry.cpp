// The task registry (tasks/registry.hpp): every built-in record is whole, and a task registered from
// outside (a test-only one) is picked up by train, lra, sweep, data stats and the report's tables, as
// tests/test_variant_registry.cpp does for variants.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "bench/data_cli.hpp"
#include "bench/lra.hpp"
#include "bench/sweep.hpp"
#include "bench/train.hpp"
#include "nn/errors.hpp"
#include "nn/random.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"
#include "tasks/registry.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

// "majority": is token 2 more frequent than token 3 in a sequence of 2s and 3s (lengths 8..24; vocab
// 4: pad, an unused id, 2, 3). Its data is one file, majority.tsv ("label<TAB>tokens..."), which the
// record's preparation generates.
constexpr const char* kFile = "majority.tsv";
int stats_printed = 0;

Split read_split(const fs::path& file, const std::string& name, std::int64_t length) {
  std::ifstream f(file);
  if (!f) throw InputError(fmt::format("{}: missing", file.string()));
  Split s{name, file.string(), {}, {}, {}};
  int label;
  std::string line;
  while (f >> label && std::getline(f, line)) {
    std::vector<std::int32_t> tokens;
    std::istringstream in(line);
    for (std::int32_t t; in >> t && static_cast<std::int64_t>(tokens.size()) < length;) tokens.push_back(t);
    s.tokens.push_back(std::move(tokens));
    s.labels.push_back(label);
  }
  return s;
}

TaskData load_majority(const TaskOptions& opt, std::int64_t length) {
  TaskData t;
  t.train = read_split(fs::path(opt.data_dir) / kFile, "train", length);
  t.test = hold_out(t.train, 0.2, opt.split_seed, "test");
  t.val = hold_out(t.train, 0.2, opt.split_seed + 1, "val");
  t.provenance = {{"source", "test-only majority task"}, {"path", opt.data_dir}, {"generated", true}};
  return t;
}

Prepared prepare_majority(const PrepareContext& ctx) {
  const fs::path dir = fs::path(ctx.data_dir) / "majority";
  fs::create_directories(dir);
  std::ofstream f(dir / kFile);
  Rng rng(3);
  for (int i = 0; i < 600; ++i) {
    const int len = (8 + static_cast<int>(rng.below(17))) | 1;  // odd: no ties
    int twos = 0;
    std::string tokens;
    for (int k = 0; k < len; ++k) {
      const int t = 2 + static_cast<int>(rng.below(2));
      twos += t == 2;
      tokens += fmt::format(" {}", t);
    }
    f << (2 * twos > len ? 1 : 0) << "\t" << tokens << "\n";
  }
  return {dir.string(), ""};
}

TaskInfo majority_record() {
  TaskInfo t;
  t.name = "majority";
  t.summary = "test only: is 2 more frequent than 3";
  t.vocab = 4, t.classes = 2, t.default_length = 32;
  t.load = load_majority;
  t.prepare = prepare_majority;
  t.print_stats = [](const TaskOptions&, std::int64_t) { ++stats_printed; };
  t.presets["smoke"] = {.batch = 16, .steps = 40, .warmup = 4, .eval_every = 20, .lr = 3e-3};
  t.published = {{"full", "a test source", "Test Transformer", 61.25}};
  return t;
}

struct ScopedTask {
  std::string name;
  explicit ScopedTask(TaskInfo t) : name(t.name) { register_task(std::move(t)); }
  ~ScopedTask() { unregister_task(name); }
};

}  // namespace

TEST_CASE("every built-in task's record is whole", "[registry][tasks]") {
  std::set<std::string> names;
  int efficiency = 0;
  for (const auto& t : tasks()) {
    INFO(t.name);
    CHECK(names.insert(t.name).second);
    CHECK_FALSE(t.summary.empty());
    CHECK(t.prepare != nullptr);
    CHECK(t.vocab > 1);
    CHECK((t.language_model() ? t.classes == 0 : t.classes > 1));
    CHECK((t.language_model() ? t.metric == "bpc" : t.metric != "bpc"));
    CHECK_FALSE(t.presets.empty());
    for (const auto& [preset, r] : t.presets) {
      INFO(preset);
      CHECK(std::find(train_preset_names().begin(), train_preset_names().end(), preset) != train_preset_names().end());
      CHECK(&t.recipe(preset) == &r);
      CHECK(r.batch > 0);
      CHECK(r.steps > 0);
      CHECK(r.lr > 0);
      if (!t.language_model()) CHECK(r.length <= t.default_length);  // a language model's windows are free
    }
    for (const auto& p : t.published) CHECK(find_variant(p.variant) != nullptr);
    efficiency += t.lra_efficiency;
    if (t.lra_average) CHECK(t.lra_suite);
  }
  CHECK(efficiency == 1);
  CHECK(names == std::set<std::string>{"listops", "text", "retrieval", "image", "pathfinder", "pathx", "enwik8", "text8",
                                       "corpus"});
  CHECK_THROWS_WITH(task_info("listops").recipe("lm-small"), Catch::Contains("lra-small"));
  CHECK_THROWS_WITH(task_info("text8").recipe("lra-small"), Catch::Contains("lm-small"));
  CHECK(task_info("retrieval").pairs());
  CHECK_THROWS_AS(task_info("chess"), UsageError);
  CHECK_THROWS_WITH(task_info("chess", "--tasks"), Catch::Contains("--tasks chess") && Catch::Contains("listops"));
  CHECK_THROWS_AS(task_info("listops").recipe("huge"), UsageError);
  // Taken names, incomplete records and built-in tasks are refused.
  TaskInfo taken = majority_record();
  taken.name = "listops";
  CHECK_THROWS_AS(register_task(taken), std::logic_error);
  TaskInfo no_loader = majority_record();
  no_loader.load = nullptr;
  CHECK_THROWS_AS(register_task(no_loader), std::logic_error);
  CHECK_THROWS_AS(unregister_task("listops"), std::logic_error);
}

TEST_CASE("a task registered from outside runs through train, lra, sweep, data stats and the report",
          "[registry][tasks][train][sweep]") {
  ScopedTask scoped(majority_record());
  const auto dir = test::fresh_dir("task_registry");

  // lra: prepares the data (the record's preparation), trains, and the summary's accuracy table has
  // the task's column and its published row.
  LraOptions l;
  l.tasks = {"majority"}, l.variants = VariantSpec::parse_all({"full"}), l.data_dir = (dir / "data").string();
  l.out = (dir / "lra.json").string(), l.efficiency = false, l.progress = false;
  REQUIRE(run_lra(l) == 0);
  const auto lra = read_report(l.out);
  REQUIRE(lra["results"].size() == 1);
  const auto& run = lra["results"][0];
  CHECK(run["config"]["task"] == "majority");
  CHECK(run["status"] == "ok");
  CHECK(run["data"]["source"] == "test-only majority task");
  // Chance is about 50%; the model counts tokens easily.
  CHECK(run["accuracy"]["test_at_best_val"].get<double>() > 0.7);
  const std::string md = render_markdown(lra);
  CHECK_THAT(md, Catch::Contains("| majority"));
  CHECK_THAT(md, Catch::Contains("Test Transformer (a test source)"));
  CHECK_THAT(md, Catch::Contains("61.25"));
  // The suite's columns are there too (their published rows), and the test task is not averaged.
  CHECK_THAT(md, Catch::Contains("pathfinder"));
  CHECK_THAT(md, Catch::Contains("average of 5"));

  // train: the preset's recipe comes from the record.
  TrainOptions o;
  o.task = "majority", o.data_dir = (dir / "data" / "majority").string(), o.preset = "smoke", o.progress = false;
  o.variant = VariantSpec::parse("ls:w=4,r=2");
  apply_train_preset(o);
  CHECK(o.batch == 16);
  CHECK(o.steps == 40);
  CHECK(o.lr == 3e-3);
  o.out = (dir / "train.json").string();
  REQUIRE(run_train_command(o) == 0);
  const auto train = read_report(o.out)["results"][0];
  CHECK(train["config"]["task"] == "majority");
  CHECK(train["status"] == "ok");
  o.preset = "lra-small";  // the record has no such recipe
  CHECK_THROWS_WITH(apply_train_preset(o), Catch::Contains("majority") && Catch::Contains("smoke"));

  // sweep: a training step of the model with the task's vocabulary and classes.
  SweepOptions s;
  s.variants = VariantSpec::parse_all({"full"}), s.lengths = {32}, s.batches = {2}, s.dims = {16}, s.heads = {2};
  s.layers = {1}, s.modes = {"train-step"}, s.task = "majority", s.progress = false;
  s.timing.warmup = 0, s.timing.min_reps = 1, s.timing.min_time_s = 0;
  s.out = (dir / "sweep.json").string();
  REQUIRE(run_sweep(s) == 0);
  const auto point = read_report(s.out)["results"][0];
  CHECK(point["config"]["task"] == "majority");
  CHECK(point["status"] == "ok");

  // data stats: the common statistics, then the record's own.
  stats_printed = 0;
  print_task_stats(task_info("majority"), {.data_dir = o.data_dir}, 0);
  CHECK(stats_printed == 1);
}

TEST_CASE("the accuracy table takes its columns and published rows from the task records", "[report][tasks]") {
  // A report with one ListOps run: every suite task is a column, the published rows fill theirs, Path-X
  // shows FAIL for LRA's Table 1 and nothing for a source that gives no Path-X number.
  nlohmann::json r = {{"id", "x"}, {"kind", "train-run"}, {"status", "ok"},
                      {"config", {{"task", "listops"}, {"variant", "full"}, {"variant_params", nlohmann::json::object()},
                                  {"mode", "train"}, {"device", "cpu"}, {"precision", "fp32"}}},
                      {"accuracy", {{"test_at_best_val", 0.3712}}}};
  const std::string md = render_markdown(make_report(nlohmann::json::object({{"tool_version", "t"}}), {r}));
  CHECK_THAT(md, Catch::Contains("| model | listops | text | retrieval | image | pathfinder | pathx | average of 5 |"));
  CHECK_THAT(md, Catch::Contains("| Transformer (LRA paper, Table 1) | 36.37 | 64.27 | 57.46 | 42.44 | 71.40 | FAIL | 54.39 |"));
  CHECK_THAT(md, Catch::Contains("| softmax attention (Nystromformer paper, PyTorch small recipe) | 37.10 | 65.02 | 79.35 | 38.20 | 74.16 | | 58.77 |"));
  CHECK_THAT(md, Catch::Contains("| lsbench full | 37.12 |"));
}

TEST_CASE("a training split without every class is refused, naming the file and the missing classes", "[tasks]") {
  ScopedTask scoped(majority_record());
  const auto dir = test::fresh_dir("task_one_class");
  std::ofstream(dir / kFile) << [] {
    std::string lines;
    for (int i = 0; i < 40; ++i) lines += "1\t2 2 2 3\n";  // every example says "more 2s": class 0 is absent
    return lines;
  }();
  CHECK_THROWS_WITH(load_task("majority", {.data_dir = dir.string()}),
                    Catch::Contains(kFile) && Catch::Contains("has no example of class 0"));
}
