// enwik8, text8 and any text corpus as language-modelling tasks (../shared/spec/lm.md, "Data").
#include "tasks/lm.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/random.hpp"
#include "tasks/archive.hpp"
#include "tasks/registry.hpp"
#include "tasks/text.hpp"

namespace lsb::lm {
namespace fs = std::filesystem;
namespace {

constexpr const char* kCorpusInfo = "lsbench-corpus.json";  // written by `data prepare corpus`
constexpr const char* kStandInDir = "lm-corpus-imdb";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot read the file", p.string()));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw InputError(fmt::format("{}: read error", p.string()));
  return s;
}

std::uint64_t fnv1a(std::uint64_t h, const std::string& bytes) {
  for (const unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return h;
}
constexpr std::uint64_t kFnvStart = 1469598103934665603ULL;

// The bytes of a raw file as tokens: every byte (enwik8, a corpus), or text8's 27 symbols.
std::vector<std::uint8_t> tokens_of(const std::string& bytes, const std::string& path, bool text8) {
  std::vector<std::uint8_t> out(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (!text8) {
      out[i] = c;
      continue;
    }
    const int t = text8_token(c);
    if (t < 0)
      throw InputError(fmt::format("{}: byte {} at offset {} is not a text8 symbol (a-z or space)", path, int(c), i));
    out[i] = static_cast<std::uint8_t>(t);
  }
  return out;
}

// One split file of Transformer-XL's preprocessing: enwik8 as byte values in decimal separated by spaces
// (a newline byte as a line break itself), text8 as characters separated by spaces, '_' for a space.
TokenStream parse_split_file(const fs::path& p, const std::string& split, bool text8) {
  const std::string text = read_file(p);
  TokenStream s{split, p.string(), 0, {}};
  s.tokens.reserve(text.size() / 2 + 1);
  std::int64_t line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ') {
      ++i;
      continue;
    }
    if (c == '\n') {
      if (!text8) s.tokens.push_back('\n');
      ++line, ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\n') ++j;
    const std::string_view word(text.data() + i, j - i);
    if (text8) {
      const int t = word == "_" ? 0 : word.size() == 1 && word[0] != ' ' ? text8_token(static_cast<unsigned char>(word[0])) : -1;
      if (t < 0)
        throw InputError(fmt::format("{}:{}: '{}' is not a text8 symbol (a-z, or _ for a space)", p.string(), line,
                                     word.substr(0, 20)));
      s.tokens.push_back(static_cast<std::uint8_t>(t));
    } else {
      int v = 0;
      bool ok = !word.empty() && word.size() <= 3;
      for (const char d : word) ok = ok && d >= '0' && d <= '9', v = v * 10 + (d - '0');
      if (!ok || v > 255)
        throw InputError(fmt::format("{}:{}: '{}' is not a byte value (0-255)", p.string(), line, word.substr(0, 20)));
      s.tokens.push_back(static_cast<std::uint8_t>(v));
    }
    i = j;
  }
  return s;
}

// The raw 100M file cut 90M / 5M / 5M.
void split_raw(Streams& out, const std::string& bytes, const std::string& path, const std::string& name) {
  if (static_cast<std::int64_t>(bytes.size()) != kRawSize)
    throw InputError(fmt::format("{}: {} bytes, but {} has exactly {} (90M train / 5M valid / 5M test); for another "
                                 "text use --task corpus",
                                 path, bytes.size(), name, kRawSize));
  std::vector<std::uint8_t> all = tokens_of(bytes, path, name == "text8");
  auto cut = [&](const char* split, std::int64_t from, std::int64_t count) {
    return TokenStream{split, path, from, std::vector<std::uint8_t>(all.begin() + from, all.begin() + from + count)};
  };
  out.train = cut("train", 0, kRawTrain);
  out.val = cut("val", kRawTrain, kRawValid);
  out.test = cut("test", kRawTrain + kRawValid, kRawSize - kRawTrain - kRawValid);
}

}  // namespace

int text8_token(unsigned char c) {
  if (c == ' ') return 0;
  if (c >= 'a' && c <= 'z') return c - 'a' + 1;
  return -1;
}
unsigned char text8_byte(int token) { return token == 0 ? ' ' : static_cast<unsigned char>('a' + token - 1); }

