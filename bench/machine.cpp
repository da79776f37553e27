#include "bench/machine.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <omp.h>

namespace lsb {

CpuInfo cpu_info() {
  CpuInfo c;
  c.cores = omp_get_num_procs();
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && c.model.empty()) c.model = value;
    if (key == "flags" && c.flags.empty()) {
      std::istringstream ss(value);
      std::set<std::string> keep;
      for (std::string fl; ss >> fl;)
        if (fl.rfind("avx", 0) == 0 || fl == "fma" || fl.rfind("amx", 0) == 0 || fl.rfind("sse4", 0) == 0)
          keep.insert(fl);
      c.flags.assign(keep.begin(), keep.end());
    }
  }
  if (c.model.empty()) c.model = "unknown";
  return c;
}

double measure_peak_gflops(int threads) {
  // 64-byte vectors: one AVX-512 register (two AVX2 registers where that is the widest).
  typedef float v16 __attribute__((vector_size(64)));
  constexpr int kChains = 12;         // enough independent FMAs to cover latency x throughput
  constexpr long kIters = 12'000'000;  // per thread: 12 * 16 * 2 * 1.2e7 = 4.6 GFLOP, ~25 ms per rep
  double best = 0;
  // Best of 8: on a shared or frequency-scaled machine single short runs vary by 30%.
  for (int rep = 0; rep < 8; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      v16 acc[kChains];
      v16 mul, add;
      for (int j = 0; j < 16; ++j) {
        mul[j] = 0.999999f;
        add[j] = 1e-7f * (omp_get_thread_num() + 1);
      }
      for (int c = 0; c < kChains; ++c) acc[c] = add * static_cast<float>(c);
      for (long i = 0; i < kIters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
      for (int c = 0; c < kChains; ++c)
        for (int j = 0; j < 16; ++j) sink += acc[c][j];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * 16 * kChains * kIters * threads;
    if (sink == 12345.0f) best += 0;  // keep the loop alive
    best = std::max(best, flops / s / 1e9);
  }
  return best;
}

std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string os_name() {
  struct utsname u {};
  uname(&u);
  std::ifstream f("/etc/os-release");
  std::string line, pretty;
  while (std::getline(f, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) pretty = line.substr(13, line.size() - 14);
  return fmt::format("{} (Linux {} {})", pretty.empty() ? "Linux" : pretty, u.release, u.machine);
}

std::string compiler_name() {
#if defined(__clang__)
  return fmt::format("clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  return fmt::format("gcc {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}

std::int64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

GpuPeak gpu_peak(const std::string& name) {
  struct Entry {
    const char* key;
    GpuPeak peak;
  };
  static const Entry table[] = {
      {"H200", {67.0, 989.4, "NVIDIA H200 data sheet (SXM)"}},
      {"H100", {67.0, 989.4, "NVIDIA H100 data sheet (SXM)"}},
      {"A100", {19.5, 312.0, "NVIDIA A100 data sheet"}},
  };
  for (const auto& e : table)
    if (name.find(e.key) != std::string::npos) return e.peak;
  return {};
}

double gpu_peak_gflops(const std::string& name, bool bf16) {
  const GpuPeak p = gpu_peak(name);
  return 1e3 * (bf16 ? p.bf16_tflops : p.fp32_tflops);
}

const char* peak_basis(bool gpu, bool bf16) {
  if (!gpu) return "fp32 FMA peak, measured";
  return bf16 ? "bf16 tensor-core peak, published" : "fp32 peak, published";
}

}  // namespace lsb
