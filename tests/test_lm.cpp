// Character-level language modelling (../shared/spec/lm.md): the three file layouts of enwik8 and text8
// with their split offsets, bad data named by file and line, the evaluation windows, bits per character
// against a hand computation, training and exact resume, and `model sample` against the model's own
// next-token distribution. The decoder's gradients and causality are in test_encoder.cpp.
#include <catch2/catch.hpp>

#include <archive.h>
#include <archive_entry.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/model_sample.hpp"
#include "bench/train.hpp"
#include "model/encoder.hpp"
#include "nn/checkpoint.hpp"
#include "nn/errors.hpp"
#include "nn/random.hpp"
#include "tasks/lm.hpp"
#include "tasks/task.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/data_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using lsb::test::fresh_dir;
using lsb::test::run_cli;
namespace fs = std::filesystem;

namespace {

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A zip holding one member per (name, bytes), written with libarchive.
void write_zip(const fs::path& zip, const std::vector<std::pair<std::string, std::string>>& members) {
  archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_zip(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open_filename(a, zip.string().c_str()) == ARCHIVE_OK);
  for (const auto& [name, bytes] : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    REQUIRE(archive_write_data(a, bytes.data(), bytes.size()) == static_cast<la_ssize_t>(bytes.size()));
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// 100,000,000 bytes whose value at offset i is known: (i * 7 + i / 1000) mod 256 (enwik8), or a text8 symbol.
char enwik8_byte(std::int64_t i) { return static_cast<char>((i * 7 + i / 1000) % 256); }
char text8_char(std::int64_t i) {
  const int t = static_cast<int>((i * 5 + i / 777) % 27);
  return t == 0 ? ' ' : static_cast<char>('a' + t - 1);
}
std::string hutter_file(char (*byte)(std::int64_t)) {
  std::string s(static_cast<std::size_t>(lm::kRawSize), '\0');
  for (std::int64_t i = 0; i < lm::kRawSize; ++i) s[static_cast<std::size_t>(i)] = byte(i);
  return s;
}

void check_raw_splits(const lm::Streams& s, char (*byte)(std::int64_t), bool text8) {
  auto token = [&](std::int64_t i) {
    const auto c = static_cast<unsigned char>(byte(i));
    return text8 ? lm::text8_token(c) : static_cast<int>(c);
  };
  CHECK(s.train.size() == 90'000'000);
  CHECK(s.val.size() == 5'000'000);
  CHECK(s.test.size() == 5'000'000);
  CHECK(s.train.offset == 0);
  CHECK(s.val.offset == 90'000'000);
  CHECK(s.test.offset == 95'000'000);
  for (const TokenStream* st : {&s.train, &s.val, &s.test})
    for (const std::int64_t i : {std::int64_t{0}, std::int64_t{1}, std::int64_t{4'999'999}, st->size() - 1}) {
      INFO(st->name << " token " << i);
      CHECK(int(st->tokens[static_cast<std::size_t>(i)]) == token(st->offset + i));
    }
  CHECK(s.source_bytes == lm::kRawSize);
}

// A byte-level corpus with structure a small model learns within a few dozen steps: sentences of a
// handful of words.
std::string toy_corpus(std::int64_t bytes, std::uint64_t seed) {
  const std::vector<std::string> words = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran. "};
  Rng rng(seed);
  std::string s;
  while (static_cast<std::int64_t>(s.size()) < bytes) s += words[rng.below(words.size())];
  s.resize(static_cast<std::size_t>(bytes));
  return s;
}

double log2_softmax_at(const float* z, std::int64_t vocab, int label) {
  double mx = z[0];
  for (std::int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(z[v]));
  double sum = 0;
  for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(z[v] - mx);
  return (z[label] - mx - std::log(sum)) / std::log(2.0);
}

EncoderConfig tiny_lm(std::int64_t vocab, const std::string& attention, std::int64_t max_len) {
  VariantSpec spec = VariantSpec::parse(attention);
  spec.causal = true;
  return {.vocab = vocab, .classes = 0, .max_len = max_len, .dim = 8, .heads = 2, .layers = 2, .mlp_dim = 16,
          .attention = spec, .language_model = true};
}

}  // namespace

TEST_CASE("enwik8 and text8 load from the raw file, its zip and the Transformer-XL folder with the 90M 5M 5M splits",
          "[lm][data]") {
  const fs::path dir = fresh_dir("lm_layouts");
  {
    const std::string raw = hutter_file(enwik8_byte);
    fs::create_directories(dir / "raw");
    write_bytes(dir / "raw" / "enwik8", raw);
    write_zip(dir / "enwik8.zip", {{"enwik8", raw}});
  }
  CHECK(lm::detect_layout((dir / "raw").string(), "enwik8") == "raw");
  CHECK(lm::detect_layout((dir / "enwik8.zip").string(), "enwik8") == "zip");
  const lm::Streams raw = lm::load_hutter((dir / "raw").string(), "enwik8");
  check_raw_splits(raw, enwik8_byte, false);
  const lm::Streams zip = lm::load_hutter((dir / "enwik8.zip").string(), "enwik8");
  CHECK(zip.layout == "zip");
  check_raw_splits(zip, enwik8_byte, false);
  CHECK(zip.digest == raw.digest);  // the digest is of the bytes, not of the container
  fs::remove_all(dir / "raw");
  fs::remove(dir / "enwik8.zip");

  const std::string text8 = hutter_file(text8_char);
  write_bytes(dir / "text8", text8);
  check_raw_splits(lm::load_hutter((dir / "text8").string(), "text8"), text8_char, true);
  fs::remove(dir / "text8");

  // Transformer-XL's folders: enwik8 as decimal bytes (a line break is byte 10), text8 as symbols, _ a space.
  const fs::path txl = dir / "txl";
  fs::create_directories(txl);
  write_bytes(txl / "train.txt", "104 105 33\n32 255 0 \n");
  write_bytes(txl / "valid.txt", "7 8 9");
  write_bytes(txl / "test.txt", "1 2\n3");
  const lm::Streams t = lm::load_hutter(txl.string(), "enwik8");
  CHECK(t.layout == "split-files");
  CHECK(t.train.tokens == std::vector<std::uint8_t>{104, 105, 33, 10, 32, 255, 0, 10});
  CHECK(t.val.tokens == std::vector<std::uint8_t>{7, 8, 9});
  CHECK(t.test.tokens == std::vector<std::uint8_t>{1, 2, 10, 3});
  CHECK(t.test.path == (txl / "test.txt").string());
  const fs::path t8 = dir / "txl8";
  fs::create_directories(t8);
  write_bytes(t8 / "train.txt", "a n _ z");
  write_bytes(t8 / "valid.txt", "b _ c");
  write_bytes(t8 / "test.txt", "_ _ y");
  const lm::Streams s8 = lm::load_hutter(t8.string(), "text8");
  CHECK(s8.train.tokens == std::vector<std::uint8_t>{1, 14, 0, 26});
  CHECK(s8.test.tokens == std::vector<std::uint8_t>{0, 0, 25});
  for (int c = 0; c < 256; ++c) {
    const int tok = lm::text8_token(static_cast<unsigned char>(c));
    if (tok >= 0) CHECK(lm::text8_byte(tok) == c);
    CHECK((tok >= 0) == (c == ' ' || (c >= 'a' && c <= 'z')));
  }
}

TEST_CASE("bad language-modelling data is an error naming the file and line", "[lm][data]") {
  const fs::path dir = fresh_dir("lm_bad");
  // A zip without the expected member names the archive, the member and what it holds.
  write_zip(dir / "enwik8.zip", {{"readme.txt", "hello"}});
  CHECK_THROWS_WITH(lm::load_hutter((dir / "enwik8.zip").string(), "enwik8"),
                    Catch::Contains("enwik8.zip") && Catch::Contains("enwik8") && Catch::Contains("readme.txt"));
  // A raw file of the wrong size.
  write_bytes(dir / "enwik8", "short");
  CHECK_THROWS_WITH(lm::load_hutter((dir / "enwik8").string(), "enwik8"),
                    Catch::Contains("5 bytes") && Catch::Contains("100000000") && Catch::Contains("--task corpus"));
  // A value that is not a byte, on line 2.
  const fs::path txl = dir / "txl";
  fs::create_directories(txl);
  write_bytes(txl / "train.txt", "1 2 3\n4 300 5\n");
  write_bytes(txl / "valid.txt", "1 2");
  write_bytes(txl / "test.txt", "1 2");
  CHECK_THROWS_WITH(lm::load_hutter(txl.string(), "enwik8"),
                    Catch::Contains((txl / "train.txt").string() + ":2") && Catch::Contains("'300'"));
  write_bytes(txl / "train.txt", "1 2 x3\n");
  CHECK_THROWS_WITH(lm::load_hutter(txl.string(), "enwik8"), Catch::Contains("train.txt:1") && Catch::Contains("x3"));
  // A missing split file.
  write_bytes(txl / "train.txt", "1 2 3\n");
  fs::remove(txl / "test.txt");
  CHECK_THROWS_WITH(lm::load_hutter(txl.string(), "enwik8"), Catch::Contains("test.txt") && Catch::Contains("missing"));
  // A text8 symbol outside its 27, in a split file and in the raw file (by offset).
  write_bytes(txl / "train.txt", "a b\nc D e");
  write_bytes(txl / "test.txt", "a");
  CHECK_THROWS_WITH(lm::load_hutter(txl.string(), "text8"), Catch::Contains("train.txt:2") && Catch::Contains("'D'"));
  std::string t8(static_cast<std::size_t>(lm::kRawSize), 'a');
  t8[1234] = '!';
  write_bytes(dir / "text8", t8);
  CHECK_THROWS_WITH(lm::load_hutter((dir / "text8").string(), "text8"),
                    Catch::Contains("offset 1234") && Catch::Contains("text8 symbol"));
  fs::remove(dir / "text8");
  // An empty split: the task loader refuses it, naming the file.
  write_bytes(txl / "train.txt", "1 2 3 4 5 6 7 8 9 10 11 12");
  write_bytes(txl / "valid.txt", "");
  write_bytes(txl / "test.txt", "1 2 3");
  CHECK_THROWS_WITH(load_task("enwik8", {.data_dir = txl.string(), .length = 4}),
                    Catch::Contains("valid.txt") && Catch::Contains("empty"));
  // The command line: exit 3 and one line naming the file and line.
  write_bytes(txl / "valid.txt", "1 2 3 256");
  const auto r = run_cli(fmt::format("train --task enwik8 --data-dir {} --preset smoke --length 4 --steps 2", txl.string()));
  CHECK(r.code == kBadInput);
  CHECK_THAT(r.output, Catch::Contains("valid.txt:1") && Catch::Contains("'256'"));
  // An empty corpus folder.
  fs::create_directories(dir / "nothing");
  CHECK_THROWS_WITH(lm::load_corpus((dir / "nothing").string()), Catch::Contains("holds no file"));
}

TEST_CASE("a corpus folder is its files in sorted order cut 90 5 5 and a prefix limit cuts each split",
          "[lm][data]") {
  const fs::path dir = fresh_dir("lm_corpus");
  write_bytes(dir / "b.txt", std::string(1000, 'b'));
  write_bytes(dir / "a.txt", std::string(1000, 'a'));
  const lm::Streams s = lm::load_corpus(dir.string());
  CHECK(s.train.size() == 1800);
  CHECK(s.val.size() == 100);
  CHECK(s.test.size() == 100);
  CHECK(s.train.tokens.front() == 'a');
  CHECK(s.val.tokens.front() == 'b');
  CHECK(s.val.offset == 1800);
  const TaskData t = load_task("corpus", {.data_dir = dir.string(), .length = 16, .max_val = 40, .max_test = 30});
  CHECK(t.val_stream.size() == 40);
  CHECK(t.test_stream.size() == 30);
  CHECK(t.train_stream.size() == 1800);
}

TEST_CASE("training windows are seeded per step and their labels are the next tokens", "[lm]") {
  TokenStream s{"train", "mem", 0, {}};
  for (int i = 0; i < 300; ++i) s.tokens.push_back(static_cast<std::uint8_t>(i % 251));
  Batch a, b, c;
  lm::window_batch(s, 5, 4, 16, 9, a);
  lm::window_batch(s, 5, 4, 16, 9, b);
  lm::window_batch(s, 6, 4, 16, 9, c);
  CHECK(a.tokens == b.tokens);
  CHECK(a.tokens != c.tokens);
  for (std::int64_t i = 0; i < 4; ++i) {
    const std::int64_t at = std::find(s.tokens.begin(), s.tokens.end(), a.tokens[i * 16]) - s.tokens.begin();
    for (std::int64_t t = 0; t < 16; ++t) {
      CHECK(a.tokens[i * 16 + t] == s.tokens[at + t]);
      CHECK(a.labels[i * 16 + t] == s.tokens[at + t + 1]);
    }
  }
  TokenStream tiny{"train", "mem", 0, std::vector<std::uint8_t>(16, 1)};
  CHECK_THROWS_WITH(lm::window_batch(tiny, 1, 1, 16, 0, a), Catch::Contains("fewer than one window"));
}

TEST_CASE("evaluation windows score every target once with at least tps - S tokens of context", "[lm]") {
  for (const std::int64_t T : {2, 3, 17, 64, 101})
    for (const std::int64_t tps : {1, 4, 16})
      for (const std::int64_t S : {1, 3, 4, 16}) {
        if (S > tps) continue;
        INFO("T " << T << " tps " << tps << " S " << S);
        std::vector<int> seen(static_cast<std::size_t>(T), 0);
        const auto windows = lm::eval_windows(T, tps, S);
        for (std::size_t k = 0; k < windows.size(); ++k) {
          const lm::EvalWindow& w = windows[k];
          CHECK(w.start >= 0);
          CHECK(w.length >= 1);
          CHECK(w.length <= tps);
          CHECK(w.start + w.length <= T - 1);  // the last input's target exists
          for (std::int64_t j = w.first_scored; j <= w.start + w.length; ++j) {
            ++seen[static_cast<std::size_t>(j)];
            if (k > 0) CHECK(j - w.start >= std::min(tps - S + 1, j));  // inputs before target j
          }
        }
        CHECK(seen[0] == 0);
        for (std::int64_t j = 1; j < T; ++j) CHECK(seen[static_cast<std::size_t>(j)] == 1);
      }
  CHECK_THROWS_WITH(lm::eval_windows(100, 8, 9), Catch::Contains("--eval-stride 9"));
  CHECK_THROWS_AS(lm::eval_windows(100, 8, 0), UsageError);
}

TEST_CASE("bits per character over a stream equal the hand computation target by target", "[lm]") {
  TokenStream s{"val", "mem", 0, {}};
  Rng rng(3);
  for (int i = 0; i < 29; ++i) s.tokens.push_back(static_cast<std::uint8_t>(rng.below(6)));
  for (const std::string attention : {"full", "ls:w=2,l=2,r=1"}) {
    Encoder enc(tiny_lm(6, attention, 8));
    enc.init_params(5);
    for (const auto& [tps, stride, batch] : {std::tuple{8, 8, 2}, std::tuple{8, 3, 3}, std::tuple{5, 1, 4}}) {
      INFO(attention << " tps " << tps << " stride " << stride << " batch " << batch);
      Batch buf;
      const LmEval e = evaluate_lm(enc, s, batch, tps, stride, buf);
      // By hand: each target j from a forward of its window's inputs up to j - 1 alone.
      double bits = 0;
      for (const auto& w : lm::eval_windows(s.size(), tps, stride))
        for (std::int64_t j = w.first_scored; j <= w.start + w.length; ++j) {
          const std::vector<std::int32_t> ctx(s.tokens.begin() + w.start, s.tokens.begin() + j);
          const std::vector<std::uint8_t> mask(ctx.size(), 1);
          const std::vector<int> labels(ctx.size(), 0);
          const auto n = static_cast<std::int64_t>(ctx.size());
          enc.forward(ctx.data(), mask.data(), labels.data(), 1, n, false, 0);
          bits -= log2_softmax_at(enc.logits() + (n - 1) * 6, 6, s.tokens[static_cast<std::size_t>(j)]);
        }
      CHECK(e.scored == s.size() - 1);
      CHECK(e.bpc == Approx(bits / static_cast<double>(s.size() - 1)).epsilon(1e-5));
      CHECK(e.loss == Approx(e.bpc * std::log(2.0)).epsilon(1e-12));
    }
  }
  // A model whose every parameter is 0 predicts the uniform distribution: log2 V bits exactly.
  Encoder zero(tiny_lm(6, "full", 8));
  for (auto& [name, p] : zero.parameters())
    for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] = 0;
  Batch buf;
  CHECK(evaluate_lm(zero, s, 2, 8, 4, buf).bpc == Approx(std::log2(6.0)).epsilon(1e-6));
  // The unigram entropy: two symbols equally often is 1 bit; one symbol 0.
  CHECK(lm::unigram_entropy_bits({1, 2, 1, 2}, 256) == Approx(1.0));
  CHECK(lm::unigram_entropy_bits({7, 7, 7}, 256) == Approx(0.0).margin(1e-12));
}

TEST_CASE("a sampled step draws from the model's next-token distribution", "[lm][sample]") {
  Encoder enc(tiny_lm(7, "ls:w=2,l=2,r=1", 10));
  enc.init_params(9);
  const std::vector<std::int32_t> ctx = {3, 1, 4, 1, 5};
  // The distribution is the softmax of the last position's logits over the temperature.
  for (const double temperature : {1.0, 0.5, 2.0}) {
    const std::vector<double> p = next_token_distribution(enc, ctx, temperature);
    const std::vector<std::uint8_t> mask(ctx.size(), 1);
    const std::vector<int> labels(ctx.size(), 0);
    enc.forward(ctx.data(), mask.data(), labels.data(), 1, 5, false, 0);
    std::vector<double> z(enc.logits() + 4 * 7, enc.logits() + 5 * 7);
    double total = 0;
    for (double& v : z) total += (v = std::exp(v / temperature));
    for (int v = 0; v < 7; ++v) CHECK(p[v] == Approx(z[v] / total).epsilon(1e-9));
  }
  const std::vector<double> p = next_token_distribution(enc, ctx, 1.0);
  const std::vector<double> greedy = next_token_distribution(enc, ctx, 0.0);
  const auto best = std::max_element(p.begin(), p.end()) - p.begin();
  for (int v = 0; v < 7; ++v) CHECK(greedy[v] == (v == best ? 1.0 : 0.0));
  // The inverse CDF: token v for u in [P(< v), P(<= v)).
  CHECK(draw_token({0.25, 0.0, 0.75}, 0.0) == 0);
  CHECK(draw_token({0.25, 0.0, 0.75}, 0.2499) == 0);
  CHECK(draw_token({0.25, 0.0, 0.75}, 0.25) == 2);
  CHECK(draw_token({0.25, 0.0, 0.75}, 0.9999999) == 2);
  CHECK(draw_token({0.5, 0.5, 0.0}, 1.0) == 1);  // rounding past the total: the last token with mass
  // Frequencies of many draws match p within 5 binomial standard deviations.
  Rng rng(17);
  const int draws = 40000;
  std::vector<int> count(7, 0);
  for (int i = 0; i < draws; ++i) ++count[static_cast<std::size_t>(draw_token(p, rng.uniform()))];
  for (int v = 0; v < 7; ++v) {
    const double sd = std::sqrt(draws * p[v] * (1 - p[v]));
    CHECK(std::fabs(count[v] - draws * p[v]) <= 5 * sd + 1);
  }
}

TEST_CASE("train on a corpus beats the unigram entropy, resumes exactly, and model sample continues it",
          "[lm][train][sample][cli]") {
  const fs::path dir = fresh_dir("lm_train");
  write_bytes(dir / "corpus.txt", toy_corpus(60000, 4));
  const std::string common = fmt::format(
      "train --task corpus --data-dir {} --variant ls:w=8,l=8,r=1 --preset smoke --length 32 --batch 8 --steps 60 "
      "--eval-every 30 --max-val 1024 --max-test 2048 --eval-stride 16 --seed 2 --threads 1",
      (dir / "corpus.txt").string());
  const auto whole = run_cli(common + fmt::format(" --checkpoint-dir {} --out {} --save-weights {}",
                                                  (dir / "ck_whole").string(), (dir / "whole.json").string(),
                                                  (dir / "weights").string()));
  REQUIRE(whole.code == 0);
  const auto report = nlohmann::json::parse(lsb::test::read_file(dir / "whole.json"));
  const nlohmann::json& run = report["results"][0];
  CHECK(run["status"] == "ok");
  CHECK(run["config"]["causal"] == true);
  CHECK(run["evaluation"]["stride"] == 16);
  CHECK(run["evaluation"]["test_tokens_scored"] == 2047);
  const double unigram = run["bpc"]["test_unigram"], test = run["bpc"]["test_at_best_val"];
  INFO(whole.output);
  CHECK(test < unigram - 0.5);  // words of a 9-word vocabulary: context helps a great deal
  CHECK(run["curves"]["val_bpc"].size() == 2);

  // Resuming a finished run trains no further and reports the same.
  const auto again = run_cli(common + fmt::format(" --checkpoint-dir {} --resume --out {}", (dir / "ck_whole").string(),
                                                  (dir / "again.json").string()));
  REQUIRE(again.code == 0);
  const auto rerun = nlohmann::json::parse(lsb::test::read_file(dir / "again.json"))["results"][0];
  CHECK(rerun["resumed_from_step"] == 60);
  CHECK(rerun["bpc"] == run["bpc"]);
  CHECK(rerun["curves"]["loss"] == run["curves"]["loss"]);

  // model sample from the best checkpoint: what the command prints is what the model's distribution draws.
  const fs::path best = fs::path(dir / "ck_whole") / "best.ckpt";
  const auto sample = run_cli(fmt::format("model sample --checkpoint {} --prompt 'the cat ' --bytes 12 --seed 5 "
                                          "--temperature 0.8 --out {} --threads 1",
                                          best.string(), (dir / "sample.txt").string()));
  REQUIRE(sample.code == 0);
  const std::string text = lsb::test::read_file(dir / "sample.txt");
  REQUIRE(text.size() == 8 + 12);
  CHECK(text.substr(0, 8) == "the cat ");
  const auto meta = nlohmann::json::parse(read_checkpoint_metadata(best.string()))["model"];
  VariantSpec spec = VariantSpec::parse(meta["variant"].get<std::string>());
  spec.causal = true;
  Encoder enc({.vocab = meta["vocab"], .classes = 0, .max_len = meta["max_len"], .dim = meta["dim"],
               .heads = meta["heads"], .layers = meta["layers"], .mlp_dim = meta["mlp_dim"], .attention = spec,
               .language_model = true, .tie_embeddings = meta["tie_embeddings"]});
  std::vector<CheckpointEntry> entries;
  for (const auto& [name, p] : enc.parameters()) entries.push_back({name, &p->value});
  load_checkpoint(best.string(), entries);
  Rng rng(5);
  std::vector<std::int32_t> ctx(text.begin(), text.begin() + 8);
  for (std::size_t i = 8; i < text.size(); ++i) {
    const int token = draw_token(next_token_distribution(enc, ctx, 0.8), rng.uniform());
    CHECK(token == static_cast<unsigned char>(text[i]));
    ctx.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(text[i])));
  }
  // Greedy decoding repeats itself exactly, whatever the seed.
  const auto greedy = fmt::format("model sample --checkpoint {} --prompt 'the ' --bytes 20 --temperature 0", best.string());
  REQUIRE(run_cli(greedy + fmt::format(" --seed 1 --out {}", (dir / "g1.txt").string())).code == 0);
  REQUIRE(run_cli(greedy + fmt::format(" --seed 2 --out {}", (dir / "g2.txt").string())).code == 0);
  CHECK(lsb::test::read_file(dir / "g1.txt").size() == 24);
  CHECK(lsb::test::read_file(dir / "g1.txt") == lsb::test::read_file(dir / "g2.txt"));
  // The same model from its weights folder (PyTorch names, lm_head.*) samples the same bytes.
  REQUIRE(run_cli(fmt::format("model sample --weights {} --task corpus --variant ls:w=8,l=8,r=1 --heads 2 --prompt "
                              "'the cat ' --bytes 12 --seed 5 --temperature 0.8 --out {}",
                              (dir / "weights" / "best").string(), (dir / "from_weights.txt").string()))
              .code == 0);
  CHECK(lsb::test::read_file(dir / "from_weights.txt") == text);
  // model run takes classifiers and says where a language model goes.
  const auto run_lm = run_cli(fmt::format("model run --weights {} --variant full --heads 2 --input x.npy --output y.npy",
                                          (dir / "weights" / "best").string()));
  CHECK(run_lm.code == kBadInput);
  CHECK_THAT(run_lm.output, Catch::Contains("model sample"));
  // Errors: both sources at once; a weights folder of another alphabet; a file that is not a checkpoint.
  CHECK(run_cli(fmt::format("model sample --checkpoint {} --weights {}", best.string(), dir.string())).code == kUsage);
  const auto text8_prompt = run_cli(fmt::format("model sample --weights {} --task text8 --variant full --heads 2",
                                                (dir / "weights" / "best").string()));
  CHECK(text8_prompt.code == kBadInput);  // a vocabulary of 256, not text8's 27
  CHECK_THAT(text8_prompt.output, Catch::Contains("vocabulary"));
  const auto no_model = run_cli(fmt::format("model sample --checkpoint {}", (dir / "corpus.txt").string()));
  CHECK(no_model.code == kBadInput);
  CHECK_THAT(no_model.output, Catch::Contains("corpus.txt"));
}