std::string detect_layout(const std::string& path, const std::string& name) {
  const fs::path p(path);
  if (fs::is_regular_file(p)) return p.extension() == ".zip" ? "zip" : "raw";
  if (!fs::is_directory(p)) throw InputError(fmt::format("{}: no such file or folder", path));
  if (fs::exists(p / "train.txt") || fs::exists(p / "valid.txt") || fs::exists(p / "test.txt")) return "split-files";
  if (fs::is_regular_file(p / name)) return "raw";
  if (fs::is_regular_file(p / (name + ".zip"))) return "zip";
  throw InputError(fmt::format("{}: holds no {}, {}.zip or train.txt / valid.txt / test.txt", path, name, name));
}

Streams load_hutter(const std::string& path, const std::string& name) {
  Streams out;
  out.layout = detect_layout(path, name);
  const fs::path p(path);
  const bool text8 = name == "text8";
  if (out.layout == "split-files") {
    out.source_path = path;
    std::uint64_t h = kFnvStart;
    for (const auto& [file, split, stream] : {std::tuple{"train.txt", "train", &out.train},
                                              std::tuple{"valid.txt", "val", &out.val},
                                              std::tuple{"test.txt", "test", &out.test}}) {
      const fs::path f = p / file;
      if (!fs::is_regular_file(f))
        throw InputError(fmt::format("{}: missing (the Transformer-XL layout has train.txt, valid.txt and test.txt)",
                                     f.string()));
      *stream = parse_split_file(f, split, text8);
      out.source_bytes += static_cast<std::int64_t>(fs::file_size(f));
      h = fnv1a(h, read_file(f));
    }
    out.digest = fmt::format("{:016x}", h);
    return out;
  }
  const fs::path file = fs::is_regular_file(p) ? p : p / (out.layout == "zip" ? name + ".zip" : name);
  out.source_path = file.string();
  const std::string bytes = out.layout == "zip" ? read_archive_member(file.string(), name) : read_file(file);
  const std::string where = out.layout == "zip" ? fmt::format("{} (member {})", file.string(), name) : file.string();
  out.source_bytes = static_cast<std::int64_t>(bytes.size());
  out.digest = fmt::format("{:016x}", fnv1a(kFnvStart, bytes));
  split_raw(out, bytes, where, name);
  return out;
}

Streams load_corpus(const std::string& path) {
  Streams out;
  const fs::path p(path);
  std::string bytes;
  if (fs::is_regular_file(p)) {
    out.layout = "file";
    bytes = read_file(p);
  } else if (fs::is_directory(p) && fs::exists(p / kCorpusInfo)) {  // made by `data prepare corpus`
    const fs::path file = p / read_generator_file((p / kCorpusInfo).string()).value("file", "");
    out.layout = "prepared stand-in";
    bytes = read_file(file);
  } else if (fs::is_directory(p)) {
    out.layout = "folder";
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(p))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw InputError(fmt::format("{}: the corpus folder holds no file", path));
    for (const auto& f : files) bytes += read_file(f);
  } else {
    throw InputError(fmt::format("{}: no such file or folder", path));
  }
  out.source_path = path;
  out.source_bytes = static_cast<std::int64_t>(bytes.size());
  out.digest = fmt::format("{:016x}", fnv1a(kFnvStart, bytes));
  const auto all = tokens_of(bytes, path, false);
  const std::int64_t n = out.source_bytes, train = n * 90 / 100, val = n * 5 / 100;
  out.train = {"train", path, 0, {all.begin(), all.begin() + train}};
  out.val = {"val", path, train, {all.begin() + train, all.begin() + train + val}};
  out.test = {"test", path, train + val, {all.begin() + train + val, all.end()}};
  return out;
}

void window_batch(const TokenStream& s, std::int64_t step, std::int64_t b, std::int64_t n, std::uint64_t seed,
                  Batch& out) {
  const std::int64_t starts = s.size() - n;  // offsets 0 .. size - n - 1 leave room for the last target
  if (starts <= 0) throw InputError(fmt::format("{}: {} tokens, fewer than one window of {} + 1", s.path, s.size(), n));
  out.b = b, out.n = n, out.real_tokens = b * n;
  out.tokens.resize(static_cast<std::size_t>(b * n));
  out.mask.assign(static_cast<std::size_t>(b * n), 1);
  out.labels.resize(static_cast<std::size_t>(b * n));
  for (std::int64_t i = 0; i < b; ++i) {
    const std::uint64_t r = counter_random(seed, static_cast<std::uint64_t>((step - 1) * b + i));
    const std::int64_t at = static_cast<std::int64_t>(r % static_cast<std::uint64_t>(starts));
    for (std::int64_t t = 0; t < n; ++t) {
      out.tokens[i * n + t] = s.tokens[at + t];
      out.labels[i * n + t] = s.tokens[at + t + 1];
    }
  }
}

