// `lsbench attention bench` and `lsbench attention run`: drivers behind the CLI (bench/cli.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attention_impls/registry.hpp"
#include "bench/timing.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"

namespace lsb {

struct AttentionBenchOptions {
  std::vector<VariantSpec> variants{VariantSpec::parse(headline_variant().name)};
  std::vector<std::int64_t> lengths{1024};
  std::int64_t batch = 8, dim = 64, heads = 2;
  std::string mode = "fwd";  // fwd | fwdbwd
  bool causal = false;       // every variant's causal form
  Device device = Device::cpu;
  Precision precision = Precision::fp32;  // of the products (fp32 accumulation)
  int threads = 0;           // 0 = OpenMP default
  ByteSize memory_budget;  // empty = none
  std::string json_path;      // "" = no report file
  TimingPolicy timing;
  std::uint64_t seed = 1;
  std::vector<std::string> command_line;
};

// Runs every (variant, length) point; prints a table; writes the report after every point. Returns
// the exit code: 0 all ok; 5 a variant failed its correctness check (it is not timed); 4 some point
// ran out of the memory budget (recorded as status oom; the other points still ran).
int run_attention_bench(const AttentionBenchOptions& opt);

// Result of checking a variant on a small copy (b = 2, short n, with padding) against the float64
// reference: forward relative error, and for fwdbwd the relative error of directional derivatives
// (input and all parameters) against central differences of the reference. Tolerances: 1e-4 forward
// and 1e-3 gradient in fp32; in bf16 the bf16 rule of docs/VARIANTS.md, 2^-5 for both.
struct ReferenceCheck {
  bool ok = false;
  double forward_rel_error = 0;
  double grad_rel_error = -1;  // -1: not checked
  std::string message;
};
// On Device::cuda the module runs on the GPU with the parameters of a CPU module of the same seed.
ReferenceCheck check_against_reference(const VariantSpec& spec, std::int64_t dim, std::int64_t heads,
                                       bool with_backward, std::uint64_t seed, Device device = Device::cpu,
                                       Precision precision = Precision::fp32);

// Refuses (UsageError naming the options) a problem too large for any machine and for the 64-bit size
// arithmetic of the memory model: b*n*D above 2^50 elements or b*h*n^2 (full attention's scores) above
// 2^60. Below that a point that does not fit is measured as out of memory, as it should be.
void check_problem_size(std::int64_t batch, std::int64_t n, std::int64_t dim, std::int64_t heads);

// One point of the attention module alone (modes attn-fwd, attn-fwdbwd).
struct AttentionPoint {
  VariantSpec spec;
  std::int64_t n = 0, batch = 1, dim = 64, heads = 2;
  bool backward = false;
  Device device = Device::cpu;
  int threads = 1;  // recorded in the config (the caller sets OpenMP's)
  std::uint64_t seed = 1;
  Precision precision = Precision::fp32;
};
// The point's config block (module: the made module, for resolved parameters and padded_n; null
// when it could not be made).
nlohmann::json attention_point_config(const AttentionPoint& pt, const Attention* module);
// Times the point and measures its memory; `check` must come from check_against_reference for the
// same variant, dim, heads, mode and device (a failed check gives status error, not timed). Returns
// the report result (status ok, oom or error); OutOfMemory becomes status oom with the request.
nlohmann::json measure_attention_point(const AttentionPoint& pt, const ReferenceCheck& check,
                                       const TimingPolicy& timing, double peak_gflops);

struct AttentionRunOptions {
  VariantSpec variant;
  std::string weights_dir, input, mask, output, grad_output, grads_dir;
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  std::int64_t heads = 0;
  int threads = 0;
};
int run_attention_interop(const AttentionRunOptions& opt);

}  // namespace lsb