TEST_CASE("a language model's run resumed from its checkpoint continues bit-identically", "[lm][train]") {
  const fs::path dir = fresh_dir("lm_resume");
  write_bytes(dir / "corpus.txt", toy_corpus(20000, 8));
  TrainOptions o;
  o.task = "corpus", o.data_dir = (dir / "corpus.txt").string(), o.preset = "smoke", o.progress = false;
  o.variant = VariantSpec::parse("flash");
  apply_train_preset(o);
  o.length = 16, o.batch = 4, o.steps = 24, o.eval_every = 8, o.log_every = 1, o.max_val = 256, o.max_test = 256;
  o.dropout = 0.1;  // the dropout masks must be drawn again exactly
  o.tie_embeddings = true;
  const TaskData task = load_task(o.task, task_options(o));
  TrainOptions a = o;
  a.checkpoint_dir = (dir / "whole").string();
  const nlohmann::json whole = train_run(a, task);
  REQUIRE(whole["status"] == "ok");
  struct Interrupt {};
  TrainOptions b = o;
  b.checkpoint_dir = (dir / "resumed").string();
  int evals = 0;
  CHECK_THROWS_AS(train_run(b, task, [&](const nlohmann::json&) { if (++evals == 2) throw Interrupt{}; }), Interrupt);
  b.resume = true;
  const nlohmann::json resumed = train_run(b, task);
  CHECK(resumed["resumed_from_step"] == 16);
  CHECK(resumed["curves"]["loss"] == whole["curves"]["loss"]);
  CHECK(resumed["curves"]["val_bpc"] == whole["curves"]["val_bpc"]);
  CHECK(resumed["bpc"] == whole["bpc"]);
  CHECK(whole["config"]["tie_embeddings"] == true);
}

