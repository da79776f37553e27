#include "tasks/retrieval.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/random.hpp"
#include "tasks/registry.hpp"
#include "tasks/text.hpp"

namespace lsb::retrieval {
namespace fs = std::filesystem;
namespace {

const char* const kFiles[3] = {"new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv"};

std::vector<std::int32_t> document_tokens(std::string_view text, std::int64_t max_len) {
  const std::size_t keep = std::min<std::size_t>({text.size(), static_cast<std::size_t>(kDocumentBytes),
                                                   static_cast<std::size_t>(max_len)});
  std::vector<std::int32_t> t(keep);
  for (std::size_t i = 0; i < keep; ++i) t[i] = static_cast<unsigned char>(text[i]) + 1;
  return t;
}

Split load_file(const fs::path& path, const std::string& name, std::int64_t max_len) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: missing (the Retrieval layout is new_aan_pairs.{{train,eval,test}}.tsv; "
                                        "make a stand-in with 'lsbench data generate retrieval-pairs')",
                                        path.string()));
  Split s{name, path.string(), {}, {}, {}};
  std::string line;
  for (std::int64_t no = 1; std::getline(in, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    Pair p = parse_line(line, max_len, fmt::format("{}:{}", path.string(), no));
    s.tokens.push_back(std::move(p.doc1));
    s.tokens2.push_back(std::move(p.doc2));
    s.labels.push_back(p.label);
  }
  return s;
}

std::string clean(std::string text) {
  for (char& c : text)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return text;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "http://www.imdb.com/title/tt0453418/usercomments" -> "tt0453418".
std::string title_of(const std::string& url, const std::string& where) {
  const auto at = url.find("/title/");
  if (at == std::string::npos) throw InputError(fmt::format("{}: not an IMDb title URL: '{}'", where, url));
  const auto from = at + 7;
  return url.substr(from, url.find('/', from) - from);
}

struct Review {
  std::string id, path, title;
};

// Every review of `part` with its title from urls_{neg,pos}.txt (line i: the review with id i).
std::vector<Review> reviews_with_titles(const std::string& root, const std::string& part) {
  std::vector<Review> out;
  std::map<std::pair<int, long long>, std::string> titles;
  for (const auto& [label_dir, label] : {std::pair<const char*, int>{"neg", 0}, {"pos", 1}}) {
    const fs::path urls = fs::path(root) / part / fmt::format("urls_{}.txt", label_dir);
    std::ifstream in(urls);
    if (!in) throw InputError(fmt::format("{}: missing (the stand-in takes each review's title from it)", urls.string()));
    std::string line;
    for (long long no = 0; std::getline(in, line); ++no)
      titles[{label, no}] = title_of(line, fmt::format("{}:{}", urls.string(), no + 1));
  }
  for (const auto& r : text::list_reviews(root, part)) {
    const auto t = titles.find({r.label, r.id});
    if (t == titles.end())
      throw InputError(fmt::format("{}: no line {} in urls_{}.txt", r.path, r.id + 1, r.label ? "pos" : "neg"));
    out.push_back({fmt::format("imdb-{}-{}-{}", part, r.label ? "pos" : "neg", r.id), r.path, t->second});
  }
  return out;
}

// `count` pairs, half positive, from the reviews whose titles are in `titles` (title -> review indices).
std::string make_pairs(const std::vector<Review>& reviews, const std::vector<std::vector<std::size_t>>& by_title,
                       std::int64_t count, Rng& rng) {
  std::vector<std::size_t> multi;  // titles with at least two reviews
  for (std::size_t t = 0; t < by_title.size(); ++t)
    if (by_title[t].size() >= 2) multi.push_back(t);
  if (multi.empty() || by_title.size() < 2)
    throw InputError("retrieval-pairs: too few titles with two reviews to make positive pairs");
  std::vector<int> labels(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) labels[static_cast<std::size_t>(i)] = static_cast<int>(i % 2);
  for (std::int64_t i = count - 1; i > 0; --i)
    std::swap(labels[static_cast<std::size_t>(i)], labels[rng.below(static_cast<std::uint64_t>(i + 1))]);
  std::string text;
  for (const int label : labels) {
    std::size_t a = 0, b = 0;
    if (label == 1) {
      const auto& rs = by_title[multi[rng.below(multi.size())]];
      a = rng.below(rs.size());
      do b = rng.below(rs.size());
      while (b == a);
      a = rs[a], b = rs[b];
    } else {
      std::size_t ta = rng.below(by_title.size()), tb = 0;
      do tb = rng.below(by_title.size());
      while (tb == ta);
      a = by_title[ta][rng.below(by_title[ta].size())];
      b = by_title[tb][rng.below(by_title[tb].size())];
    }
    text += fmt::format("{}\t{}\t{}\t{}\t{}\n", label, reviews[a].id, reviews[b].id, clean(read_all(reviews[a].path)),
                        clean(read_all(reviews[b].path)));
  }
  return text;
}

}  // namespace

Pair parse_line(const std::string& line, std::int64_t max_len, const std::string& where) {
  std::vector<std::string_view> f;
  std::size_t from = 0;
  for (;;) {
    const std::size_t tab = line.find('\t', from);
    f.emplace_back(line.data() + from, (tab == std::string::npos ? line.size() : tab) - from);
    if (tab == std::string::npos) break;
    from = tab + 1;
  }
  if (f.size() != 5)
    throw InputError(fmt::format("{}: expected 5 TAB-separated fields (label, id1, id2, text1, text2), got {}", where,
                                 f.size()));
  double label = -1;
  try {
    std::size_t used = 0;
    label = std::stod(std::string(f[0]), &used);
    if (used != f[0].size()) label = -1;
  } catch (const std::exception&) {
  }
  if (label != 0.0 && label != 1.0)
    throw InputError(fmt::format("{}: label '{}' is not 0 or 1", where, std::string(f[0].substr(0, 20))));
  Pair p{static_cast<int>(label), document_tokens(f[3], max_len), document_tokens(f[4], max_len)};
  if (p.doc1.empty() || p.doc2.empty()) throw InputError(fmt::format("{}: empty document", where));
  return p;
}

Data load_aan(const std::string& dir, std::int64_t max_len) {
  fs::path root(dir);
  for (const fs::path& sub : {fs::path("tsv_data"), fs::path("lra_release") / "lra_release" / "tsv_data"})
    if (!fs::exists(root / kFiles[0]) && fs::exists(root / sub / kFiles[0])) root /= sub;
  Data d;
  d.root = root.string();
  d.train = load_file(root / kFiles[0], "train", max_len);
  d.val = load_file(root / kFiles[1], "val", max_len);
  d.test = load_file(root / kFiles[2], "test", max_len);
  return d;
}

PairStats generate_pairs(const std::string& imdb_dir, const std::string& out, const PairConfig& cfg) {
  const auto t0 = std::chrono::steady_clock::now();
  PairStats st;
  st.imdb_root = text::find_root(imdb_dir);
  Rng rng(cfg.seed);
  auto group = [](const std::vector<Review>& reviews, const std::vector<std::string>& titles) {
    std::map<std::string, std::size_t> index;
    for (std::size_t t = 0; t < titles.size(); ++t) index[titles[t]] = t;
    std::vector<std::vector<std::size_t>> by_title(titles.size());
    for (std::size_t i = 0; i < reviews.size(); ++i) {
      const auto it = index.find(reviews[i].title);
      if (it != index.end()) by_title[it->second].push_back(i);
    }
    return by_title;
  };
  auto titles_of = [](const std::vector<Review>& reviews) {
    std::vector<std::string> t;
    for (const auto& r : reviews) t.push_back(r.title);
    std::sort(t.begin(), t.end());
    t.erase(std::unique(t.begin(), t.end()), t.end());
    return t;
  };
  const auto train = reviews_with_titles(st.imdb_root, "train"), test = reviews_with_titles(st.imdb_root, "test");
  const auto train_titles = titles_of(train);
  auto test_titles = titles_of(test);
  for (std::size_t i = test_titles.size() - 1; i > 0; --i) std::swap(test_titles[i], test_titles[rng.below(i + 1)]);
  const std::size_t half = test_titles.size() / 2;
  const std::vector<std::string> eval_titles(test_titles.begin(), test_titles.begin() + static_cast<long>(half)),
      test_half(test_titles.begin() + static_cast<long>(half), test_titles.end());
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create: {}", out, ec.message()));
  write_file_atomic((fs::path(out) / kFiles[0]).string(), make_pairs(train, group(train, train_titles), cfg.train, rng));
  write_file_atomic((fs::path(out) / kFiles[1]).string(), make_pairs(test, group(test, eval_titles), cfg.eval, rng));
  write_file_atomic((fs::path(out) / kFiles[2]).string(), make_pairs(test, group(test, test_half), cfg.test, rng));
  const nlohmann::json meta = {{"generator", "lsbench retrieval-pairs (IMDb stand-in for AAN)"},
                               {"seed", cfg.seed},
                               {"train", cfg.train},
                               {"eval", cfg.eval},
                               {"test", cfg.test},
                               {"imdb", st.imdb_root},
                               {"positive", "two different reviews of the same IMDb title"}};
  write_file_atomic((fs::path(out) / kGeneratorFile).string(), meta.dump(2) + "\n");
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

}  // namespace lsb::retrieval

// ---- The task record ------------------------------------------------------------------------------

namespace lsb {
namespace {
namespace fs = std::filesystem;

TaskData load_retrieval(const TaskOptions& opt, std::int64_t length) {
  retrieval::Data d = retrieval::load_aan(opt.data_dir, length);
  TaskData t;
  t.train = std::move(d.train), t.val = std::move(d.val), t.test = std::move(d.test);
  const fs::path meta = fs::path(d.root) / retrieval::kGeneratorFile;
  t.provenance = {{"source", fs::exists(meta) ? "lsbench stand-in from IMDb (AAN file layout)" : "AAN pairs TSV (official layout)"},
                  {"path", d.root},
                  {"generated", fs::exists(meta)},
                  {"tokenizer", fmt::format("bytes + 1, pad 0; each document's first {} bytes", retrieval::kDocumentBytes)},
                  {"truncated_to", length},
                  {"model", "two towers: one encoder, head on [u, v, u*v, u-v]"},
                  {"validation", "the eval file"}};
  if (fs::exists(meta)) t.provenance["generator"] = read_generator_file(meta.string());
  return t;
}

// The AAN files where they are (official, or generated before); else the stand-in made from IMDb.
Prepared prepare_retrieval(const PrepareContext& ctx) {
  const fs::path dir = fs::path(ctx.data_dir) / "retrieval";
  if (fs::exists(dir / retrieval::kFiles[0])) return {dir.string(), ""};
  const std::string imdb = from_archive(ctx, "aclImdb", text::kArchive);
  if (imdb.empty())
    return {"", fmt::format("no Retrieval data: put the AAN files in {} or IMDb data for the stand-in (see text)",
                            dir.string())};
  retrieval::PairConfig c{.seed = 1};
  if (ctx.small) c.train = 2000, c.eval = 300, c.test = 1000;
  const auto st = retrieval::generate_pairs(imdb, dir.string(), c);
  fmt::print("generated the Retrieval stand-in from IMDb into {} ({:.1f} s)\n", dir.string(), st.seconds);
  return {dir.string(), ""};
}

}  // namespace

LSB_TASK(retrieval) {
  TaskInfo t;
  t.name = "retrieval";
  t.summary = "Retrieval: do two documents match (AAN pairs layout; a stand-in is generated from IMDb)";
  t.kind = TaskKind::pair_classification;
  t.vocab = retrieval::kVocabSize, t.classes = retrieval::kClasses, t.default_length = 4096;
  t.load = load_retrieval;
  t.prepare = prepare_retrieval;
  t.presets["lra-small"] = {.batch = 32, .steps = 30000, .warmup = 8000, .lr = 1e-4, .weight_decay = 0.01,
                            .dropout = 0.1};
  t.presets["smoke"] = {.length = 256, .batch = 32, .steps = 200, .warmup = 20, .eval_every = 100, .lr = 1e-3,
                        .clip_norm = 0.5, .max_val = 256, .max_test = 1000};  // two 256-byte documents per example
  t.published = {{"full", "LRA paper, Table 1", "Transformer", 57.46},
                 {"linformer", "LRA paper, Table 1", "Linformer", 52.27},
                 {"full", "Nystromformer paper, PyTorch small recipe", "softmax attention", 79.35},
                 {"linformer", "Nystromformer paper, PyTorch small recipe", "Linformer", 79.37}};
  t.lra_suite = t.lra_average = true;
  return t;
}

}  // namespace lsb
