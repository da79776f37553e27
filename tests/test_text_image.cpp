// Text (IMDb bytes) and Image (grey CIFAR-10) loaders: small fixtures written here in the official
// layouts, and the real shipped data where ../shared/data has it (skipped with a message elsewhere).
#include <catch2/catch.hpp>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "tasks/image.hpp"
#include "tasks/text.hpp"
#include "tests/data_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using lsb::test::fresh_dir;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

// aclImdb with `per_class` reviews per label in train and 3 in test; review text "<label> review <id>".
fs::path make_imdb(const std::string& name, int per_class) {
  const auto root = fresh_dir(name) / "aclImdb";
  for (const char* part : {"train", "test"})
    for (const char* label : {"neg", "pos"}) {
      const int count = std::string(part) == "train" ? per_class : 3;
      for (int id = 0; id < count; ++id)
        write_file(root / part / label / fmt::format("{}_{}.txt", id * 7 % 11 + 100 * id, 3),
                   fmt::format("{} review {}", label, id));
    }
  return root;
}

}  // namespace

TEST_CASE("imdb loader reads bytes plus one in id order and holds out a seeded 10 percent", "[text]") {
  const auto root = make_imdb("imdb_small", 10);
  const auto d = text::load_imdb(root.parent_path().string(), 8, 3, false);
  CHECK(d.train.size() == 18);
  CHECK(d.val.size() == 2);
  CHECK(d.test.size() == 6);
  // Test keeps file order: negatives then positives, each by numeric id (0, 107, 203 ...).
  CHECK(d.test.labels == std::vector<int>{0, 0, 0, 1, 1, 1});
  const std::string first = "neg revi";  // truncated to 8 bytes
  std::vector<std::int32_t> expect;
  for (unsigned char c : first) expect.push_back(c + 1);
  CHECK(d.test.tokens[0] == expect);
  CHECK(d.test.tokens[1].size() == 8);
  const auto again = text::load_imdb(root.string(), 8, 3, false);
  CHECK(again.val.tokens == d.val.tokens);
  const auto other = text::load_imdb(root.string(), 100, 4, false);
  CHECK(other.train.size() == 18);
  const auto lra = text::load_imdb(root.string(), 100, 3, true);
  CHECK(lra.val.size() == 6);
  CHECK(lra.train.size() == 20);
  CHECK(lra.val_from_test);
}

TEST_CASE("imdb loader errors name the file", "[text]") {
  const auto root = make_imdb("imdb_bad", 2);
  write_file(root / "train" / "pos" / "5_9.txt", "");
  CHECK_THROWS_WITH(text::load_imdb(root.string(), 10, 1, false), Catch::Contains("5_9.txt: empty review"));
  fs::remove(root / "train" / "pos" / "5_9.txt");
  write_file(root / "train" / "pos" / "review.txt", "x");
  CHECK_THROWS_WITH(text::load_imdb(root.string(), 10, 1, false),
                    Catch::Contains("review.txt: file name is not <id>_<rating>.txt"));
  fs::remove_all(root / "test" / "neg");
  fs::remove(root / "train" / "pos" / "review.txt");
  write_file(root / "train" / "pos" / "7_11.txt", "x");  // aclImdb's ratings are 1..10
  CHECK_THROWS_WITH(text::load_imdb(root.string(), 10, 1, false),
                    Catch::Contains("7_11.txt: the rating '11' is not an integer 1..10"));
  fs::remove(root / "train" / "pos" / "7_11.txt");
  CHECK_THROWS_WITH(text::load_imdb(root.string(), 10, 1, false), Catch::Contains("test/neg: missing directory"));
  CHECK_THROWS_AS(text::load_imdb("/nonexistent/imdb", 10, 1, false), InputError);
}

