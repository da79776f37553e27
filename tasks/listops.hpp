// ListOps (Long Range Arena): the seeded generator of ../shared/spec/lra.md writing the official
// layout (basic_{train,val,test}.tsv: a header "Source<TAB>Target", then one expression and its
// value 0..9 per line), the loader of that layout (it accepts the official release files
// unchanged), and the corrected tokenizer with a fixed vocabulary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/random.hpp"
#include "tasks/split.hpp"

namespace lsb::listops {

// Fixed vocabulary (never built from data): 0 pad, 1 unk, 2..11 digits 0..9, 12 [MIN, 13 [MAX,
// 14 [MED, 15 [SM, 16 X (the closing bracket). 17 ids in all.
constexpr int kPad = 0, kUnk = 1, kVocabSize = 17, kClasses = 10;
const std::vector<std::string>& vocabulary();

// The corrected official tokenizer: ']' becomes 'X', '(' and ')' are deleted, split on whitespace.
// Unknown tokens map to kUnk (the loader refuses them: the official data has none).
// A token outside the vocabulary becomes <unk>; `unknown`, when given, receives the first such token.
std::vector<std::int32_t> tokenize(const std::string& source, std::string* unknown = nullptr);

struct GeneratorConfig {
  std::uint64_t seed = 0;
  std::int64_t train = 96000, val = 2000, test = 2000;
  int max_depth = 10, max_args = 10;
  std::int64_t min_length = 500, max_length = 2000;  // kept: min_length < length < max_length
};

struct Expression {
  std::string text;      // official text form, e.g. "( ( ( [MAX 2 ) 9 ) ] )"
  int value = 0;         // 0..9
  std::int64_t length = 0;  // tokens: operators, digits and closing brackets
};

// Draws one tree with the generator's process (no length filter). Exposed for tests.
class Generator {
 public:
  explicit Generator(const GeneratorConfig& cfg);
  Expression draw();

 private:
  struct Node;
  const GeneratorConfig cfg_;
  Rng rng_;  // the generator's only source of randomness
};

struct GenerateStats {
  std::int64_t drawn = 0, kept = 0, duplicates = 0;
  double seconds = 0;
};
// Writes DIR/basic_{train,val,test}.tsv (atomically each). Trees are drawn until the three splits
// are full: the first `train` distinct accepted trees go to train, then val, then test.
// Also writes DIR/lsbench-generator.json (the config), which the task loader reports as provenance.
GenerateStats generate(const GeneratorConfig& cfg, const std::string& dir);
constexpr const char* kGeneratorFile = "lsbench-generator.json";

// Loads one TSV file. Errors are InputError naming file and line: missing file or header, a line
// without a tab, a label that is not an integer 0..9, a non-UTF-8 or empty line, or a line longer
// than max_tokens tokens.
Split load_split(const std::string& path, std::int64_t max_tokens);

// Evaluates an expression in text form (for tests and for validating loaded files).
int evaluate(const std::string& source);

}  // namespace lsb::listops
