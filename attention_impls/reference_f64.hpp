// An independent float64 reference of every variant, written as naive loops straight from
// ../shared/spec/attention.md (it shares no code with the fp32 implementations). Used by the tests
// and by `lsbench attention bench`, which refuses to time a variant that disagrees with it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "attention_impls/attention.hpp"

namespace lsb {

using RefParams = std::map<std::string, std::vector<double>>;

// The module's parameters as float64 copies.
RefParams params_f64(Attention& a);

// y (b, n, D) in float64 for variant `name` with resolved spec keys `keys`; mask (b, n), 1 = real; with
// dropout on the attention probabilities where the variant has it (not performer, nystromformer).
std::vector<double> reference_attention(const std::string& name, const std::map<std::string, std::string>& keys,
                                        std::int64_t D, std::int64_t h, std::int64_t b, std::int64_t n,
                                        const RefParams& params, const std::vector<double>& x,
                                        const std::vector<std::uint8_t>& mask, const ProbDropout& drop = {});

struct ErrorStats {
  double max_abs = 0, max_rel = 0;  // max |a - r| and max |a - r| / (|r| + scale), scale = rms(r)
};
ErrorStats compare_to_reference(const float* got, const std::vector<double>& ref);

}  // namespace lsb
