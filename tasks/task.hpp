// The task interface: every LRA classification task, whatever its official file layout, as the
// trainer sees it: a name, classes, vocabulary, the model's sequence length, three splits of token
// sequences, and the provenance a report must carry (../shared/spec/lra.md, first section).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tasks/split.hpp"

namespace lsb {

struct TaskOptions {
  std::string data_dir;             // the official layout, or a directory that contains it
  std::int64_t length = 0;          // model sequence length; 0 = the task's default
  std::uint64_t split_seed = 0;     // seeded hold-outs and subsamples
  std::string val_from = "train";   // text: "train" (10% hold-out) or "test" (the LRA convention)
  std::string difficulty = "14";    // pathfinder, pathx: baseline, 9 or 14
  // Seeded random subsets (0 = the whole split): the smoke preset trains and evaluates on a part.
  // Language modelling: the first so many tokens of each stream instead.
  std::int64_t max_train = 0, max_val = 0, max_test = 0;
};

// A language-modelling task's split: one token stream, in order (../shared/spec/lm.md). Token ids fit a
// byte: 256 byte values, or text8's 27 symbols.
struct TokenStream {
  std::string name;          // train, val, test
  std::string path;          // the file it was read from
  std::int64_t offset = 0;   // where the split starts in that file's tokens (raw layouts; 0 for a split file)
  std::vector<std::uint8_t> tokens;
  std::int64_t size() const { return static_cast<std::int64_t>(tokens.size()); }
};

struct TaskData {
  std::string name;
  int classes = 0;
  std::int64_t vocab = 0;
  std::int64_t length = 0;  // every sequence has at most this many tokens; batches are padded to it
  Split train, val, test;  // two documents per example (Split::pairs) for retrieval
  TokenStream train_stream, val_stream, test_stream;  // language modelling: the splits as streams
  nlohmann::json provenance;  // source, path, generated?, tokenizer, split seed, split sizes, ...
};

// Loads a registered task (tasks/registry.hpp) and cuts its splits to the options' subsets.
// UsageError: unknown task or an impossible option; InputError: missing or malformed files (naming the
// file and line or record), an empty split.
TaskData load_task(const std::string& name, const TaskOptions& opt);

// The majority-class rate of a split: the accuracy of always answering its most common label.
double majority_rate(const Split& s, int classes);

// One padded batch of b examples: tokens (b, n) with 0 past each sequence ((2b, n) for a two-document
// task: the b first documents, then the b second ones), mask alike, 1 = real token; labels (b).
struct Batch {
  std::int64_t b = 0, n = 0, real_tokens = 0;
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> mask;
  std::vector<int> labels;
};
// Fills `out` with the examples idx[0..count) of `split`, padded to n (buffers reused).
void make_batch(const Split& split, const std::int64_t* idx, std::int64_t count, std::int64_t n, Batch& out);

// The training stream: an endless sequence of epochs, each a seeded permutation of the split.
// Stateless in the step, so that a resumed run draws exactly the batches it would have drawn.
class BatchSampler {
 public:
  BatchSampler(std::int64_t examples, std::int64_t batch, std::uint64_t seed);
  // Indices of the batch of 1-based step s (batch of them).
  const std::vector<std::int64_t>& indices(std::int64_t step);

 private:
  std::int64_t examples_, batch_;
  std::uint64_t seed_;
  std::int64_t epoch_ = -1;
  std::vector<std::int64_t> perm_, out_;
};

}  // namespace lsb