std::vector<EvalWindow> eval_windows(std::int64_t tokens, std::int64_t tps, std::int64_t stride) {
  if (tps <= 0 || stride <= 0 || stride > tps)
    throw UsageError(fmt::format("--eval-stride {}: expected 1 .. the tokens per sample ({})", stride, tps));
  std::vector<EvalWindow> out;
  const std::int64_t last = tokens - 1;  // targets are 1 .. last
  for (std::int64_t next = 1; next <= last;) {
    const std::int64_t end = out.empty() ? std::min(tps, last) : std::min(next + stride - 1, last);
    const std::int64_t length = std::min(tps, end);
    out.push_back({end - length, length, next});
    next = end + 1;
  }
  return out;
}

double unigram_entropy_bits(const std::vector<std::uint8_t>& tokens, int vocab) {
  std::vector<std::int64_t> count(static_cast<std::size_t>(std::max(vocab, 256)), 0);
  for (const auto t : tokens) ++count[t];
  double h = 0;
  const double total = static_cast<double>(tokens.size());
  for (const auto c : count)
    if (c > 0) h -= static_cast<double>(c) / total * std::log2(static_cast<double>(c) / total);
  return h;
}

}  // namespace lsb::lm

namespace lsb {
namespace {
namespace fs = std::filesystem;

TaskData to_task_data(lm::Streams s, const std::string& source, const std::string& tokenizer) {
  TaskData t;
  t.train_stream = std::move(s.train), t.val_stream = std::move(s.val), t.test_stream = std::move(s.test);
  t.provenance = {{"source", source},
                  {"path", s.source_path},
                  {"layout", s.layout},
                  {"bytes", s.source_bytes},
                  {"digest_fnv1a64", s.digest},
                  {"generated", false},
                  {"tokenizer", tokenizer}};
  for (const TokenStream* st : {&t.train_stream, &t.val_stream, &t.test_stream})
    t.provenance["splits"][st->name] = {{"path", st->path}, {"offset", st->offset}, {"tokens", st->size()}};
  return t;
}

TaskData load_enwik8(const TaskOptions& opt, std::int64_t) {
  return to_task_data(lm::load_hutter(opt.data_dir, "enwik8"), "enwik8 (Hutter Prize)", "bytes (vocabulary 256)");
}
TaskData load_text8(const TaskOptions& opt, std::int64_t) {
  return to_task_data(lm::load_hutter(opt.data_dir, "text8"), "text8", "27 symbols: space 0, a-z 1-26");
}
TaskData load_corpus_task(const TaskOptions& opt, std::int64_t) {
  lm::Streams s = lm::load_corpus(opt.data_dir);
  std::string source = "text corpus (bytes)";
  if (s.layout == "prepared stand-in")
    source = "IMDb reviews (aclImdb v1) as a byte-level stand-in corpus: not enwik8 or text8";
  return to_task_data(std::move(s), source, "bytes (vocabulary 256)");
}

// The embedded default: the IMDb reviews of the shipped archive, every review of train/{neg,pos} and
// test/{neg,pos} in sorted path order, one per line, as one file (the stand-in, named as such).
Prepared prepare_corpus(const PrepareContext& ctx) {
  const fs::path dir = fs::path(ctx.data_dir) / lm::kStandInDir;
  if (fs::exists(dir / lm::kCorpusInfo)) return {dir.string(), ""};
  const std::string imdb = from_archive(ctx, "aclImdb", text::kArchive);
  if (imdb.empty())
    return {"", fmt::format("no text corpus: put aclImdb/ in {} or pass --archives with {} in it", ctx.data_dir,
                            text::kArchive)};
  std::vector<fs::path> files;
  for (const char* part : {"train/neg", "train/pos", "test/neg", "test/pos"})
    for (const auto& e : fs::directory_iterator(fs::path(imdb) / part))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string corpus;
  for (const auto& f : files) corpus += lm::read_file(f) + "\n";
  fs::create_directories(dir);
  write_file_atomic((dir / "imdb-reviews.txt").string(), corpus);
  write_file_atomic((dir / lm::kCorpusInfo).string(),
                    nlohmann::json{{"file", "imdb-reviews.txt"},
                                   {"what", "IMDb reviews (aclImdb v1, train and test, negative and positive) in sorted "
                                            "path order, one per line: a byte-level stand-in corpus, not enwik8"},
                                   {"reviews", files.size()},
                                   {"bytes", corpus.size()}}
                        .dump(2));
  return {dir.string(), ""};
}

// enwik8 and text8 are not shipped: the data folder (or the archives folder) must hold one of the layouts.
template <const char* Name>
Prepared prepare_hutter(const PrepareContext& ctx) {
  for (const std::string& d : {ctx.data_dir, ctx.archives}) {
    if (d.empty()) continue;
    try {
      lm::detect_layout(d, Name);
      return {d, ""};
    } catch (const InputError&) {
    }
  }
  return {"", fmt::format("{} is not shipped here: put {}, {}.zip or the Transformer-XL train.txt / valid.txt / "
                          "test.txt in {}",
                          Name, Name, Name, ctx.data_dir)};
}
constexpr char kEnwik8[] = "enwik8", kText8[] = "text8";

int byte_token(unsigned char c) { return c; }
unsigned char token_byte(int t) { return static_cast<unsigned char>(t); }

// What the three tasks share: the recipes of ../shared/spec/lm.md "Presets".
TaskInfo lm_record(const std::string& name, std::int64_t vocab) {
  TaskInfo t;
  t.name = name;
  t.kind = TaskKind::language_model;
  t.vocab = vocab, t.classes = 0, t.default_length = 1024;
  t.metric = "bpc";
  t.token_of_byte = byte_token, t.byte_of_token = token_byte;
  // Seconds per variant on two cores: validation and test on the first 32K / 64K tokens of their splits.
  t.presets["smoke"] = {.length = 256, .batch = 8, .steps = 200, .warmup = 20, .eval_every = 100, .lr = 3e-3,
                        .clip_norm = 1.0, .max_val = 32768, .max_test = 65536, .dim = 32, .heads = 2, .layers = 2,
                        .mlp_dim = 128};
  // A few hours on two cores; validation on the first 256K tokens, test on the whole split.
  t.presets["lm-small"] = {.length = 1024, .batch = 16, .steps = 2000, .warmup = 200, .eval_every = 250, .lr = 1e-3,
                           .clip_norm = 0.5, .max_val = 262144, .dim = 256, .heads = 4, .layers = 4, .mlp_dim = 1024};
  // The authors' 12-layer enwik8 model (Transformer-XL's base schedule length of 400K steps).
  t.presets["enwik8-base"] = {.length = 2048, .batch = 4, .steps = 400000, .warmup = 10000, .eval_every = 4000,
                              .lr = 2.5e-4, .weight_decay = 0.01, .dropout = 0.2, .clip_norm = 0.25, .dim = 512,
                              .heads = 8, .layers = 12, .mlp_dim = 2048};
  return t;
}

}  // namespace

LSB_TASK(enwik8) {
  TaskInfo t = lm_record("enwik8", 256);
  t.summary = "enwik8: character-level language modelling on the first 100M bytes of Wikipedia (bits per byte)";
  t.load = load_enwik8;
  t.prepare = prepare_hutter<kEnwik8>;
  t.published = {{"ls", "Transformer-LS paper (Zhu et al. 2021), abstract",
                  "Transformer-LS, 30 layers, Transformer-XL positions and cache, trained on GPUs", 0.97}};
  return t;
}

LSB_TASK(text8) {
  TaskInfo t = lm_record("text8", 27);
  t.summary = "text8: character-level language modelling on 100M characters of a-z and space";
  t.load = load_text8;
  t.prepare = prepare_hutter<kText8>;
  t.token_of_byte = lm::text8_token, t.byte_of_token = lm::text8_byte;
  return t;
}

LSB_TASK(corpus) {
  TaskInfo t = lm_record("corpus", 256);
  t.summary = "corpus: byte-level language modelling on any text (default: the IMDb reviews, a stand-in)";
  t.load = load_corpus_task;
  t.prepare = prepare_corpus;
  return t;
}

}  // namespace lsb
