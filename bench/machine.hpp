// Facts about the machine that reports record: CPU model, cores, flags, and the measured fp32 peak.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lsb {

struct CpuInfo {
  std::string model;
  int cores = 0;                   // logical CPUs available to this process
  std::vector<std::string> flags;  // SIMD flags only (avx*, fma, ...)
};
CpuInfo cpu_info();

// fp32 GFLOP/s of a short FMA loop on `threads` threads (independent chains, registers only):
// the machine's measured peak (best of 8 runs), never a table of CPU generations. About 0.2 s.
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
std::int64_t peak_rss_bytes();
bool reset_peak_rss();

}  // namespace lsb
