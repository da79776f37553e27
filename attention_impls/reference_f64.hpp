// An independent float64 reference of every variant, written as naive loops straight from
// ../shared/spec/attention.md (it shares no code with the fp32 implementations). Used by the tests
// and by `lsbench attention bench`, which refuses to time a variant that disagrees with it.
//
// Each variant's reference lives in the variant's own file (its record's reference_core or
// reference_module, attention_impls/registry.hpp); this file holds the part they share: the Q/K/V/O
// projections around a core, and the small float64 helpers below.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "attention_impls/attention.hpp"

namespace lsb {

using RefParams = std::map<std::string, std::vector<double>>;

// The module's parameters as float64 copies.
RefParams params_f64(Attention& a);

struct ErrorStats {
  double max_abs = 0, max_rel = 0;  // max |a - r| and max |a - r| / (|r| + scale), scale = rms(r)
};
ErrorStats compare_to_reference(const float* got, const std::vector<double>& ref);

namespace ref {

using Mat = std::vector<double>;  // row-major
using Keys = std::map<std::string, std::string>;

// y (rows, out) = x (rows, in) W^T + b, W (out, in)
Mat linear(const Mat& x, std::int64_t rows, std::int64_t in, const Mat& W, const Mat& b, std::int64_t out);
// LayerNorm over the last axis of x (rows, D), eps 1e-5.
Mat layernorm(const Mat& x, std::int64_t rows, std::int64_t D, const Mat& g, const Mat& b);
// Softmax over the listed scores; entries with valid = false get 0. All invalid: all 0.
std::vector<double> softmax(const std::vector<double>& s, const std::vector<bool>& valid);
std::int64_t key_int(const Keys& keys, const char* key);

// What a variant's core sees of one batch element bi of a Q/K/V/O module.
struct CoreInput {
  const Keys& keys;
  const RefParams& P;
  std::int64_t D, h, d, n, bi;
  const Mat &X, &Q, &K, &V;  // (n, D); Q already divided by sqrt(d); heads are column slices of width d
  const std::uint8_t* m;     // (n), 1 = real
  const ProbDropout& drop;
  bool causal = false;       // query t sees keys u <= t only

  // Query t of head i attends to the nk rows of Kr, Vr ((nk, D), the valid ones only): C[t, head i] +=
  // softmax(Q_t . Kr_u) Vr_u. With dropout, probability u is multiplied by the factor of key key_id(u)
  // in a key space of `space` keys (prob_dropout.hpp).
  void attend(Mat& C, std::int64_t i, std::int64_t t, const Mat& Kr, const Mat& Vr, std::int64_t nk,
              const std::vector<bool>& valid, std::int64_t space,
              const std::function<std::int64_t(std::int64_t)>& key_id) const;
};
// Writes the context C (n, D) of one batch element (zero on entry; padded query rows are zeroed after).
using Core = void (*)(const CoreInput& in, Mat& C);
// A whole module that is not Q/K/V/O around a core: y (b, n, D).
using Module = std::vector<double> (*)(const Keys& keys, std::int64_t D, std::int64_t h, std::int64_t b,
                                       std::int64_t n, const RefParams& P, const std::vector<double>& x,
                                       const std::vector<std::uint8_t>& mask, const ProbDropout& drop, bool causal);

// Softmax attention of every query over the real keys within R positions of it (R >= n: all of them);
// causal: the real keys u in [t - R, t].
void band_core(const CoreInput& in, Mat& C, std::int64_t R);

// y (b, n, D) of the Q/K/V/O module around `core`, with the parameters wq, bq, ..., wo, bo of P.
std::vector<double> projected(Core core, const Keys& keys, std::int64_t D, std::int64_t h, std::int64_t b,
                              std::int64_t n, const RefParams& P, const std::vector<double>& x,
                              const std::vector<std::uint8_t>& mask, const ProbDropout& drop, bool causal = false);

}  // namespace ref
}  // namespace lsb
