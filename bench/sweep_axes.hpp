// The axes and points of a sweep (../shared/spec/measurement.md): its options, the canonical list of
// points they make, each point's repro command, and the parsers of the axes' text. Below the runner
// (bench/sweep_points.hpp) and the drivers that use it (bench/sweep.hpp: sweep, maxlen; attention bench).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attention_impls/attention.hpp"
#include "bench/timing.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"

namespace lsb {

struct SweepOptions {
  std::vector<VariantSpec> variants;  // empty = every variant with its defaults
  std::string variants_option = "--variants";  // the option they came from, for usage errors
  std::vector<std::int64_t> lengths{1024, 2048, 4096};
  std::vector<std::int64_t> batches{8}, dims{64}, heads{2}, layers{2};
  std::int64_t mlp_dim = 0;  // model modes; 0 = 2 * dim
  std::vector<std::string> modes{"attn-fwdbwd"};  // attn-fwd | attn-fwdbwd | model-fwd | train-step
  std::string task;                                // "" or listops | text | image (vocab, classes, length)
  std::vector<Device> devices{Device::cpu};
  std::vector<Precision> precisions{Precision::fp32};
  std::vector<int> threads{0};                     // 0 = OpenMP's default
  std::vector<bool> causal{false};                 // --causal off,on: each variant bidirectional and/or causal
  ByteSize memory_budget;                          // empty = none
  TimingPolicy timing;
  std::uint64_t seed = 1;
  std::string out;  // report path ("" = print only)
  bool resume = false, list = false, progress = true;
  int shard_index = 0, shard_count = 1;
  std::vector<std::string> command_line;
};

// "full,flash,ls:w=8,r=32" -> {"full", "flash", "ls:w=8,r=32"}: a piece with '=' but no ':' continues
// the previous spec's keys.
// With `option`: an empty list, an empty item or an item given twice is a UsageError naming it.
std::vector<std::string> split_variant_list(const std::string& text, const std::string& option = "");
// "1024:32768:x2" (doubling), "1024:4096:+1024" (steps) or "1024,2048,4096". UsageError names `option`.
std::vector<std::int64_t> parse_length_list(const std::string& text, const std::string& option);
// "i/N" with 0 <= i < N. UsageError names the option.
std::pair<int, int> parse_shard(const std::string& text);
// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (task ids as Slurm numbers them, from
// SLURM_ARRAY_TASK_MIN): true when set.
bool shard_from_slurm(int& index, int& count);

struct SweepPoint {
  VariantSpec variant;  // its text as given names the point (ids, repro lines); variant.causal: --causal on
  std::int64_t n = 0, batch = 0, dim = 0, heads = 0, layers = 0, mlp_dim = 0;
  std::string mode, task;
  Device device = Device::cpu;
  int threads = 0;
  Precision precision = Precision::fp32;
  std::uint64_t seed = 1;
  ByteSize memory_budget;  // empty = none
  // The command that reruns just this point: every option that changes its result (seed and budget
  // included; options at their defaults left out), so that it gets the same config id.
  std::string command() const;
};

// Every point of the sweep in canonical order (mode, device, precision, threads, variant, batch, dim,
// heads, layers, n), before sharding.
std::vector<SweepPoint> sweep_points(const SweepOptions& o);

}  // namespace lsb
