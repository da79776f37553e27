// CUDA runtime side of the allocator and the device query.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "nn/cuda/check.cuh"
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

void copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes) LSB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

namespace {
__global__ void fill_kernel(float* p, std::int64_t count, float value) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    p[i] = value;
}
}  // namespace

void device_fill(float* p, std::int64_t count, float value) {
  if (count <= 0) return;
  if (value == 0.0f) return device_memset(p, 0, static_cast<std::size_t>(count) * sizeof(float));
  const unsigned blocks = LSB_BLOCKS(count, 256) < 4096u ? LSB_BLOCKS(count, 256) : 4096u;
  fill_kernel<<<blocks, 256>>>(p, count, value);
  LSB_CUDA_LAUNCHED();
}

void device_memset(void* p, int byte, std::size_t bytes) {
  if (bytes) LSB_CUDA_CHECK(cudaMemset(p, byte, bytes));
}

void synchronize() { LSB_CUDA_CHECK(cudaDeviceSynchronize()); }

DriverMemory driver_memory() {
  std::size_t free = 0, total = 0;
  LSB_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return {static_cast<std::int64_t>(free), static_cast<std::int64_t>(total)};
}

EventTimer::EventTimer() {
  cudaEvent_t a, b;
  LSB_CUDA_CHECK(cudaEventCreate(&a));
  LSB_CUDA_CHECK(cudaEventCreate(&b));
  begin_ = a;
  end_ = b;
}

EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  cudaEventDestroy(static_cast<cudaEvent_t>(end_));
}

void EventTimer::start() { LSB_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(begin_))); }

double EventTimer::stop_ms() {
  LSB_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(end_)));
  LSB_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)));
  float ms = 0;
  LSB_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)));
  return ms;
}

EventTimeline::~EventTimeline() {
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void EventTimeline::reserve(std::size_t marks) {
  while (events_.size() < marks) {
    cudaEvent_t e;
    LSB_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
}

void EventTimeline::mark() {
  if (used_ == events_.size()) {
    cudaEvent_t e;
    LSB_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  LSB_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[used_++])));
}

std::vector<double> EventTimeline::intervals_s() {
  std::vector<double> out;
  if (used_ > 0) LSB_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[used_ - 1])));
  for (std::size_t i = 1; i < used_; ++i) {
    float ms = 0;
    LSB_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(events_[i - 1]),
                                        static_cast<cudaEvent_t>(events_[i])));
    out.push_back(ms / 1e3);
  }
  used_ = 0;
  return out;
}

}  // namespace lsb::cuda
