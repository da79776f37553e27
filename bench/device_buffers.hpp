// Host vectors on a module's device for one call: plain pointers on the CPU, tracked device copies
// (category data, freed with this object) on CUDA. For the drivers that feed host arrays to a module.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/cuda/device.hpp"
#include "nn/tensor.hpp"

namespace lsb {

class DeviceBuffers {
 public:
  explicit DeviceBuffers(Device dev) : dev_(dev) {}
  // A device copy of host data (or the host pointer itself on the CPU).
  template <typename T>
  T* on_device(std::vector<T>& host, const char* what) {
    if (dev_ == Device::cpu) return host.data();
    const auto bytes = static_cast<std::int64_t>(host.size() * sizeof(T));
    keep_.emplace_back(Shape{(bytes + 3) / 4}, MemCategory::data, what, Device::cuda);
    cuda::copy(keep_.back().data(), host.data(), static_cast<std::size_t>(bytes));
    return reinterpret_cast<T*>(keep_.back().data());
  }
  // Copies device results back into `host` (no-op on the CPU).
  template <typename T>
  void to_host(const T* device_ptr, std::vector<T>& host) {
    if (dev_ == Device::cuda) cuda::copy(host.data(), device_ptr, host.size() * sizeof(T));
  }

 private:
  Device dev_;
  std::vector<Tensor> keep_;
};

}  // namespace lsb
