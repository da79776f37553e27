// CUDA runtime side of the allocator and the device query.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "nn/cuda/device.hpp"

namespace lsb::cuda {
namespace {
std::string version_str(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
}  // namespace

bool compiled() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  }
  return n == 0 ? "no CUDA device present" : "";
}

DeviceInfo query(int index) {
  if (device_count() <= index) throw std::runtime_error(unavailable_reason());
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) throw std::runtime_error("cudaGetDeviceProperties failed");
  DeviceInfo info;
  info.name = p.name;
  info.memory_bytes = static_cast<std::int64_t>(p.totalGlobalMem);
  info.sm_major = p.major;
  info.sm_minor = p.minor;
  info.multiprocessors = p.multiProcessorCount;
  int v = 0;
  cudaDriverGetVersion(&v);
  info.driver = version_str(v);
  cudaRuntimeGetVersion(&v);
  info.runtime = version_str(v);
  return info;
}

void* device_malloc(std::size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void device_free(void* p) { cudaFree(p); }

}  // namespace lsb::cuda
