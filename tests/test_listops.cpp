#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "tasks/listops.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using lsb::test::fresh_dir;
namespace fs = std::filesystem;

namespace {
std::string read_all(const fs::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), {}};
}
}  // namespace

TEST_CASE("listops text form and values follow the spec", "[listops]") {
  CHECK(listops::evaluate("( ( ( [MAX 2 ) 9 ) ] )") == 9);
  CHECK(listops::evaluate("( ( ( [MIN 2 ) 9 ) ] )") == 2);
  CHECK(listops::evaluate("( ( ( ( [MED 1 ) 2 ) 4 ) ] )") == 2);
  CHECK(listops::evaluate("( ( ( ( ( [MED 1 ) 2 ) 4 ) 8 ) ] )") == 3);  // even count: (2 + 4) / 2
  CHECK(listops::evaluate("( ( ( ( ( [MED 1 ) 2 ) 5 ) 8 ) ] )") == 3);  // (2 + 5) / 2 = 3.5, truncated
  CHECK(listops::evaluate("( ( ( ( [SM 7 ) 8 ) 9 ) ] )") == 4);         // 24 mod 10
  CHECK(listops::evaluate("( ( ( [MIN ( ( ( [MAX 2 ) 9 ) ] ) ) 3 ) ] )") == 3);
  // An operator without arguments has no value (the fuzzer's finding: the minimum of nothing was read).
  for (const char* empty : {"( [MAX ] )", "( [MED ] )", "( [SM ] )", "( ( [MIN ( [MAX ] ) ) ] )"})
    CHECK_THROWS_WITH(listops::evaluate(empty), Catch::Contains("no arguments"));
  CHECK(listops::tokenize("( ( ( [MAX 2 ) 9 ) ] )") == std::vector<std::int32_t>{13, 4, 11, 16});
  CHECK(listops::tokenize("[MAX (2) ?") == std::vector<std::int32_t>{13, 4, listops::kUnk});
  CHECK(listops::vocabulary().size() == std::size_t(listops::kVocabSize));
}

TEST_CASE("listops generator draws trees whose text and length and value agree", "[listops]") {
  listops::GeneratorConfig cfg;
  cfg.min_length = 0;
  cfg.max_length = 1 << 30;  // keep every tree, to check all shapes
  listops::Generator gen(cfg);
  int deep = 0;
  for (int i = 0; i < 300; ++i) {
    const auto e = gen.draw();
    REQUIRE(!e.text.empty());
    CHECK(listops::evaluate(e.text) == e.value);
    CHECK(static_cast<std::int64_t>(listops::tokenize(e.text).size()) == e.length);
    deep += e.length > 1;
  }
  CHECK(deep > 30);  // about a quarter of roots are operators
}

TEST_CASE("listops generate writes the official layout deterministically with distinct in-range trees",
          "[listops]") {
  listops::GeneratorConfig cfg;
  cfg.seed = 7;
  cfg.train = 40;
  cfg.val = 5;
  cfg.test = 5;
  const auto a = fresh_dir("listops_a"), b = fresh_dir("listops_b");
  const auto st = listops::generate(cfg, a.string());
  listops::generate(cfg, b.string());
  CHECK(st.kept == 50);
  std::set<std::string> all;
  for (const char* split : {"train", "val", "test"}) {
    const auto file = a / fmt::format("basic_{}.tsv", split);
    CHECK(read_all(file) == read_all(b / fmt::format("basic_{}.tsv", split)));
    const auto s = listops::load_split(file.string(), 2000);
    for (std::size_t i = 0; i < s.tokens.size(); ++i) {
      CHECK(s.tokens[i].size() > 500);
      CHECK(s.tokens[i].size() < 2000);
    }
    std::ifstream f(file);
    std::string line;
    std::getline(f, line);
    CHECK(line == "Source\tTarget");
    while (std::getline(f, line)) {
      const auto tab = line.find('\t');
      CHECK(listops::evaluate(line.substr(0, tab)) == std::stoi(line.substr(tab + 1)));
      all.insert(line.substr(0, tab));
    }
  }
  CHECK(all.size() == 50);  // no duplicates within or across splits
  cfg.seed = 8;
  const auto c = fresh_dir("listops_c");
  listops::generate(cfg, c.string());
  CHECK(read_all(c / "basic_val.tsv") != read_all(a / "basic_val.tsv"));
}

TEST_CASE("listops loader errors name the file and line", "[listops]") {
  const auto dir = fresh_dir("listops_bad");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  auto err = [](const std::string& path, std::int64_t max_tokens = 2000) {
    try {
      listops::load_split(path, max_tokens);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string ok = "( ( ( [MAX 2 ) 9 ) ] )\t9\n";
  CHECK(err(write("good.tsv", "Source\tTarget\n" + ok)) == "no error");
  CHECK_THAT(err((dir / "missing.tsv").string()), Catch::Contains("missing.tsv: cannot open"));
  CHECK_THAT(err(write("nohead.tsv", ok)), Catch::Contains("nohead.tsv:1: expected the header"));
  CHECK_THAT(err(write("label.tsv", "Source\tTarget\n" + ok + "( [MIN 3 ] )\t12\n")),
             Catch::Contains("label.tsv:3: target '12' is not a label 0..9"));
  CHECK_THAT(err(write("notab.tsv", "Source\tTarget\n( [MIN 3 ] ) 3\n")), Catch::Contains("notab.tsv:2: no tab"));
  CHECK_THAT(err(write("empty.tsv", "Source\tTarget\n" + ok + "\n" + ok)), Catch::Contains("empty.tsv:3: empty line"));
  CHECK_THAT(err(write("utf.tsv", "Source\tTarget\n( [MIN \xff ] )\t3\n")), Catch::Contains("utf.tsv:2: not valid UTF-8"));
  CHECK_THAT(err(write("long.tsv", "Source\tTarget\n" + ok), 3), Catch::Contains("long.tsv:2: 4 tokens, longer than"));
  CHECK_THAT(err(write("zero.tsv", "")), Catch::Contains("zero.tsv: empty file"));
  // An extra column would make the label a token; junk would silently become <unk>.
  CHECK_THAT(err(write("cols.tsv", "Source\tTarget\n( [MIN 3 ] )\t3\t3\n")),
             Catch::Contains("cols.tsv:2: more than two tab-separated columns"));
  CHECK_THAT(err(write("junk.tsv", "Source\tTarget\n( [MIN 3 @@ ] )\t3\n")),
             Catch::Contains("junk.tsv:2: unknown token '@@'"));
  // Unbalanced brackets: a list never closed, and a close without an open list.
  CHECK_THAT(err(write("open.tsv", "Source\tTarget\n" + ok + "( ( [MAX 2 ) 9 )\t9\n")),
             Catch::Contains("open.tsv:3: 1 list(s) never closed"));
  CHECK_THAT(err(write("close.tsv", "Source\tTarget\n( [MIN 3 ] ) ]\t3\n")),
             Catch::Contains("close.tsv:2: a ']' closes a list that was never opened"));
}
