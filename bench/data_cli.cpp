#include "bench/data_cli.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/threads.hpp"
#include "tasks/listops.hpp"
#include "tasks/lm.hpp"
#include "tasks/pathfinder.hpp"
#include "tasks/png.hpp"
#include "tasks/registry.hpp"
#include "tasks/retrieval.hpp"

namespace lsb {

namespace {

// p10, median, p90 and the maximum of `v` (sorted in place).
std::string quantiles_text(std::vector<std::int64_t>& v) {
  if (v.empty()) return "| | | |";
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))]; };
  return fmt::format("{} | {} | {} | {} |", at(0.1), at(0.5), at(0.9), v.back());
}

}  // namespace

// A language model's streams: tokens, distinct symbols, the commonest ones, and the unigram entropy (the
// BPC of a model that sees no context: what a trained model's BPC must beat).
static void print_language_model_stats(const TaskInfo& task, const TaskData& data) {
  fmt::print("{} (language model, vocabulary {}): {} in {}\n\n", task.name, task.vocab,
             data.provenance.value("source", "?"), data.provenance.value("path", "?"));
  fmt::print("| split | file | offset | tokens | symbols | commonest | unigram entropy (bits) |\n"
             "|---|---|---:|---:|---:|---|---:|\n");
  for (const TokenStream* s : {&data.train_stream, &data.val_stream, &data.test_stream}) {
    std::vector<std::int64_t> count(256, 0);
    for (const auto t : s->tokens) ++count[t];
    std::vector<int> order(256);
    for (int v = 0; v < 256; ++v) order[static_cast<std::size_t>(v)] = v;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return count[a] > count[b]; });
    std::vector<std::string> top;
    for (std::size_t k = 0; k < 5 && count[order[k]] > 0; ++k) {
      const unsigned char c = task.byte_of_token(order[k]);
      top.push_back(c >= 33 && c < 127 && c != '|' ? fmt::format("`{}`", static_cast<char>(c)) : fmt::format("0x{:02x}", c));
    }
    fmt::print("| {} | {} | {} | {} | {} | {} | {:.4f} |\n", s->name, s->path, s->offset, s->size(),
               std::count_if(count.begin(), count.end(), [](std::int64_t c) { return c > 0; }), fmt::join(top, " "),
               lm::unigram_entropy_bits(s->tokens, static_cast<int>(task.vocab)));
  }
}

void print_task_stats(const TaskInfo& task, const TaskOptions& opt, std::int64_t max_items) {
  const TaskData data = load_task(task.name, opt);
  if (task.language_model()) return print_language_model_stats(task, data);
  fmt::print("{} ({}, {} classes, vocabulary {}, length {}): {} in {}\n\n", task.name, task_kind_name(task.kind),
             task.classes, task.vocab, data.length, data.provenance.value("source", "?"),
             data.provenance.value("path", opt.data_dir));
  fmt::print("| split | examples | tokens p10 | median | p90 | max | label shares (0, 1, ...) |\n"
             "|---|---:|---:|---:|---:|---:|---|\n");
  for (const Split* s : {&data.train, &data.val, &data.test}) {
    std::vector<std::int64_t> lengths;
    for (const auto& t : s->tokens) lengths.push_back(static_cast<std::int64_t>(t.size()));
    for (const auto& t : s->tokens2) lengths.push_back(static_cast<std::int64_t>(t.size()));
    std::vector<std::int64_t> count(static_cast<std::size_t>(task.classes), 0);
    for (const int l : s->labels) ++count[static_cast<std::size_t>(l)];
    std::vector<std::string> shares;
    for (const auto c : count) shares.push_back(fmt::format("{:.3f}", static_cast<double>(c) / std::max<std::int64_t>(s->size(), 1)));
    fmt::print("| {} | {} | {} {} |\n", s->name, s->size(), quantiles_text(lengths), fmt::join(shares, ", "));
  }
  if (task.pairs()) fmt::print("\n(token counts are per document: two per example)\n");
  if (task.print_stats) task.print_stats(opt, max_items);
}

