#include "tasks/split.hpp"

#include <algorithm>
#include <numeric>

#include "nn/random.hpp"

namespace lsb {

Split hold_out(Split& from, double fraction, std::uint64_t seed, const std::string& name) {
  const std::int64_t n = from.size(), k = static_cast<std::int64_t>(n * fraction + 0.5);
  std::vector<std::int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  Rng rng(seed);
  for (std::int64_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[rng.below(static_cast<std::uint64_t>(i + 1))]);
  std::vector<char> take(n, 0);
  for (std::int64_t i = 0; i < k; ++i) take[idx[i]] = 1;
  Split out{name, from.path, {}, {}, {}}, keep{from.name, from.path, {}, {}, {}};
  for (std::int64_t i = 0; i < n; ++i) (take[i] ? out : keep).take(from, i);
  from = std::move(keep);
  return out;
}

}  // namespace lsb
