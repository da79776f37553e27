#include "nn/tensor.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"

namespace lsb {

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

std::int64_t numel_of(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s)
    if (__builtin_mul_overflow(n, d, &n))  // sizes come from options and files: never wrap around
      throw UsageError(fmt::format("a tensor of shape {} has more elements than a 64-bit count holds", shape_str(s)));
  return n;
}

Tensor::Storage::~Storage() { MemoryTracker::instance().release(ptr, bytes, dev, cat); }

Tensor::Tensor(Shape shape, MemCategory cat, const char* what, Device dev) : shape_(std::move(shape)) {
  for (auto d : shape_)
    if (d < 0) throw std::invalid_argument(fmt::format("{}: negative dimension in {}", what, shape_str(shape_)));
  const std::int64_t count = numel();
  if (count > (std::int64_t{1} << 60))  // 4 EiB of floats: beyond any memory, and safe from overflow below
    throw OutOfMemory(fmt::format("out of memory: {} asked for {} floats (shape {})", what, count, shape_str(shape_)),
                      std::numeric_limits<std::int64_t>::max());
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  auto st = std::make_shared<Storage>();
  // bytes is set only once the tracker has granted them: a refused request releases nothing.
  st->ptr = static_cast<float*>(MemoryTracker::instance().allocate(bytes, dev, cat, what));
  st->bytes = bytes;
  st->dev = dev;
  st->cat = cat;
  storage_ = std::move(st);
}

Tensor Tensor::zeros(Shape shape, MemCategory cat, const char* what, Device dev) {
  Tensor t(std::move(shape), cat, what, dev);
  t.zero();
  return t;
}

void Tensor::fill(float v) {
  float* p = data();
  if (storage_ && storage_->dev == Device::cuda) return cuda::device_fill(p, numel(), v);
  const std::int64_t n = numel();
  if (v == 0.0f)
    std::memset(p, 0, static_cast<std::size_t>(n) * sizeof(float));
  else
    std::fill(p, p + n, v);
}

Tensor Tensor::reshaped(Shape s) const {
  if (numel_of(s) != numel())
    throw std::invalid_argument(fmt::format("reshape {} -> {}", shape_str(shape_), shape_str(s)));
  Tensor t = *this;
  t.shape_ = std::move(s);
  return t;
}

void copy_elements(const Tensor& from, Tensor& to) {
  if (from.numel() != to.numel())
    throw std::invalid_argument(fmt::format("copy {} -> {}: element counts differ", shape_str(from.shape()),
                                            shape_str(to.shape())));
  if (from.device() == Device::cpu && to.device() == Device::cpu)
    std::memcpy(to.data(), from.data(), static_cast<std::size_t>(from.bytes()));
  else
    cuda::copy(to.data(), from.data(), static_cast<std::size_t>(from.bytes()));
}

void ensure(Tensor& t, const Shape& shape, MemCategory cat, const char* what, Device dev) {
  if (t.defined() && t.shape() == shape && t.category() == cat && t.device() == dev) return;
  t = Tensor();  // release first so the peak does not count old and new together
  t = Tensor(shape, cat, what, dev);
}

}  // namespace lsb
