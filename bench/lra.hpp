// `lsbench lra`: the Long Range Arena suite in one command. For every task x variant a training run
// with the preset's recipe (data generated where it is missing and reused where present), plus an
// efficiency sweep in the shape of LRA Table 2 (byte-level text, train steps per second and peak
// memory over lengths), all in one report, and a Markdown summary with the accuracy table (Table 1
// shape) and the efficiency table (Table 2 shape) beside the published numbers of
// ../shared/spec/lra.md. The report is rewritten after every finished run; `--resume` keeps the
// finished runs and continues an interrupted one from its checkpoint.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "attention_impls/attention.hpp"
#include "bench/timing.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"

namespace lsb {

struct LraOptions {
  std::string preset = "smoke";  // smoke | lra-small
  std::vector<std::string> tasks;  // empty: the suite's (the tasks whose record has lra_suite)
  std::vector<VariantSpec> variants;  // empty: the preset's list (lra_default_variants)
  std::string data_dir;               // generated data goes here; official layouts are read from here
  std::string archives;               // folder with the shipped archives (../shared/data), "" = none
  std::string out;                    // the report; the summary goes to OUT.md unless `summary` is set
  std::string summary;
  bool resume = false, progress = true, efficiency = true;
  std::vector<std::int64_t> efficiency_lengths;  // empty: the preset's
  std::int64_t efficiency_batch = 0;             // 0: the preset's
  ByteSize memory_budget;  // on the device; "": smoke 4GiB (Path-X full is an oom), lra-small 80% of RAM (CPU)
  int threads = 0;
  Device device = Device::cpu;             // of every run and of the efficiency sweep
  Precision precision = Precision::fp32;  // likewise
  std::uint64_t seed = 0;
  std::vector<std::string> command_line;
};

// The variants of a preset: the spec's defaults, full, linformer:k=256, sliding:R=64, ls:w=8,r=32.
std::vector<VariantSpec> lra_default_variants(const std::string& preset);

// Returns the exit code: 0 when every run finished or was skipped for missing data, 4 when some ran
// out of memory, 5 when some failed, 6 when some diverged (the report keeps them all).
int run_lra(const LraOptions& options);

}  // namespace lsb
