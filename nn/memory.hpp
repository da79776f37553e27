// The one tracking allocator. Every buffer the project allocates comes from here, so memory figures
// in reports are counted, not estimated: live and peak bytes per device and per category, and an
// optional budget above which an allocation fails with OutOfMemory naming the request.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace lsb {

enum class Device : int { cpu = 0, cuda = 1 };
constexpr int kNumDevices = 2;
const char* device_name(Device d);

// What a buffer is for; reports split peak memory by these.
enum class MemCategory : int { parameters, gradients, optimizer, activations, workspace, data, count };
constexpr int kNumCategories = static_cast<int>(MemCategory::count);
const char* category_name(MemCategory c);

struct MemoryStats {
  std::int64_t live = 0;
  std::int64_t peak = 0;
  std::array<std::int64_t, kNumCategories> live_by_category{};
  // Live bytes of each category at the moment the overall peak was reached.
  std::array<std::int64_t, kNumCategories> at_peak_by_category{};
  std::int64_t allocations = 0;  // number of allocate() calls since the last reset
};

class MemoryTracker {
 public:
  static MemoryTracker& instance();

  // Throws OutOfMemory when live + bytes would exceed the device's budget. `what` names the request.
  void* allocate(std::size_t bytes, Device dev, MemCategory cat, const char* what);
  void release(void* p, std::size_t bytes, Device dev, MemCategory cat);

  // 0 = unlimited.
  void set_budget(Device dev, std::int64_t bytes);
  std::int64_t budget(Device dev) const;
  MemoryStats stats(Device dev) const;
  // Peak := live; allocation count := 0. Call between measured points.
  void reset_peak(Device dev);

 private:
  MemoryTracker() = default;
  mutable std::mutex mu_;
  std::array<MemoryStats, kNumDevices> stats_{};
  std::array<std::int64_t, kNumDevices> budget_{};
};

// Parses "512MiB", "8GiB", "1.5G", "1000000" (bytes). Throws UsageError naming `option`.
std::int64_t parse_size(const std::string& text, const std::string& option);
std::string format_bytes(std::int64_t bytes);

}  // namespace lsb
