#include "nn/memory.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "nn/caching_allocator.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"

namespace lsb {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& text, const std::string& option) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda") return Device::cuda;
  throw UsageError(fmt::format("{} {}: expected cpu or cuda", option, text));
}

const char* category_name(MemCategory c) {
  static const char* names[] = {"parameters", "gradients", "optimizer", "activations", "workspace", "data"};
  return names[static_cast<int>(c)];
}

namespace {
// Never destroyed: tensors with static storage may release into it during exit.
CachingAllocator& cuda_cache() {
  static auto* cache = new CachingAllocator([](std::size_t bytes) { return cuda::device_malloc(bytes); },
                                            [](void* p) { cuda::device_free(p); });
  return *cache;
}
}  // namespace

MemoryTracker& MemoryTracker::instance() {
  static MemoryTracker t;
  return t;
}

void* MemoryTracker::allocate(std::size_t bytes, Device dev, MemCategory cat, const char* what) {
  const int d = static_cast<int>(dev);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& s = stats_[d];
    if (budget_[d] > 0 && s.live + static_cast<std::int64_t>(bytes) > budget_[d]) {
      throw OutOfMemory(fmt::format("out of memory: {} ({}, {}) asked for {} with {} live, budget {}", what,
                                    device_name(dev), category_name(cat), format_bytes(bytes),
                                    format_bytes(s.live), format_bytes(budget_[d])),
                        static_cast<std::int64_t>(bytes), budget_[d]);
    }
  }
  void* p = nullptr;
  if (bytes > 0) {
    if (dev == Device::cpu) {
      // 64-byte alignment: one cache line, one AVX-512 register.
      p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    } else {
      p = cuda_cache().allocate(bytes);
    }
    if (!p)
      throw OutOfMemory(fmt::format("out of memory: {} ({}, {}) asked for {}, refused by the system", what,
                                    device_name(dev), category_name(cat), format_bytes(bytes)),
                        static_cast<std::int64_t>(bytes));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = stats_[d];
  s.live += static_cast<std::int64_t>(bytes);
  s.live_by_category[static_cast<int>(cat)] += static_cast<std::int64_t>(bytes);
  s.allocations += 1;
  if (s.live > s.peak) {
    s.peak = s.live;
    s.at_peak_by_category = s.live_by_category;
  }
  return p;
}

void MemoryTracker::release(void* p, std::size_t bytes, Device dev, MemCategory cat) {
  if (p) {
    if (dev == Device::cpu)
      std::free(p);
    else
      cuda_cache().release(p);
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = stats_[static_cast<int>(dev)];
  s.live -= static_cast<std::int64_t>(bytes);
  s.live_by_category[static_cast<int>(cat)] -= static_cast<std::int64_t>(bytes);
}

void MemoryTracker::set_budget(Device dev, std::int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  budget_[static_cast<int>(dev)] = bytes;
}

std::int64_t MemoryTracker::budget(Device dev) const {
  std::lock_guard<std::mutex> lock(mu_);
  return budget_[static_cast<int>(dev)];
}

MemoryStats MemoryTracker::stats(Device dev) const {
  MemoryStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_[static_cast<int>(dev)];
  }
  if (dev == Device::cuda) {
    const auto c = cuda_cache().stats();
    s.reserved = c.reserved, s.peak_reserved = c.peak_reserved, s.driver_allocations = c.raw_allocations;
  }
  return s;
}

void MemoryTracker::release_cached(Device dev) {
  if (dev == Device::cuda) cuda_cache().empty_cache();
}

void MemoryTracker::reset_peak(Device dev) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = stats_[static_cast<int>(dev)];
  s.peak = s.live;
  s.at_peak_by_category = s.live_by_category;
  s.allocations = 0;
  if (dev == Device::cuda) cuda_cache().reset_peak();
}

std::int64_t parse_size(const std::string& text, const std::string& option) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  std::string unit(end ? end : "");
  double mult = -1;
  const struct { const char* name; double mult; } units[] = {
      {"", 1},          {"B", 1},         {"K", 1e3},         {"KB", 1e3},         {"KiB", 1024.0},
      {"M", 1e6},       {"MB", 1e6},      {"MiB", 1048576.0}, {"G", 1e9},          {"GB", 1e9},
      {"GiB", 1073741824.0}, {"T", 1e12}, {"TB", 1e12},       {"TiB", 1099511627776.0}};
  for (const auto& u : units)
    if (unit == u.name) mult = u.mult;
  if (end == text.c_str() || mult < 0 || !(v > 0) || !std::isfinite(v))
    throw UsageError(fmt::format("{}: '{}' is not a size (examples: 512MiB, 8GiB, 1.5G, 1000000)", option, text));
  // 2^62 bytes (4 EiB): far above any machine, and below where int64 sizes would overflow.
  if (v * mult > 4.6e18)
    throw UsageError(fmt::format("{}: '{}' is larger than any memory (at most 4 EiB)", option, text));
  return static_cast<std::int64_t>(v * mult);
}

std::string format_bytes(std::int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (std::llabs(bytes) >= (1LL << 30)) return fmt::format("{:.2f} GiB", b / (1LL << 30));
  if (std::llabs(bytes) >= (1LL << 20)) return fmt::format("{:.1f} MiB", b / (1LL << 20));
  if (std::llabs(bytes) >= (1LL << 10)) return fmt::format("{:.1f} KiB", b / (1LL << 10));
  return fmt::format("{} B", bytes);
}

}  // namespace lsb
