#include "tasks/listops.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "tasks/registry.hpp"

namespace lsb::listops {
namespace {

const char* kOps[] = {"[MIN", "[MAX", "[MED", "[SM"};

int combine(int op, const std::vector<int>& v) {
  if (v.empty()) throw InputError("listops: an operator with no arguments");
  switch (op) {
    case 0: return *std::min_element(v.begin(), v.end());
    case 1: return *std::max_element(v.begin(), v.end());
    case 2: {  // median; an even count averages the two middle values, truncated to an integer
      std::vector<int> s = v;
      std::sort(s.begin(), s.end());
      const std::size_t k = s.size();
      return k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
    }
    default: {
      int sum = 0;
      for (int x : v) sum += x;
      return sum % 10;
    }
  }
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra < 0 || i + extra >= s.size() + (extra == 0 ? 1 : 0)) return false;
    for (int k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> v = {"<pad>", "<unk>", "0",    "1",    "2",    "3",   "4", "5", "6",
                                             "7",     "8",     "9",    "[MIN", "[MAX", "[MED", "[SM", "X"};
  return v;
}

std::vector<std::int32_t> tokenize(const std::string& source, std::string* unknown) {
  std::vector<std::int32_t> out;
  std::string tok;
  auto flush = [&] {
    if (tok.empty()) return;
    if (tok.size() == 1 && tok[0] >= '0' && tok[0] <= '9')
      out.push_back(2 + (tok[0] - '0'));
    else if (tok == "X")
      out.push_back(16);
    else {
      int id = kUnk;
      for (int k = 0; k < 4; ++k)
        if (tok == kOps[k]) id = 12 + k;
      if (id == kUnk && unknown && unknown->empty()) *unknown = tok;
      out.push_back(id);
    }
    tok.clear();
  };
  for (char c : source) {
    if (c == '(' || c == ')') continue;  // deleted, not separators: "(x)" is one token x
    if (c == ']') c = 'X';
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      flush();
    } else {
      tok += c;
    }
  }
  flush();
  return out;
}

struct Generator::Node {
  int op = -1;  // -1: leaf digit
  int value = 0;
  std::int64_t length = 1;
  std::vector<std::unique_ptr<Node>> children;
};

Generator::Generator(const GeneratorConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {}

Expression Generator::draw() {
  // node(depth): leaf with probability 0.75 (always at max depth); else 2..max_args children built
  // first, then the operator drawn uniformly.
  auto build = [&](auto&& self, int depth) -> std::unique_ptr<Node> {
    auto node = std::make_unique<Node>();
    const double u = depth < cfg_.max_depth ? rng_.uniform() : 1.0;
    if (u > 0.25) {
      node->value = static_cast<int>(rng_.below(10));
      return node;
    }
    const int count = 2 + static_cast<int>(rng_.below(cfg_.max_args - 1));
    std::vector<int> values;
    node->length = 2;
    for (int i = 0; i < count; ++i) {
      node->children.push_back(self(self, depth + 1));
      values.push_back(node->children.back()->value);
      node->length += node->children.back()->length;
    }
    node->op = static_cast<int>(rng_.below(4));
    node->value = combine(node->op, values);
    return node;
  };
  const auto root = build(build, 1);
  // Text form: left-nested pairs (((op, c1), c2), ... cn) then ']', each pair "( a b )".
  auto text = [&](auto&& self, const Node& n, std::string& out) -> void {
    if (n.op < 0) {
      out += static_cast<char>('0' + n.value);
      return;
    }
    const std::size_t pairs = n.children.size() + 1;
    for (std::size_t i = 0; i < pairs; ++i) out += "( ";
    out += kOps[n.op];
    for (const auto& c : n.children) {
      out += ' ';
      self(self, *c, out);
      out += " )";
    }
    out += " ] )";
  };
  Expression e;
  e.value = root->value;
  e.length = root->length;
  if (e.length > cfg_.min_length && e.length < cfg_.max_length) text(text, *root, e.text);
  return e;
}

GenerateStats generate(const GeneratorConfig& cfg, const std::string& dir) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  // Kept lengths are those strictly between the bounds: none exist when they are less than 2 apart, and
  // the shortest tree ("[MIN d ]") has 3 tokens.
  if (cfg.min_length < 0 || cfg.max_length - cfg.min_length < 2 || cfg.max_length <= 3)
    throw UsageError(fmt::format("--min-length {} --max-length {}: no tree length lies strictly between them (the "
                                 "shortest tree has 3 tokens)",
                                 cfg.min_length, cfg.max_length));
  Generator gen(cfg);
  GenerateStats st;
  // A window the process (almost) never draws into would loop for ever: give up after this many draws in
  // a row without a new tree kept.
  constexpr std::int64_t kFruitlessDraws = 2'000'000;
  std::int64_t fruitless = 0;
  // Duplicates are recognised by a 64-bit fingerprint of the text (the texts themselves would take
  // hundreds of MiB); the chance of a false match among 10^5 trees is below 10^-9.
  std::unordered_set<std::uint64_t> seen;
  const std::pair<const char*, std::int64_t> splits[] = {{"train", cfg.train}, {"val", cfg.val}, {"test", cfg.test}};
  for (const auto& [name, count] : splits) {
    const std::string path = (fs::path(dir) / fmt::format("basic_{}.tsv", name)).string();
    const std::string tmp = path + ".tmp";
    std::ofstream f(tmp);
    if (!f) throw InputError(fmt::format("{}: cannot write", path));
    f << "Source\tTarget\n";
    for (std::int64_t k = 0; k < count;) {
      const Expression e = gen.draw();
      ++st.drawn;
      if (++fruitless > kFruitlessDraws)
        throw UsageError(fmt::format("--min-length {} --max-length {}: {} trees drawn in a row without a new one of a "
                                     "length between the bounds (max depth {}, max arguments {}); widen the bounds",
                                     cfg.min_length, cfg.max_length, kFruitlessDraws, cfg.max_depth, cfg.max_args));
      if (e.text.empty()) continue;  // outside the length window
      std::uint64_t h = 1469598103934665603ULL;
      for (unsigned char c : e.text) h = (h ^ c) * 1099511628211ULL;
      if (!seen.insert(h).second) {
        ++st.duplicates;
        continue;
      }
      f << e.text << '\t' << e.value << '\n';
      fruitless = 0;
      ++k;
      ++st.kept;
    }
    f.close();
    if (!f) throw InputError(fmt::format("{}: write failed", path));
    fs::rename(tmp, path);
  }
  // Provenance for reports: a release downloaded elsewhere has no such file.
  const nlohmann::json meta = {{"generator", "lsbench listops"}, {"seed", cfg.seed},       {"train", cfg.train},
                               {"val", cfg.val},                 {"test", cfg.test},       {"max_depth", cfg.max_depth},
                               {"max_args", cfg.max_args},       {"min_length", cfg.min_length},
                               {"max_length", cfg.max_length}};
  const std::string meta_path = (fs::path(dir) / kGeneratorFile).string();
  write_file_atomic(meta_path, meta.dump(2) + "\n");
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

Split load_split(const std::string& path, std::int64_t max_tokens) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open (expected the ListOps TSV layout basic_{{train,val,test}}.tsv)", path));
  Split s;
  s.name = std::filesystem::path(path).stem().string();
  s.path = path;
  std::string line;
  std::int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lineno == 1) {
      if (line.rfind("Source\tTarget", 0) != 0)
        throw InputError(fmt::format("{}:1: expected the header 'Source<TAB>Target'", path));
      continue;
    }
    if (line.empty()) throw InputError(fmt::format("{}:{}: empty line", path, lineno));
    if (!valid_utf8(line)) throw InputError(fmt::format("{}:{}: not valid UTF-8", path, lineno));
    const auto tab = line.rfind('\t');
    if (tab == std::string::npos) throw InputError(fmt::format("{}:{}: no tab between source and target", path, lineno));
    if (line.find('\t') != tab)
      throw InputError(fmt::format("{}:{}: more than two tab-separated columns (expected source<TAB>target)", path, lineno));
    const std::string target = line.substr(tab + 1);
    if (target.size() != 1 || target[0] < '0' || target[0] > '9')
      throw InputError(fmt::format("{}:{}: target '{}' is not a label 0..9", path, lineno, target));
    std::string unknown;
    auto tokens = tokenize(line.substr(0, tab), &unknown);
    if (tokens.empty()) throw InputError(fmt::format("{}:{}: empty source", path, lineno));
    if (!unknown.empty())
      throw InputError(fmt::format("{}:{}: unknown token '{}' (ListOps has digits, [MIN, [MAX, [MED, [SM and ])", path,
                                   lineno, unknown.substr(0, 40)));
    // Balanced: every operator's list is closed, and nothing is closed that was not opened.
    std::int64_t depth = 0;
    for (const std::int32_t id : tokens) {
      depth += id >= 12 && id <= 15 ? 1 : id == 16 ? -1 : 0;
      if (depth < 0) throw InputError(fmt::format("{}:{}: a ']' closes a list that was never opened", path, lineno));
    }
    if (depth != 0) throw InputError(fmt::format("{}:{}: {} list(s) never closed with ']'", path, lineno, depth));
    if (static_cast<std::int64_t>(tokens.size()) > max_tokens)
      throw InputError(fmt::format("{}:{}: {} tokens, longer than the model's length {} (--length, or the task's "
                                   "default)",
                                   path, lineno, tokens.size(), max_tokens));
    s.tokens.push_back(std::move(tokens));
    s.labels.push_back(target[0] - '0');
  }
  if (lineno == 0) throw InputError(fmt::format("{}: empty file (expected the header 'Source<TAB>Target')", path));
  return s;
}

