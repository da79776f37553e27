// Built when nvcc is not found: no CUDA at all.
#include <stdexcept>

#include "nn/cuda/device.hpp"

namespace lsb::cuda {
bool compiled() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() { return "this lsbench was built without CUDA (nvcc was not found at build time)"; }
DeviceInfo query(int) { throw std::runtime_error(unavailable_reason()); }
void* device_malloc(std::size_t) { return nullptr; }
void device_free(void*) {}
}  // namespace lsb::cuda
