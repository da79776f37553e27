// The CUDA side of the allocator and the device query. Built from device.cu when nvcc is found
// (LSBENCH_CUDA), else from device_stub.cpp; either way the program runs on a machine without a GPU
// and says so when asked for one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

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
void* device_malloc(std::size_t bytes);  // nullptr on failure
void device_free(void* p);

}  // namespace lsb::cuda
