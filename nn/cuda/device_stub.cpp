// Built when nvcc is not found: no CUDA at all.
#include <stdexcept>

#include "nn/cuda/device.hpp"

namespace lsb::cuda {
bool compiled() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() { return "this lsbench was built without CUDA (nvcc was not found at build time)"; }
DeviceInfo query(int) { throw std::runtime_error(unavailable_reason()); }
std::string cublas_problem() { return unavailable_reason(); }
std::string cublas_version() { return ""; }
std::string cudnn_problem() { return unavailable_reason(); }
std::string cudnn_version() { return ""; }
void* device_malloc(std::size_t) { return nullptr; }
void device_free(void*) {}
void copy(void*, const void*, std::size_t) { throw std::runtime_error(unavailable_reason()); }
void device_fill(float*, std::int64_t, float) { throw std::runtime_error(unavailable_reason()); }
void device_memset(void*, int, std::size_t) { throw std::runtime_error(unavailable_reason()); }
void synchronize() {}
void release_bf16_staging() {}
DriverMemory driver_memory() { return {}; }
EventTimer::EventTimer() { throw std::runtime_error(unavailable_reason()); }
EventTimer::~EventTimer() = default;
void EventTimer::start() {}
double EventTimer::stop_ms() { return 0; }
EventTimeline::~EventTimeline() = default;
void EventTimeline::reserve(std::size_t) { throw std::runtime_error(unavailable_reason()); }
void EventTimeline::mark() { throw std::runtime_error(unavailable_reason()); }
std::vector<double> EventTimeline::intervals_s() { return {}; }
}  // namespace lsb::cuda
