#include "tasks/task.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/random.hpp"
#include "tasks/image.hpp"
#include "tasks/listops.hpp"
#include "tasks/pathfinder.hpp"
#include "tasks/retrieval.hpp"
#include "tasks/text.hpp"

namespace lsb {
namespace fs = std::filesystem;
namespace {

// Keeps a seeded random `count` of the split's examples, in their original order.
void subsample(Split& s, std::int64_t count, std::uint64_t seed) {
  if (count <= 0 || count >= s.size()) return;
  std::vector<std::int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  Rng rng(seed);
  for (std::int64_t i = 0; i < count; ++i)
    std::swap(idx[i], idx[i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(s.size() - i)))]);
  idx.resize(count);
  std::sort(idx.begin(), idx.end());
  Split out{s.name, s.path, {}, {}, {}};
  for (const auto i : idx) out.take(s, i);
  s = std::move(out);
}

// A generator's provenance file (lsbench-generator.json).
nlohmann::json read_generator_file(const fs::path& path) {
  try {
    return nlohmann::json::parse(std::ifstream(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
}

TaskData load_listops(const TaskOptions& opt, std::int64_t length) {
  TaskData t{"listops", listops::kClasses, listops::kVocabSize, length, {}, {}, {}, {}};
  fs::path dir(opt.data_dir);
  const auto file = [&](const char* split) { return (dir / fmt::format("basic_{}.tsv", split)).string(); };
  if (!fs::exists(file("train")))
    throw InputError(fmt::format("{}: missing (the ListOps layout is basic_{{train,val,test}}.tsv; make one with "
                                 "'lsbench data generate listops --out {}')",
                                 file("train"), opt.data_dir));
  t.train = listops::load_split(file("train"), length);
  t.val = listops::load_split(file("val"), length);
  t.test = listops::load_split(file("test"), length);
  t.train.name = "train", t.val.name = "val", t.test.name = "test";
  t.provenance = {{"source", "ListOps TSV (official layout)"},
                  {"path", dir.string()},
                  {"tokenizer", "corrected official: ']' -> X, parentheses dropped, fixed vocabulary of 17"}};
  const fs::path meta = dir / listops::kGeneratorFile;
  t.provenance["generated"] = fs::exists(meta);
  if (fs::exists(meta)) t.provenance["generator"] = read_generator_file(meta);
  return t;
}

TaskData load_text(const TaskOptions& opt, std::int64_t length) {
  if (opt.val_from != "train" && opt.val_from != "test")
    throw UsageError(fmt::format("--val-from {}: expected train or test", opt.val_from));
  text::Data d = text::load_imdb(opt.data_dir, length, opt.split_seed, opt.val_from == "test");
  TaskData t{"text", text::kClasses, text::kVocabSize, length, std::move(d.train), std::move(d.val),
             std::move(d.test), {}};
  t.provenance = {{"source", "aclImdb (IMDb reviews)"},
                  {"path", d.root},
                  {"generated", false},
                  {"tokenizer", "bytes + 1, pad 0"},
                  {"truncated_to", length},
                  {"validation", d.val_from_test ? "the test split (LRA convention)" : "seeded 10% hold-out of train"}};
  return t;
}

TaskData load_image(const TaskOptions& opt, std::int64_t length) {
  if (length != image::kLength)
    throw UsageError(fmt::format("--length {}: the image task has exactly {} pixels per example", length,
                                 image::kLength));
  image::Data d = image::load_cifar10(opt.data_dir, opt.split_seed);
  TaskData t{"image", image::kClasses, image::kVocabSize, length, std::move(d.train), std::move(d.val),
             std::move(d.test), {}};
  t.provenance = {{"source", "CIFAR-10 binary"},
                  {"path", d.root},
                  {"generated", false},
                  {"tokenizer", "grey level round(0.2989 R + 0.5870 G + 0.1140 B), row-major"},
                  {"black_pixels", "real tokens, never padding"},
                  {"validation", "seeded 5,000 of the 50,000 training images"}};
  return t;
}

TaskData load_retrieval(const TaskOptions& opt, std::int64_t length) {
  retrieval::Data d = retrieval::load_aan(opt.data_dir, length);
  TaskData t{"retrieval", retrieval::kClasses, retrieval::kVocabSize, length, std::move(d.train), std::move(d.val),
             std::move(d.test), {}};
  const fs::path meta = fs::path(d.root) / retrieval::kGeneratorFile;
  t.provenance = {{"source", fs::exists(meta) ? "lsbench stand-in from IMDb (AAN file layout)" : "AAN pairs TSV (official layout)"},
                  {"path", d.root},
                  {"generated", fs::exists(meta)},
                  {"tokenizer", fmt::format("bytes + 1, pad 0; each document's first {} bytes", retrieval::kDocumentBytes)},
                  {"truncated_to", length},
                  {"model", "two towers: one encoder, head on [u, v, u*v, u-v]"},
                  {"validation", "the eval file"}};
  if (fs::exists(meta)) t.provenance["generator"] = read_generator_file(meta);
  return t;
}

// Pathfinder (S = 32) and Path-X (S = 128): images read from the official layout, split 80/10/10.
TaskData load_pathfinder(const TaskOptions& opt, std::int64_t length, int size) {
  const std::string name = size == 32 ? "pathfinder" : "pathx";
  if (length != static_cast<std::int64_t>(size) * size)
    throw UsageError(fmt::format("--length {}: the {} task has exactly {} pixels per example", length, name, size * size));
  const std::string root = pathfinder::find_root(opt.data_dir, size, opt.difficulty);
  pathfinder::Loaded d = pathfinder::load(root, size);
  if (d.skipped > 0)
    fmt::print(stderr, "warning: {}: {} images skipped (missing, unreadable or not {}x{}); the first: {}\n", root,
               d.skipped, size, size, d.first_skip);
  TaskData t{name, pathfinder::kClasses, pathfinder::kVocabSize, length, std::move(d.all), {}, {}, {}};
  t.test = hold_out(t.train, 0.1, opt.split_seed, "test");
  t.val = hold_out(t.train, 1.0 / 9.0, opt.split_seed + 7, "val");
  t.train.name = "train";
  const fs::path meta = fs::path(root) / "lsbench-generator.json";
  t.provenance = {{"source", fmt::format("Pathfinder {}x{} PNG + metadata (official layout)", size, size)},
                  {"path", root},
                  {"difficulty", pathfinder::difficulty_folder(opt.difficulty)},
                  {"generated", fs::exists(meta)},
                  {"tokenizer", "grey level 0..255, row-major"},
                  {"skipped_images", d.skipped},
                  {"validation", "seeded 80/10/10 split of all images"}};
  if (fs::exists(meta)) t.provenance["generator"] = read_generator_file(meta);
  return t;
}

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"listops", "text", "retrieval", "image", "pathfinder", "pathx"};
  return names;
}

std::int64_t default_task_length(const std::string& name) {
  if (name == "listops") return 2048;
  if (name == "text" || name == "retrieval") return 4096;
  if (name == "image" || name == "pathfinder") return 1024;
  if (name == "pathx") return 128 * 128;
  throw UsageError(fmt::format("--task {}: unknown task; expected one of {}", name, fmt::join(task_names(), ", ")));
}

TaskData load_task(const std::string& name, const TaskOptions& opt) {
  const std::int64_t length = opt.length > 0 ? opt.length : default_task_length(name);
  if (opt.data_dir.empty()) throw UsageError(fmt::format("--data-dir: required for the {} task", name));
  if (!fs::is_directory(opt.data_dir)) throw InputError(fmt::format("{}: not a directory", opt.data_dir));
  TaskData t = name == "listops"      ? load_listops(opt, length)
               : name == "text"       ? load_text(opt, length)
               : name == "retrieval"  ? load_retrieval(opt, length)
               : name == "image"      ? load_image(opt, length)
               : name == "pathfinder" ? load_pathfinder(opt, length, 32)
               : name == "pathx"      ? load_pathfinder(opt, length, 128)
                                      : TaskData{};
  if (t.name.empty()) default_task_length(name);  // throws the unknown-task error
  subsample(t.train, opt.max_train, opt.split_seed + 1);
  subsample(t.val, opt.max_val, opt.split_seed + 2);
  subsample(t.test, opt.max_test, opt.split_seed + 3);
  for (const Split* s : {&t.train, &t.val, &t.test})
    if (s->size() == 0) throw InputError(fmt::format("{}: the {} split is empty", s->path, s->name));
  t.provenance["split_seed"] = opt.split_seed;
  t.provenance["split_sizes"] = {{"train", t.train.size()}, {"val", t.val.size()}, {"test", t.test.size()}};
  if (opt.max_train > 0 || opt.max_val > 0 || opt.max_test > 0)
    t.provenance["subsampled"] = {{"max_train", opt.max_train}, {"max_val", opt.max_val}, {"max_test", opt.max_test}};
  t.provenance["vocab"] = t.vocab;
  t.provenance["max_length"] = length;
  return t;
}

double majority_rate(const Split& s, int classes) {
  std::vector<std::int64_t> count(static_cast<std::size_t>(classes), 0);
  for (const int l : s.labels) ++count[static_cast<std::size_t>(l)];
  return s.size() ? static_cast<double>(*std::max_element(count.begin(), count.end())) / static_cast<double>(s.size())
                  : 0.0;
}

void make_batch(const Split& split, const std::int64_t* idx, std::int64_t count, std::int64_t n, Batch& out) {
  const std::int64_t seqs = split.pairs() ? 2 * count : count;
  out.b = count, out.n = n, out.real_tokens = 0;
  out.tokens.assign(static_cast<std::size_t>(seqs * n), 0);
  out.mask.assign(static_cast<std::size_t>(seqs * n), 0);
  out.labels.resize(static_cast<std::size_t>(count));
  auto put = [&](const std::vector<std::int32_t>& seq, std::int64_t row) {
    const std::int64_t len = std::min<std::int64_t>(static_cast<std::int64_t>(seq.size()), n);
    std::copy_n(seq.begin(), len, out.tokens.begin() + row * n);
    std::fill_n(out.mask.begin() + row * n, len, std::uint8_t{1});
    out.real_tokens += len;
  };
  for (std::int64_t i = 0; i < count; ++i) {
    const auto k = static_cast<std::size_t>(idx[i]);
    put(split.tokens[k], i);
    if (split.pairs()) put(split.tokens2[k], count + i);
    out.labels[static_cast<std::size_t>(i)] = split.labels[k];
  }
}

BatchSampler::BatchSampler(std::int64_t examples, std::int64_t batch, std::uint64_t seed)
    : examples_(examples), batch_(batch), seed_(seed), out_(static_cast<std::size_t>(batch)) {
  if (examples <= 0 || batch <= 0) throw UsageError(fmt::format("batch sampler: {} examples, batch {}", examples, batch));
}

const std::vector<std::int64_t>& BatchSampler::indices(std::int64_t step) {
  // Position p of the endless stream is example perm_{p / examples}[p % examples].
  for (std::int64_t k = 0; k < batch_; ++k) {
    const std::int64_t p = (step - 1) * batch_ + k, epoch = p / examples_;
    if (epoch != epoch_) {
      perm_.resize(static_cast<std::size_t>(examples_));
      std::iota(perm_.begin(), perm_.end(), 0);
      Rng rng(seed_ ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(epoch + 1)));
      for (std::int64_t i = examples_ - 1; i > 0; --i)
        std::swap(perm_[i], perm_[rng.below(static_cast<std::uint64_t>(i + 1))]);
      epoch_ = epoch;
    }
    out_[static_cast<std::size_t>(k)] = perm_[static_cast<std::size_t>(p % examples_)];
  }
  return out_;
}

}  // namespace lsb
