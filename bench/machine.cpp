#include "bench/machine.hpp"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
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

namespace {

// Non-idle time of every CPU since boot, in seconds (/proc/stat's first line; steal counts: a
// hypervisor's other guests contend too); -1 where it cannot be read.
double busy_cpu_seconds() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(f >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return -1;
  return (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double own_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double load_average_1m() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  return f >> l ? l : -1;
}

// The clock /proc/cpuinfo reports for the first CPU, in GHz (0 if none).
double clock_ghz() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("cpu MHz", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return std::atof(line.c_str() + colon + 1) / 1000.0;
    }
  return 0;
}

}  // namespace

nlohmann::json PeakMeasurement::to_json() const {
  nlohmann::json j = {{"threads", threads},     {"rounds", rounds},           {"best_gflops", best_gflops},
                      {"median_gflops", median_gflops}, {"others_cpu", others_cpu}, {"load_average_1m", load_average},
                      {"nominal_gflops", nominal_gflops}, {"method", "FMA loop, best of the rounds"}};
  if (!warning.empty()) j["warning"] = warning;
  return j;
}

std::string peak_warning(const PeakMeasurement& m) {
  std::vector<std::string> why;
  if (m.others_cpu > 0.25)
    why.push_back(fmt::format("other processes took {:.1f} CPUs while it ran (load average {:.1f})", m.others_cpu,
                              m.load_average));
  if (m.nominal_gflops > 0 && m.best_gflops < 0.4 * m.nominal_gflops)
    why.push_back(fmt::format("it is {:.0f}% of the {:.0f} GFLOP/s the vectors this build and CPU share and the clock imply",
                              100.0 * m.best_gflops / m.nominal_gflops, m.nominal_gflops));
  if (m.median_gflops > 0 && m.best_gflops > 1.3 * m.median_gflops)
    why.push_back(fmt::format("its rounds varied from {:.0f} (median) to {:.0f} GFLOP/s", m.median_gflops, m.best_gflops));
  if (why.empty()) return "";
  return fmt::format("the measured fp32 peak ({:.0f} GFLOP/s on {} threads) is not trustworthy: {}; every % of peak "
                     "is inflated by as much",
                     m.best_gflops, m.threads, fmt::join(why, "; "));
}

PeakMeasurement measure_peak(int threads) {
  // The widest vectors the build targets, and as many independent FMA chains as fit in its registers
  // with the two operands (32 AVX-512 registers; 16 for AVX2, where 12 chains of two registers each
  // spilled to the stack and measured a tenth of the peak).
#if defined(__AVX512F__)
  constexpr int kLanes = 16, kChains = 12;
#else
  constexpr int kLanes = 8, kChains = 10;
#endif
  typedef float vec __attribute__((vector_size(4 * kLanes)));
  constexpr long kIters = 12'000'000 * 16 / kLanes;  // per thread: 2 * 16 * 12 * 1.2e7 = 4.6 GFLOP (AVX-512)
  constexpr int kRounds = 8;           // best of 8: on a shared or frequency-scaled machine single runs vary
  PeakMeasurement m;
  m.threads = threads, m.rounds = kRounds, m.load_average = load_average_1m();
  const double busy0 = busy_cpu_seconds(), own0 = own_cpu_seconds();
  const auto wall0 = std::chrono::steady_clock::now();
  std::vector<double> rates;
  for (int rep = 0; rep < kRounds; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      vec acc[kChains];
      vec mul, add;
      for (int j = 0; j < kLanes; ++j) {
        mul[j] = 0.999999f;
        add[j] = 1e-7f * (omp_get_thread_num() + 1);
      }
      for (int c = 0; c < kChains; ++c) acc[c] = add * static_cast<float>(c);
      for (long i = 0; i < kIters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
      for (int c = 0; c < kChains; ++c)
        for (int j = 0; j < kLanes; ++j) sink += acc[c][j];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * kLanes * kChains * kIters * threads;
    if (sink == 12345.0f) rates.push_back(0);  // keep the loop alive
    rates.push_back(flops / s / 1e9);
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double busy1 = busy_cpu_seconds(), own1 = own_cpu_seconds();
  if (busy0 >= 0 && busy1 >= 0 && wall > 0) m.others_cpu = std::max(0.0, (busy1 - busy0 - (own1 - own0)) / wall);
  std::sort(rates.begin(), rates.end());
  m.best_gflops = rates.back();
  m.median_gflops = rates[rates.size() / 2];
  const CpuInfo c = cpu_info();
  auto has = [&](const char* f) { return std::find(c.flags.begin(), c.flags.end(), f) != c.flags.end(); };
  // The vectors both the CPU and this build have: an AVX2 build on an AVX-512 CPU is held to 8 lanes
  // (judged against 16 it read as half the nominal peak, near the warning's line, on an idle machine).
  const int floats = std::min(kLanes, has("avx512f") ? 16 : has("avx2") || has("avx") ? 8 : 4);
  m.nominal_gflops = threads * floats * 2.0 * (has("fma") || floats == 16 ? 2.0 : 1.0) * clock_ghz();
  m.warning = peak_warning(m);
  return m;
}

double measure_peak_gflops(int threads) { return measure_peak(threads).best_gflops; }

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

std::int64_t physical_memory_bytes() {
  return static_cast<std::int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<std::int64_t>(sysconf(_SC_PAGE_SIZE));
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
