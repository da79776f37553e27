#include "tasks/text.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/parse.hpp"
#include "tasks/registry.hpp"

namespace lsb::text {
namespace fs = std::filesystem;
namespace {

// Up to max_len bytes of a file as tokens (byte + 1).
std::vector<std::int32_t> read_bytes(const fs::path& path, std::int64_t max_len) {
  std::ifstream f(path, std::ios::binary);
  std::vector<std::int32_t> tokens;
  tokens.reserve(static_cast<std::size_t>(max_len));
  char buf[4096];
  while (static_cast<std::int64_t>(tokens.size()) < max_len && f.read(buf, sizeof buf).gcount() > 0) {
    const std::int64_t got = std::min<std::int64_t>(f.gcount(), max_len - static_cast<std::int64_t>(tokens.size()));
    for (std::int64_t i = 0; i < got; ++i) tokens.push_back(static_cast<unsigned char>(buf[i]) + 1);
  }
  if (tokens.empty()) throw InputError(fmt::format("{}: empty review", path.string()));
  return tokens;
}

Split load_part(const fs::path& root, const std::string& part, std::int64_t max_len) {
  Split s{part, (root / part).string(), {}, {}, {}};
  for (const auto& r : list_reviews(root.string(), part)) {
    s.tokens.push_back(read_bytes(r.path, max_len));
    s.labels.push_back(r.label);
  }
  return s;
}

}  // namespace

std::string find_root(const std::string& dir) {
  fs::path root(dir);
  if (fs::is_directory(root / "aclImdb")) root /= "aclImdb";
  if (!fs::is_directory(root)) throw InputError(fmt::format("{}: no such directory (expected aclImdb/)", dir));
  return root.string();
}

std::vector<Review> list_reviews(const std::string& root, const std::string& part) {
  std::vector<Review> out;
  for (const auto& [label_dir, label] : {std::pair<const char*, int>{"neg", 0}, {"pos", 1}}) {
    const fs::path dir = fs::path(root) / part / label_dir;
    if (!fs::is_directory(dir))
      throw InputError(fmt::format("{}: missing directory (expected the aclImdb layout {{train,test}}/{{pos,neg}})",
                                   dir.string()));
    std::vector<Review> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() != ".txt") continue;
      const std::string stem = e.path().stem().string();
      const auto us = stem.find('_');
      char* end = nullptr;
      const long long id = std::strtoll(stem.c_str(), &end, 10);
      if (us == std::string::npos || end != stem.c_str() + us || us == 0)
        throw InputError(fmt::format("{}: file name is not <id>_<rating>.txt", e.path().string()));
      const std::optional<std::int64_t> rating = parse_int(stem.substr(us + 1));
      if (!rating || *rating < 1 || *rating > 10)
        throw InputError(fmt::format("{}: the rating '{}' is not an integer 1..10 (aclImdb names reviews <id>_<rating>.txt)",
                                     e.path().string(), stem.substr(us + 1)));
      files.push_back({id, label, e.path().string()});
    }
    std::sort(files.begin(), files.end(), [](const Review& a, const Review& b) { return a.id < b.id; });
    out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

Data load_imdb(const std::string& root_in, std::int64_t max_len, std::uint64_t split_seed, bool val_from_test) {
  const fs::path root = find_root(root_in);
  Data d;
  d.root = root.string();
  d.val_from_test = val_from_test;
  d.train = load_part(root, "train", max_len);
  d.test = load_part(root, "test", max_len);
  if (val_from_test) {
    d.val = d.test;
    d.val.name = "val";
  } else {
    d.val = hold_out(d.train, 0.1, split_seed, "val");
  }
  return d;
}

}  // namespace lsb::text

// ---- The task record ------------------------------------------------------------------------------

namespace lsb {
namespace {

TaskData load_text(const TaskOptions& opt, std::int64_t length) {
  if (opt.val_from != "train" && opt.val_from != "test")
    throw UsageError(fmt::format("--val-from {}: expected train or test", opt.val_from));
  text::Data d = text::load_imdb(opt.data_dir, length, opt.split_seed, opt.val_from == "test");
  TaskData t;
  t.train = std::move(d.train), t.val = std::move(d.val), t.test = std::move(d.test);
  t.provenance = {{"source", "aclImdb (IMDb reviews)"},
                  {"path", d.root},
                  {"generated", false},
                  {"tokenizer", "bytes + 1, pad 0"},
                  {"truncated_to", length},
                  {"validation", d.val_from_test ? "the test split (LRA convention)" : "seeded 10% hold-out of train"}};
  return t;
}

// IMDb from the shipped archive (../shared/data) where aclImdb/ is not in the data folder yet.
Prepared prepare_text(const PrepareContext& ctx) {
  if (!from_archive(ctx, "aclImdb", text::kArchive).empty()) return {ctx.data_dir, ""};
  return {"", fmt::format("no IMDb data: put aclImdb/ in {} or pass --archives with {} in it", ctx.data_dir,
                          text::kArchive)};
}

}  // namespace

LSB_TASK(text) {
  TaskInfo t;
  t.name = "text";
  t.summary = "Text: IMDb review sentiment from bytes (aclImdb layout)";
  t.vocab = text::kVocabSize, t.classes = text::kClasses, t.default_length = 4096;
  t.load = load_text;
  t.prepare = prepare_text;
  t.presets["lra-small"] = {.batch = 32, .steps = 20000, .warmup = 8000, .lr = 1e-4, .weight_decay = 0.01};
  // Byte-level sentiment is slow to pick up and easily collapses to one class: larger batches, more
  // steps (cheap at 256 bytes) and clipping.
  t.presets["smoke"] = {.length = 256, .batch = 64, .steps = 300, .warmup = 30, .eval_every = 100, .lr = 1e-3,
                        .clip_norm = 0.5, .max_val = 500, .max_test = 5000};
  t.published = {{"full", "LRA paper, Table 1", "Transformer", 64.27},
                 {"linformer", "LRA paper, Table 1", "Linformer", 53.94},
                 {"full", "Nystromformer paper, PyTorch small recipe", "softmax attention", 65.02},
                 {"linformer", "Nystromformer paper, PyTorch small recipe", "Linformer", 55.91}};
  t.lra_suite = t.lra_average = t.lra_efficiency = true;
  return t;
}

}  // namespace lsb
