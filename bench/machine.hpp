// Facts about the machine that reports record: CPU model, cores, flags, and the measured fp32 peak.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

struct CpuInfo {
  std::string model;
  int cores = 0;                   // logical CPUs available to this process
  std::vector<std::string> flags;  // SIMD flags only (avx*, fma, ...)
};
CpuInfo cpu_info();

// The fp32 peak of `threads` threads, measured by a short FMA loop (independent chains, registers only)
// in 8 rounds, the best kept, never looked up in a table of CPU generations (about 0.2 s), with what says
// whether that figure can be trusted: how much CPU other processes took while it ran (from /proc/stat,
// less this process's own time), the load average before it, and the peak the CPU's vector width and
// clock imply. A figure taken on a busy machine is low, and every "% of peak" computed from it high.
struct PeakMeasurement {
  int threads = 0, rounds = 0;
  double best_gflops = 0, median_gflops = 0;
  double others_cpu = -1;     // CPUs' worth of time other processes ran during the rounds (-1: unknown)
  double load_average = -1;   // the 1-minute load average just before (-1: unknown)
  double nominal_gflops = 0;  // threads x floats per vector x 2 FMA pipes x 2 flops x clock (0: unknown)
  std::string warning;        // empty, or why best_gflops is not this machine's peak (one line)
  nlohmann::json to_json() const;
};
PeakMeasurement measure_peak(int threads);
// The warning rule alone: other processes took more than a quarter of a CPU, or the best round is below
// 40% of the nominal peak (the nominal figure assumes 2 full-width FMA pipes; CPUs that split 512-bit
// FMAs in two reach half of it), or the rounds vary by more than 30%.
std::string peak_warning(const PeakMeasurement& m);
// measure_peak(threads).best_gflops.
double measure_peak_gflops(int threads);

// Published dense peaks of a GPU, looked up by its name (NVIDIA's data sheets, SXM parts); 0 where
// the name is not in the table. fp32 on the CUDA cores; bf16 on tensor cores without sparsity.
struct GpuPeak {
  double fp32_tflops = 0, bf16_tflops = 0;
  std::string source;
};
GpuPeak gpu_peak(const std::string& name);
// What a GPU result's peak_fraction is taken against: the published fp32 peak, or for bf16 products the
// bf16 tensor-core peak (GFLOP/s; 0 for a GPU not in the table). On the CPU the measured fp32 FMA peak
// serves both precisions (oneDNN's bf16 kernels have no separately measured peak).
double gpu_peak_gflops(const std::string& name, bool bf16);
// How that peak was obtained, for the report ("fp32 FMA peak, measured", ...).
const char* peak_basis(bool gpu, bool bf16);

std::string host_name();
std::string os_name();
std::string compiler_name();
// Resident set peak of this process (VmHWM), and a reset of it where the kernel allows it.
std::int64_t physical_memory_bytes();  // the machine's RAM (sysconf)
std::int64_t peak_rss_bytes();
bool reset_peak_rss();

}  // namespace lsb
