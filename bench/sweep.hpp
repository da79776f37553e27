// `lsbench sweep`, `lsbench maxlen` and `lsbench merge` (../shared/spec/measurement.md): a sweep is
// the cartesian product of its axes, a list of independent points in one canonical order; each point
// is measured alone and written to the report as soon as it finishes (with a journal next to it), so
// a killed sweep resumes without redoing finished points, and `--shard i/N` runs every N-th point.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/sweep_axes.hpp"

namespace lsb {

// Runs the sweep (or lists it); returns the exit code: 0 all ok or skipped, 4 some point out of
// memory, 5 some point failed its check or errored.
int run_sweep(const SweepOptions& o);

struct MaxlenOptions {
  std::vector<VariantSpec> variants;
  std::string mode = "train-step", task;
  bool causal = false;  // the variants' causal forms (set on each spec too)
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  ByteSize memory_budget;
  std::int64_t batch = 8, dim = 64, heads = 2, layers = 2, mlp_dim = 0, granule = 256;
  std::int64_t n_limit = std::int64_t(1) << 24;  // stop doubling here
  int threads = 0;
  std::uint64_t seed = 1;
  std::string out;
  std::vector<std::string> command_line;
};
// The longest n (a multiple of the granule) whose point fits the budget, per variant: double from the
// granule until a point runs out of memory, then bisect. Prints each variant's n and its ratio to
// the baseline's (full) when it is among them. Returns 0, or 2 for a missing budget.
int run_maxlen(const MaxlenOptions& o);

// Joins reports: results deduplicated by id (the first kept), the same schema version required,
// every input's context kept under context.merged_from. InputError naming the file on bad input.
int run_merge(const std::vector<std::string>& inputs, const std::string& out);

}  // namespace lsb
