// A split of a classification task as loaded from its official file layout: token sequences
// (unpadded, each already truncated to the task's length) and their labels.
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
  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
};

// Moves a seeded random `fraction` of `from` into a new split `name` (the rest stays, order kept).
Split hold_out(Split& from, double fraction, std::uint64_t seed, const std::string& name);

}  // namespace lsb
