#include "bench/data_cli.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "tasks/listops.hpp"
#include "tasks/pathfinder.hpp"
#include "tasks/png.hpp"
#include "tasks/retrieval.hpp"

namespace lsb {

struct DataCli::Impl {
  CLI::App *data = nullptr, *generate = nullptr;
  CLI::App *listops = nullptr, *pathfinder = nullptr, *retrieval = nullptr, *preview = nullptr, *stats = nullptr;
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
      ->check(CLI::Range(0, std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)))));

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

  auto* stats = d.data->add_subcommand("stats", "Per-image statistics of generated data");
  stats->require_subcommand(1);
  d.stats = stats->add_subcommand("pathfinder", "Quantiles over images of the mean grey level and the shares of "
                                                "pixels above 0, 64 and 128, beside the published generator's medians");
  d.stats->add_option("dir", d.preview_dir, "The data (any folder find_root accepts)")->required();
  d.stats->add_option("--size", d.size, "32 or 128")->capture_default_str();
  d.stats->add_option("--difficulty", d.difficulty, "baseline, 9 or 14")->capture_default_str();
  d.stats->add_option("--count", d.stats_count, "The first N images (0: all)")->capture_default_str();
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
    if (d.threads > 0) omp_set_num_threads(d.threads);
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
    const std::string root = pathfinder::find_root(d.preview_dir, d.size, d.difficulty);
    const auto st = pathfinder::image_statistics(root, d.size, d.stats_count);
    // The published generator's medians (1,000 images of Pathfinder-32, contour length 14), from the
    // issue that asked for this rendering; none were measured for Path-X.
    const bool published = d.size == 32 && pathfinder::difficulty_folder(d.difficulty) == "curv_contour_length_14";
    fmt::print("{}: {} images\n\n| per-image statistic | p10 | p25 | median | p75 | p90 |{}\n|---|---:|---:|---:|---:|---:|{}\n",
               root, st.images, published ? " published median |" : "", published ? "---:|" : "");
    const std::pair<const char*, std::pair<const pathfinder::ImageStatistics::Quantiles*, double>> rows[] = {
        {"mean intensity (0..255)", {&st.mean, 19.9}}, {"share of non-zero pixels", {&st.nonzero, 0.339}},
        {"share of pixels > 64", {&st.above64, 0.123}}, {"share of pixels > 128", {&st.above128, 0.083}}};
    for (const auto& [name, qr] : rows) {
      const auto& q = *qr.first;
      const int digits = qr.second > 1 ? 1 : 3;
      fmt::print("| {} | {:.{}f} | {:.{}f} | {:.{}f} | {:.{}f} | {:.{}f} |{}\n", name, q.p10, digits, q.p25, digits, q.p50,
                 digits, q.p75, digits, q.p90, digits, published ? fmt::format(" {:.{}f} |", qr.second, digits) : "");
    }
  }
  return kOk;
}

}  // namespace lsb
