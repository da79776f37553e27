#include "tasks/task.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/random.hpp"
#include "tasks/archive.hpp"
#include "tasks/registry.hpp"

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

// A language-modelling task: its streams (a file or a folder), each cut to its --max-* prefix.
TaskData load_language_model(const TaskInfo& info, const TaskOptions& opt, std::int64_t length) {
  if (!fs::exists(opt.data_dir)) throw InputError(fmt::format("{}: no such file or folder", opt.data_dir));
  TaskData t = info.load(opt, length);
  t.name = info.name, t.classes = 0, t.vocab = info.vocab, t.length = length;
  for (auto [s, keep] : {std::pair{&t.train_stream, opt.max_train}, std::pair{&t.val_stream, opt.max_val},
                         std::pair{&t.test_stream, opt.max_test}}) {
    if (keep > 0 && keep < s->size()) s->tokens.resize(static_cast<std::size_t>(keep));
    for (const auto tok : s->tokens)
      if (tok >= info.vocab) throw InputError(fmt::format("{}: token {} outside the vocabulary 0..{}", s->path, int(tok), info.vocab - 1));
  }
  // A window of `length` inputs needs length + 1 tokens; evaluation needs at least one scored token.
  if (t.train_stream.size() < length + 1)
    throw InputError(fmt::format("{}: the train split has {} tokens, fewer than one window of {} + 1", t.train_stream.path,
                                 t.train_stream.size(), length));
  for (const TokenStream* s : {&t.val_stream, &t.test_stream})
    if (s->size() < 2) throw InputError(fmt::format("{}: the {} split is empty (it has {} tokens)", s->path, s->name, s->size()));
  t.provenance["split_sizes"] = {{"train", t.train_stream.size()}, {"val", t.val_stream.size()}, {"test", t.test_stream.size()}};
  if (opt.max_train > 0 || opt.max_val > 0 || opt.max_test > 0)
    t.provenance["prefixes"] = {{"max_train", opt.max_train}, {"max_val", opt.max_val}, {"max_test", opt.max_test},
                                {"what", "the first so many tokens of each split"}};
  t.provenance["vocab"] = t.vocab;
  t.provenance["tokens_per_sample"] = length;
  return t;
}

}  // namespace

nlohmann::json read_generator_file(const std::string& path) {
  try {
    return nlohmann::json::parse(std::ifstream(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
}

std::string from_archive(const PrepareContext& ctx, const std::string& inner, const std::string& archive) {
  const fs::path dir = fs::path(ctx.data_dir) / inner;
  if (fs::is_directory(dir)) return dir.string();
  const fs::path arch = fs::path(ctx.archives) / archive;
  if (ctx.archives.empty() || !fs::exists(arch)) return "";
  fmt::print("extracting {} into {}\n", arch.string(), ctx.data_dir);
  std::fflush(stdout);
  const fs::path tmp = fs::path(ctx.data_dir) / (inner + ".extracting");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  extract_archive(arch.string(), tmp.string());
  if (!fs::is_directory(tmp / inner))
    throw InputError(fmt::format("{}: holds no folder {}/", arch.string(), inner));
  fs::rename(tmp / inner, dir);
  fs::remove_all(tmp);
  return dir.string();
}

TaskData load_task(const std::string& name, const TaskOptions& opt) {
  const TaskInfo& info = task_info(name);
  const std::int64_t length = opt.length > 0 ? opt.length : info.default_length;
  if (info.fixed_length && length != info.default_length)
    throw UsageError(fmt::format("--length {}: the {} task has exactly {} tokens per example", length, name,
                                 info.default_length));
  if (opt.data_dir.empty()) throw UsageError(fmt::format("--data-dir: required for the {} task", name));
  if (info.language_model()) return load_language_model(info, opt, length);
  if (!fs::is_directory(opt.data_dir)) throw InputError(fmt::format("{}: not a directory", opt.data_dir));
  TaskData t = info.load(opt, length);
  t.name = info.name, t.classes = info.classes, t.vocab = info.vocab, t.length = length;
  subsample(t.train, opt.max_train, opt.split_seed + 1);
  subsample(t.val, opt.max_val, opt.split_seed + 2);
  subsample(t.test, opt.max_test, opt.split_seed + 3);
  for (const Split* s : {&t.train, &t.val, &t.test})
    if (s->size() == 0) throw InputError(fmt::format("{}: the {} split is empty", s->path, s->name));
  // A classifier trained on a split that lacks a class cannot learn it: say so instead of training.
  std::vector<bool> seen(static_cast<std::size_t>(info.classes), false);
  for (const int l : t.train.labels) {
    if (l < 0 || l >= info.classes)
      throw InputError(fmt::format("{}: label {} outside the task's {} classes", t.train.path, l, info.classes));
    seen[static_cast<std::size_t>(l)] = true;
  }
  std::vector<int> missing;
  for (int c = 0; c < info.classes; ++c)
    if (!seen[static_cast<std::size_t>(c)]) missing.push_back(c);
  if (!missing.empty())
    throw InputError(fmt::format("{}: the training split ({} examples{}) has no example of class {}", t.train.path,
                                 t.train.size(), opt.max_train > 0 ? ", after --max-train" : "",
                                 fmt::join(missing, ", ")));
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