TEST_CASE("smoke preset on the stand-in corpus beats the unigram entropy with every causal variant",
          "[lm][train][smoke][data]") {
  if (test::imdb_dir().empty()) {
    WARN("skipped: ../shared/data/aclImdb_v1-labeled.tar.xz is not here (the stand-in corpus is made from it)");
    return;
  }
  const Prepared corpus = task_info("corpus").prepare({.data_dir = LSBENCH_DATA_CACHE, .archives = "", .small = true});
  REQUIRE(corpus.skip.empty());
  for (const std::string variant : {"full", "flash", "ls:w=32,l=16,r=1", "sliding:R=32", "lsra", "performer"}) {
    INFO(variant);
    TrainOptions o;
    o.task = "corpus", o.data_dir = corpus.dir, o.preset = "smoke", o.progress = false;
    o.variant = VariantSpec::parse(variant);
    apply_train_preset(o);
    const nlohmann::json r = train_run(o, load_task(o.task, task_options(o)));
    REQUIRE(r["status"] == "ok");
    const double unigram = r["bpc"]["test_unigram"], test = r["bpc"]["test_at_best_val"];
    CHECK(r["evaluation"]["test_tokens_scored"] == 65535);
    INFO("test " << test << " unigram " << unigram);
    CHECK(test < unigram - 0.4);  // 200 steps of a 2-layer D 32 decoder: about 3.75 against 4.53
  }
}