int evaluate(const std::string& source) {
  // Tokens in order: an operator opens a list, X closes it; digits are values.
  std::vector<std::pair<int, std::vector<int>>> stack;
  int result = -1;
  for (std::int32_t id : tokenize(source)) {
    if (id >= 12 && id <= 15) {
      stack.push_back({id - 12, {}});
    } else if (id >= 2 && id <= 11) {
      if (stack.empty()) return id - 2;
      stack.back().second.push_back(id - 2);
    } else if (id == 16) {
      if (stack.empty()) throw InputError("listops: unbalanced ']'");
      const int v = combine(stack.back().first, stack.back().second);
      stack.pop_back();
      if (stack.empty())
        result = v;
      else
        stack.back().second.push_back(v);
    } else {
      throw InputError("listops: unknown token in expression");
    }
  }
  if (!stack.empty() || result < 0) throw InputError("listops: incomplete expression");
  return result;
}

}  // namespace lsb::listops

// ---- The task record ------------------------------------------------------------------------------

namespace lsb {
namespace {

TaskData load_listops(const TaskOptions& opt, std::int64_t length) {
  TaskData t;
  const std::filesystem::path dir(opt.data_dir);
  const auto file = [&](const char* split) { return (dir / fmt::format("basic_{}.tsv", split)).string(); };
  if (!std::filesystem::exists(file("train")))
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
  const std::filesystem::path meta = dir / listops::kGeneratorFile;
  t.provenance["generated"] = std::filesystem::exists(meta);
  if (std::filesystem::exists(meta)) t.provenance["generator"] = read_generator_file(meta.string());
  return t;
}

// Generated with the spec's process (smoke: short trees that fit its length of 256).
Prepared prepare_listops(const PrepareContext& ctx) {
  const std::filesystem::path dir = std::filesystem::path(ctx.data_dir) / "listops";
  if (!std::filesystem::exists(dir / "basic_test.tsv")) {
    listops::GeneratorConfig c{.seed = 1};
    if (ctx.small) c.train = 5000, c.val = 500, c.test = 2000, c.min_length = 10, c.max_length = 250;
    const auto st = listops::generate(c, dir.string());
    fmt::print("generated ListOps into {} ({:.1f} s)\n", dir.string(), st.seconds);
  }
  return {dir.string(), ""};
}

}  // namespace

LSB_TASK(listops) {
  TaskInfo t;
  t.name = "listops";
  t.summary = "ListOps: the value 0..9 of a nested list expression (generated; basic_{train,val,test}.tsv)";
  t.vocab = listops::kVocabSize, t.classes = listops::kClasses, t.default_length = 2048;
  t.load = load_listops;
  t.prepare = prepare_listops;
  // ../shared/spec/lra.md "Models" (lra-small); smoke: data generated short (trees under 250 tokens).
  t.presets["lra-small"] = {.batch = 32, .steps = 5000, .warmup = 1000, .lr = 1e-4};
  t.presets["smoke"] = {.length = 256, .batch = 32, .steps = 150, .warmup = 15, .eval_every = 50, .lr = 2e-3,
                        .max_val = 500, .max_test = 2000};
  t.published = {{"full", "LRA paper, Table 1", "Transformer", 36.37},
                 {"linformer", "LRA paper, Table 1", "Linformer", 35.70},
                 {"full", "Nystromformer paper, PyTorch small recipe", "softmax attention", 37.10},
                 {"linformer", "Nystromformer paper, PyTorch small recipe", "Linformer", 37.25}};
  t.lra_suite = t.lra_average = true;
  return t;
}

}  // namespace lsb
