// Character-level language modelling (../shared/spec/lm.md): enwik8, text8 and any text corpus as three
// token streams, from the layouts people already have. The task records (enwik8, text8, corpus) are in
// lm.cpp; this header is what the tests and `data stats` use besides them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tasks/task.hpp"

namespace lsb::lm {

// The Hutter Prize files: 100,000,000 bytes (enwik8) or characters (text8), split 90M / 5M / 5M.
constexpr std::int64_t kRawSize = 100'000'000, kRawTrain = 90'000'000, kRawValid = 5'000'000;

// text8's 27 symbols: space -> 0, 'a'..'z' -> 1..26; -1 for anything else.
int text8_token(unsigned char c);
unsigned char text8_byte(int token);

// Which layout a path holds for `name` (enwik8 or text8), as the loaders decide it: "raw", "zip" or
// "split-files" (Transformer-XL's train.txt / valid.txt / test.txt); InputError when none.
std::string detect_layout(const std::string& path, const std::string& name);

// The three streams of enwik8 or text8 from `path` (the file, its .zip, or a folder holding either or
// the Transformer-XL files). InputError naming the file (and line or offset) for bad data.
struct Streams {
  TokenStream train, val, test;
  std::string layout, source_path;  // what was read
  std::int64_t source_bytes = 0;
  std::string digest;  // FNV-1a 64 of the bytes read (the raw file, or the three split files)
};
Streams load_hutter(const std::string& path, const std::string& name);
// A text corpus: one file, or every regular file of a folder in sorted path order; 90% / 5% / 5% by
// bytes, in order. A folder made by `data prepare corpus` (lsbench-corpus.json in it) reads its one file.
Streams load_corpus(const std::string& path);

// Training batch of 1-based step `step`: b windows of n inputs at seeded offsets of the stream (each in
// [0, size - n - 1]), mask all 1, labels (b, n) the next token of every input. Stateless in the step, so
// a resumed run draws exactly the windows it would have drawn.
void window_batch(const TokenStream& s, std::int64_t step, std::int64_t b, std::int64_t n, std::uint64_t seed,
                  Batch& out);

// The evaluation windows over a stream of T tokens (lm.md, "Evaluation"): every target 1..T-1 scored
// exactly once. Stride S = tps: non-overlapping windows of tps inputs. S < tps: after the first window
// (which scores all its targets), each window ends S targets further and scores only those, with up to
// tps inputs before them, so every token after the first window sees at least tps - S tokens of context.
struct EvalWindow {
  std::int64_t start = 0, length = 0;  // inputs [start, start + length), targets start + 1 .. start + length
  std::int64_t first_scored = 0;       // the targets scored: indices first_scored .. start + length
};
std::vector<EvalWindow> eval_windows(std::int64_t tokens, std::int64_t tps, std::int64_t stride);

// The unigram entropy of a stream in bits per token: the BPC of a model that sees no context.
double unigram_entropy_bits(const std::vector<std::uint8_t>& tokens, int vocab);

}  // namespace lsb::lm
