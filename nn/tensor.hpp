// A dense fp32 tensor backed by the tracking allocator. Row-major, contiguous; views into it are
// expressed as MatRef (nn/matmul.hpp) or raw pointers with strides, never as hidden copies.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "nn/memory.hpp"

namespace lsb {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& s);
std::int64_t numel_of(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  // Allocates (uninitialised) from the tracker; `what` names the buffer in out-of-memory errors.
  Tensor(Shape shape, MemCategory cat, const char* what, Device dev = Device::cpu);
  static Tensor zeros(Shape shape, MemCategory cat, const char* what, Device dev = Device::cpu);

  float* data() { return storage_ ? storage_->ptr : nullptr; }
  const float* data() const { return storage_ ? storage_->ptr : nullptr; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return numel_of(shape_); }
  std::int64_t bytes() const { return numel() * static_cast<std::int64_t>(sizeof(float)); }
  bool defined() const { return storage_ != nullptr; }
  MemCategory category() const { return storage_ ? storage_->cat : MemCategory::workspace; }
  Device device() const { return storage_ ? storage_->dev : Device::cpu; }
  float& operator[](std::int64_t i) { return storage_->ptr[i]; }
  float operator[](std::int64_t i) const { return storage_->ptr[i]; }

  void fill(float v);  // on either device
  void zero() { fill(0.0f); }
  // Same element count, new shape (shares storage).
  Tensor reshaped(Shape s) const;

 private:
  struct Storage {
    float* ptr = nullptr;
    std::size_t bytes = 0;
    Device dev = Device::cpu;
    MemCategory cat = MemCategory::workspace;
    ~Storage();
  };
  std::shared_ptr<Storage> storage_;
  Shape shape_;
};

// Copies the elements of `from` into `to` (same element count), across devices when they differ.
void copy_elements(const Tensor& from, Tensor& to);

// Keeps `t` allocated with `shape`, reallocating only when the shape changes: modules hold their
// saved activations and workspaces this way so that nothing is allocated per call after warm-up.
void ensure(Tensor& t, const Shape& shape, MemCategory cat, const char* what, Device dev = Device::cpu);

}  // namespace lsb
