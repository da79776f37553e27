// A split of a classification task as loaded from its official file layout: token sequences
// (unpadded, each already truncated to the task's length) and their labels; two-document tasks
// (Retrieval) hold each example's second document in tokens2.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lsb {

struct Split {
  std::string name;  // train, val, test
  std::string path;  // where it was read from
  std::vector<std::vector<std::int32_t>> tokens;
  std::vector<int> labels;
  std::vector<std::vector<std::int32_t>> tokens2;  // empty, or one second document per example
  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
  bool pairs() const { return !tokens2.empty(); }
  // Moves example i of `from` (both documents) to the end of this split.
  void take(Split& from, std::int64_t i) {
    tokens.push_back(std::move(from.tokens[static_cast<std::size_t>(i)]));
    labels.push_back(from.labels[static_cast<std::size_t>(i)]);
    if (from.pairs()) tokens2.push_back(std::move(from.tokens2[static_cast<std::size_t>(i)]));
  }
};

// Moves a seeded random `fraction` of `from` into a new split `name` (the rest stays, order kept).
Split hold_out(Split& from, double fraction, std::uint64_t seed, const std::string& name);

}  // namespace lsb
