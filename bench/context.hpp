// The context block of every report this run writes (../shared/spec/measurement.md): what was run
// where. Made here, where the machine facts are (bench/machine.hpp, the GPU query), and handed to
// reports/, which only writes and reads it.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/threads.hpp"

namespace lsb {

struct ContextInputs {
  std::vector<std::string> command_line;
  ThreadGrant threads = current_threads();  // the threads asked for and used (nn/threads.hpp)
  double peak_gflops_fp32 = 0;  // measured; 0 = not measured (omitted)
  nlohmann::json peak_measurement = nullptr;  // PeakMeasurement::to_json() where it was measured; null = none
};

// Tool version and commit, time, host, OS, compiler, build, CPU (and its measured peak), the GPU where
// one is present, library versions; the shard fields start as 0 of 1.
nlohmann::json make_context(const ContextInputs& in);

}  // namespace lsb
