// The CUDA side of the allocator and the device query. Built from device.cu when nvcc is found
// (LSBENCH_CUDA), else from device_stub.cpp; either way the program runs on a machine without a GPU
// and says so when asked for one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/errors.hpp"

namespace lsb::cuda {

struct DeviceInfo {
  std::string name;
  std::int64_t memory_bytes = 0;
  int sm_major = 0, sm_minor = 0, multiprocessors = 0;
  std::string driver, runtime;
};

bool compiled();         // the binary was built with CUDA
int device_count();      // 0 when not compiled or no device/driver
// Throws std::runtime_error with the reason when no device can be used.
DeviceInfo query(int index = 0);
// Why device_count() is 0 ("built without CUDA", "no CUDA device: <driver message>").
std::string unavailable_reason();
// Why cuBLAS cannot be used ("" when it can). It is opened here on first use (nn/cuda/blas.cu), not linked,
// so that every CPU command starts without the CUDA libraries.
std::string cublas_problem();
// UsageError "--device cuda: <why>" when no device can be used (a build without CUDA or without cuBLAS
// on the loader's path included): the one check every command makes before it allocates or loads
// anything for the GPU.
inline void require_device() {
  if (device_count() == 0) throw UsageError("--device cuda: " + unavailable_reason());
  if (const std::string why = cublas_problem(); !why.empty()) throw UsageError("--device cuda: " + why);
}
// cuBLAS's version ("13.0.2") where a GPU is present; "" where none is (cuBLAS is then not opened), where it
// cannot be opened, and when not built with CUDA.
std::string cublas_version();
// Why cuDNN cannot be used ("" when it can: the `cudnn` variant), and its version ("9.19.0") when it can.
// Opened with dlopen on the first call (nn/cuda/cudnn.cpp), never linked.
std::string cudnn_problem();
std::string cudnn_version();
void* device_malloc(std::size_t bytes);  // nullptr on failure
void device_free(void* p);

// Copies and fills on the default stream; each throws std::runtime_error naming the CUDA error
// (including one left behind by an earlier kernel).
// Either direction, host or device pointers (unified addressing tells which).
void copy(void* dst, const void* src, std::size_t bytes);
void device_fill(float* p, std::int64_t count, float value);
void device_memset(void* p, int byte, std::size_t bytes);
// Waits for all queued work; throws if any of it failed.
void synchronize();
// Frees cuda::gemm's bf16 staging buffers (nn/cuda/blas.cu; PrecisionScope calls it when a run leaves
// bf16). Declared here, below the products, so that nn/matmul does not include the GPU products that
// include it.
void release_bf16_staging();
// The driver's view of the device: bytes free and total (cudaMemGetInfo).
struct DriverMemory {
  std::int64_t free = 0, total = 0;
};
DriverMemory driver_memory();

// Times work queued on the default stream between start() and stop_ms() with CUDA events
// (stop_ms synchronises on the end event).
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  double stop_ms();

 private:
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

// Boundaries on the default stream's timeline: mark() records an event (from a pool that grows as
// needed); intervals_s() synchronises on the last one and returns the seconds between each pair of
// consecutive marks, then starts over.
class EventTimeline {
 public:
  EventTimeline() = default;
  ~EventTimeline();
  EventTimeline(const EventTimeline&) = delete;
  EventTimeline& operator=(const EventTimeline&) = delete;
  void reserve(std::size_t marks);  // creates the events of that many marks now
  void mark();
  std::vector<double> intervals_s();

 private:
  std::vector<void*> events_;
  std::size_t used_ = 0;
};

}  // namespace lsb::cuda
