// Shared fixtures for the tests: small random problems with padding, and float64 helpers.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "attention_impls/attention.hpp"
#include "attention_impls/reference_f64.hpp"
#include "nn/random.hpp"

namespace lsb::test {

struct Problem {
  std::int64_t b, n, D, h;
  std::vector<float> x;
  std::vector<std::uint8_t> mask;
};

// x ~ N(0, 1); the second example (if any) ends in `pad` padded tokens.
inline Problem make_problem(std::int64_t b, std::int64_t n, std::int64_t D, std::int64_t h, std::int64_t pad,
                            std::uint64_t seed) {
  Problem p{b, n, D, h, std::vector<float>(b * n * D), std::vector<std::uint8_t>(b * n, 1)};
  Rng rng(seed);
  for (auto& v : p.x) v = static_cast<float>(rng.normal());
  if (b > 1)
    for (std::int64_t t = n - pad; t < n; ++t) p.mask[n + t] = 0;
  return p;
}

// Random parameters, LayerNorm ones included (so that their gradients are exercised).
inline void randomize(Attention& a, std::uint64_t seed) {
  a.init_params(seed);
  Rng rng(seed + 99);
  for (auto& p : a.params())
    if (p.name.rfind("ln_", 0) == 0)
      for (std::int64_t i = 0; i < p.value.numel(); ++i)
        p.value[i] = static_cast<float>((p.name.find("weight") != std::string::npos ? 1.0 : 0.0) + 0.3 * rng.normal());
}

// An empty directory of the test's own under the system's temporary directory.
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("lsbench_test_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// A whole file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::vector<double> to_f64(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// max |a - b| / max(max |b|, floor): the floor keeps gradients that are exactly 0 in exact
// arithmetic (e.g. d bk: softmax ignores a shift shared by all keys) from comparing round-off.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b, double floor = 0) {
  double scale = floor, m = 0;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m / (scale + 1e-30);
}

}  // namespace lsb::test