struct DataCli::Impl {
  CLI::App *data = nullptr, *generate = nullptr;
  CLI::App *listops = nullptr, *pathfinder = nullptr, *retrieval = nullptr, *preview = nullptr, *stats = nullptr,
           *prepare = nullptr;
  std::string out;
  listops::GeneratorConfig lcfg;
  int size = 32;
  std::string difficulty = "14";
  std::int64_t count = 0;
  std::uint64_t seed = 0;
  retrieval::PairConfig rcfg;
  std::string imdb_dir, preview_dir, preview_out;
  int preview_count = 16;
  std::int64_t stats_count = 1000;
  int threads = 0;
  std::string task;  // stats, prepare
  TaskOptions task_options;
  std::string archives;
  bool small = false;
};

DataCli::DataCli(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.data = app.add_subcommand("data", "Task data: generate the tasks that cannot be downloaded here, preview them");
  d.data->require_subcommand(1);
  d.generate = d.data->add_subcommand("generate", "Write a generated task in its official file layout");
  auto* generate = d.generate;
  generate->require_subcommand(0, 1);
  generate->allow_extras();  // an unknown task name is answered by run(), naming it and the valid ones

  d.listops = generate->add_subcommand("listops", "ListOps: basic_{train,val,test}.tsv");
  d.listops->add_option("--out", d.out, "Output directory")->required();
  d.listops->add_option("--seed", d.lcfg.seed, "Generator seed")->capture_default_str();
  d.listops->add_option("--train", d.lcfg.train, "Training examples")->capture_default_str()->check(CLI::PositiveNumber);
  d.listops->add_option("--val", d.lcfg.val, "Validation examples")->capture_default_str()->check(CLI::PositiveNumber);
  d.listops->add_option("--test", d.lcfg.test, "Test examples")->capture_default_str()->check(CLI::PositiveNumber);
  d.listops->add_option("--min-length", d.lcfg.min_length, "Keep trees longer than this (tokens)")->capture_default_str();
  d.listops->add_option("--max-length", d.lcfg.max_length, "Keep trees shorter than this (tokens)")->capture_default_str();

  d.pathfinder = generate->add_subcommand(
      "pathfinder", "Pathfinder (--size 32) or Path-X (--size 128): pathfinder<S>/<difficulty>/{imgs,metadata}");
  d.pathfinder->add_option("--out", d.out, "Output directory (pathfinder<S>/ is made inside)")->required();
  d.pathfinder->add_option("--size", d.size, "32 (Pathfinder) or 128 (Path-X)")->capture_default_str();
  d.pathfinder->add_option("--difficulty", d.difficulty, "baseline, 9 or 14 (LRA's hard)")->capture_default_str();
  d.pathfinder->add_option("--count", d.count, "Images")->required()->check(CLI::PositiveNumber);
  d.pathfinder->add_option("--seed", d.seed, "Generator seed")->capture_default_str();
  d.pathfinder->add_option("--threads", d.threads, "CPU threads (0: OpenMP's default); the files do not depend on it")
      ->capture_default_str()
      ->check(CLI::Range(0, usable_cpus()));

  d.retrieval = generate->add_subcommand(
      "retrieval-pairs", "The Retrieval stand-in from IMDb: new_aan_pairs.{train,eval,test}.tsv (same title = 1)");
  d.retrieval->add_option("--from-imdb", d.imdb_dir, "The aclImdb directory (or one containing it)")->required();
  d.retrieval->add_option("--out", d.out, "Output directory")->required();
  d.retrieval->add_option("--seed", d.rcfg.seed, "Generator seed")->capture_default_str();
  d.retrieval->add_option("--train", d.rcfg.train, "Training pairs")->capture_default_str()->check(CLI::PositiveNumber);
  d.retrieval->add_option("--eval", d.rcfg.eval, "Validation pairs")->capture_default_str()->check(CLI::PositiveNumber);
  d.retrieval->add_option("--test", d.rcfg.test, "Test pairs")->capture_default_str()->check(CLI::PositiveNumber);

  auto* preview = d.data->add_subcommand("preview", "Look at generated data");
  preview->require_subcommand(1);
  d.preview = preview->add_subcommand("pathfinder", "A PNG grid of samples framed by label (green 1, red 0)");
  d.preview->add_option("dir", d.preview_dir, "The data (any folder find_root accepts)")->required();
  d.preview->add_option("-o,--out", d.preview_out, "The grid PNG")->required();
  d.preview->add_option("--size", d.size, "32 or 128")->capture_default_str();
  d.preview->add_option("--difficulty", d.difficulty, "baseline, 9 or 14")->capture_default_str();
  d.preview->add_option("--count", d.preview_count, "Samples in the grid")->capture_default_str()->check(CLI::PositiveNumber);

  d.stats = d.data->add_subcommand("stats", "What a task's data holds: examples per split, tokens per example, label "
                                            "shares (and the task's own statistics: per-image ones for pathfinder, pathx)");
  d.stats->add_option("task", d.task, fmt::format("The task ({})", fmt::join(task_names(), ", ")))->required();
  d.stats->add_option("dir", d.task_options.data_dir, "The task's data (what train's --data-dir takes)")->required();
  d.stats->add_option("--length", d.task_options.length, "Cut examples to this many tokens (0: the task's)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  d.stats->add_option("--difficulty", d.task_options.difficulty, "pathfinder, pathx: baseline, 9 or 14")->capture_default_str();
  d.stats->add_option("--count", d.stats_count, "The task's own statistics over the first N items (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  d.prepare = d.data->add_subcommand("prepare", "Make a task's data as `lra` does: generated, or extracted from the "
                                                "shipped archives, unless it is there already");
  d.prepare->add_option("task", d.task, fmt::format("The task ({})", fmt::join(task_names(), ", ")))->required();
  d.prepare->add_option("--data-dir", d.out, "The suite's data folder (the task's folder is made inside)")->required();
  d.prepare->add_option("--archives", d.archives, "Folder with the shipped archives (e.g. ../shared/data)");
  d.prepare->add_flag("--small", d.small, "The smoke preset's smaller generated splits");
}

DataCli::~DataCli() = default;

bool DataCli::parsed() const { return impl_->data->parsed(); }

int DataCli::run() const {
  const Impl& d = *impl_;
  if (d.generate->parsed() && d.generate->get_subcommands().empty()) {
    const auto extra = d.generate->remaining();
    throw UsageError(fmt::format("data generate {}: unknown task; expected listops, pathfinder or retrieval-pairs",
                                 extra.empty() ? "(none given)" : extra.front()));
  }
  if (d.listops->parsed()) {
    const auto st = listops::generate(d.lcfg, d.out);
    fmt::print("listops: wrote {} train, {} val, {} test expressions to {} (seed {}; {} trees drawn, {} duplicates "
               "dropped, {:.1f} s)\n",
               d.lcfg.train, d.lcfg.val, d.lcfg.test, d.out, d.lcfg.seed, st.drawn, st.duplicates, st.seconds);
  } else if (d.pathfinder->parsed()) {
    const auto p = pathfinder::params_for(d.size, d.difficulty);
    use_threads(d.threads);
    const auto st = pathfinder::generate(p, d.difficulty, d.count, d.seed, d.out);
    fmt::print("pathfinder{}: wrote {} images ({} with label 1) to {} (seed {}; {:.1f} s, {:.0f} images/s)\n", d.size,
               st.count, st.positives, st.dir, d.seed, st.seconds, st.count / std::max(st.seconds, 1e-9));
  } else if (d.retrieval->parsed()) {
    const auto st = retrieval::generate_pairs(d.imdb_dir, d.out, d.rcfg);
    fmt::print("retrieval-pairs: wrote {} train, {} eval, {} test pairs to {} (seed {}; from {}; {:.1f} s)\n",
               d.rcfg.train, d.rcfg.eval, d.rcfg.test, d.out, d.rcfg.seed, st.imdb_root, st.seconds);
  } else if (d.preview->parsed()) {
    const std::string root = pathfinder::find_root(d.preview_dir, d.size, d.difficulty);
    write_png(d.preview_out, pathfinder::preview_grid(root, d.size, d.preview_count));
    fmt::print("preview: {} samples of {} in {}\n", d.preview_count, root, d.preview_out);
  } else if (d.stats->parsed()) {
    print_task_stats(task_info(d.task, "data stats"), d.task_options, d.stats_count);
  } else if (d.prepare->parsed()) {
    const TaskInfo& t = task_info(d.task, "data prepare");
    if (!t.prepare) throw UsageError(fmt::format("data prepare {}: the task has no data preparation", d.task));
    const Prepared p = t.prepare({.data_dir = d.out, .archives = d.archives, .small = d.small});
    if (!p.skip.empty()) throw InputError(p.skip);
    fmt::print("{}: data in {} (train with --task {} --data-dir {})\n", t.name, p.dir, t.name, p.dir);
  }
  return kOk;
}

}  // namespace lsb