TEST_CASE("cifar loader converts to grey levels and splits 10 percent for validation", "[image]") {
  const auto root = fresh_dir("cifar_small") / "cifar-10-batches-bin";
  auto record = [](int label, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    std::string rec(image::kRecordBytes, '\0');
    rec[0] = static_cast<char>(label);
    for (int p = 0; p < 1024; ++p) {
      rec[1 + p] = static_cast<char>(p == 5 ? 0 : r);  // pixel 5 is black: a real token, not padding
      rec[1 + 1024 + p] = static_cast<char>(p == 5 ? 0 : g);
      rec[1 + 2048 + p] = static_cast<char>(p == 5 ? 0 : b);
    }
    return rec;
  };
  for (int i = 1; i <= 5; ++i)
    write_file(root / fmt::format("data_batch_{}.bin", i), record(i, 200, 100, 50) + record(9, 255, 255, 255) +
                                                                  record(0, 10, 20, 30) + record(3, 1, 2, 3));
  write_file(root / "test_batch.bin", record(7, 255, 0, 0) + record(2, 0, 0, 255));
  const auto d = image::load_cifar10(root.parent_path().string(), 1);
  CHECK(d.train.size() == 18);
  CHECK(d.val.size() == 2);
  REQUIRE(d.test.size() == 2);
  CHECK(d.test.labels == std::vector<int>{7, 2});
  CHECK(d.test.tokens[0][0] == 76);   // round(0.2989 * 255) = 76
  CHECK(d.test.tokens[1][0] == 29);   // round(0.1140 * 255) = 29
  CHECK(d.test.tokens[0][5] == 0);
  CHECK(d.test.tokens[0].size() == 1024u);
  CHECK(image::grey(255, 255, 255) == 255);  // 0.9999 * 255 rounds to 255, within the clamp
  CHECK(image::grey(200, 100, 50) == 124);   // 59.78 + 58.70 + 5.70 = 124.18
}

TEST_CASE("cifar loader errors name the file and record", "[image]") {
  const auto root = fresh_dir("cifar_bad");
  for (int i = 1; i <= 5; ++i) write_file(root / fmt::format("data_batch_{}.bin", i), std::string(3073, '\1'));
  CHECK_THROWS_WITH(image::load_cifar10(root.string(), 1), Catch::Contains("test_batch.bin: cannot open"));
  write_file(root / "test_batch.bin", "");
  CHECK_THROWS_WITH(image::load_cifar10(root.string(), 1), Catch::Contains("test_batch.bin: holds no record"));
  write_file(root / "test_batch.bin", std::string(3073 + 100, '\1'));
  CHECK_THROWS_WITH(image::load_cifar10(root.string(), 1), Catch::Contains("test_batch.bin: record 1 is short (100 of 3073 bytes)"));
  write_file(root / "test_batch.bin", std::string(3073, '\12'));
  CHECK_THROWS_WITH(image::load_cifar10(root.string(), 1), Catch::Contains("test_batch.bin: record 0 has label 10"));
}

TEST_CASE("the shipped IMDb data loads as the official 25000 + 25000 reviews", "[text][data]") {
  const std::string root = test::imdb_dir();
  if (root.empty()) {
    WARN("skipped: " << LSBENCH_SHARED_DATA << "/aclImdb_v1-labeled.tar.xz is not here");
    return;
  }
  const auto d = text::load_imdb(root, 4000, 0, false);
  CHECK(d.train.size() == 22500);
  CHECK(d.val.size() == 2500);
  CHECK(d.test.size() == 25000);
  std::int64_t pos = 0, longest = 0;
  for (std::size_t i = 0; i < d.test.labels.size(); ++i) {
    pos += d.test.labels[i];
    longest = std::max<std::int64_t>(longest, d.test.tokens[i].size());
  }
  CHECK(pos == 12500);
  CHECK(longest == 4000);
}

TEST_CASE("the shipped CIFAR-10 copy loads as 45000 / 5000 / 10000 with exact test class counts",
          "[image][data]") {
  const std::string root = test::cifar_dir();
  if (root.empty()) {
    WARN("skipped: " << LSBENCH_SHARED_DATA << "/cifar-10-binary-from-jpeg-q75.tar.xz is not here");
    return;
  }
  const auto d = image::load_cifar10(root, 0);
  CHECK(d.train.size() == 45000);
  CHECK(d.val.size() == 5000);
  REQUIRE(d.test.size() == 10000);
  std::array<int, 10> counts{};
  for (int l : d.test.labels) ++counts[l];
  for (int c : counts) CHECK(c == 1000);
}
