#include "bench/context.hpp"

#include <chrono>
#include <ctime>

#include "bench/machine.hpp"
#include "nn/cuda/device.hpp"
#include "nn/matmul.hpp"
#include "reports/version.hpp"

namespace lsb {

nlohmann::json make_context(const ContextInputs& in) {
  using nlohmann::json;
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const CpuInfo cpu = cpu_info();
  json c = {
      {"tool_version", LSBENCH_VERSION},
      {"git_commit", git_commit()},
      {"command_line", in.command_line},
      {"started_at", when},
      {"host", host_name()},
      {"os", os_name()},
      {"compiler", compiler_name()},
      {"build_type", LSBENCH_BUILD_TYPE},
      {"cpu", {{"model", cpu.model}, {"cores", cpu.cores}, {"threads_used", in.threads.granted}, {"threads_requested", in.threads.requested},
              {"flags", cpu.flags}}},
      {"gpu", nullptr},
      {"libraries", {{"onednn", onednn_version()}}},
      {"shard", {{"index", 0}, {"count", 1}}},
  };
  if (!in.threads.why_fewer.empty()) c["cpu"]["threads_warning"] = in.threads.why_fewer;
  if (in.peak_gflops_fp32 > 0) c["cpu"]["peak_gflops_fp32"] = in.peak_gflops_fp32;
  if (in.peak_measurement.is_object()) c["cpu"]["peak_measurement"] = in.peak_measurement;
  if (const std::string v = cuda::cublas_version(); !v.empty()) c["libraries"]["cublas"] = v;
  if (cuda::device_count() > 0) {
    if (const std::string v = cuda::cudnn_version(); !v.empty()) c["libraries"]["cudnn"] = v;
    const auto g = cuda::query(0);
    c["gpu"] = {{"name", g.name}, {"driver", g.driver}, {"cuda_runtime", g.runtime}, {"memory_bytes", g.memory_bytes}};
    const GpuPeak pk = gpu_peak(g.name);
    c["gpu"]["peak_tflops"] = nlohmann::json::object();
    if (pk.fp32_tflops > 0)
      c["gpu"]["peak_tflops"] = {{"fp32", pk.fp32_tflops}, {"bf16", pk.bf16_tflops}, {"source", pk.source}};
  }
  return c;
}

}  // namespace lsb
