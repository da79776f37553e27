// The one tracking allocator. Every buffer the project allocates comes from here, so memory figures
// in reports are counted, not estimated: live and peak bytes per device and per category, and an
// optional budget above which an allocation fails with OutOfMemory naming the request. On the GPU the
// bytes come from a caching allocator (nn/caching_allocator.hpp): live and peak still count exactly the
// bytes asked for, as on the CPU, and `reserved` says what the cache holds from the driver.
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
// "cpu" or "cuda"; UsageError naming `option` otherwise. Says nothing of whether a GPU is present.
Device parse_device(const std::string& text, const std::string& option);

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
  // CUDA only (0 on the CPU): bytes the caching allocator holds from the driver (in use, rounded up,
  // and cached), now and at most since the last reset; and how many blocks it took from the driver.
  std::int64_t reserved = 0, peak_reserved = 0, driver_allocations = 0;
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
  // Returns the blocks the CUDA cache holds but nobody uses to the driver (no-op on the CPU), so
  // that the driver's view of one measurement does not include another's cache.
  void release_cached(Device dev);

 private:
  MemoryTracker() = default;
  mutable std::mutex mu_;
  std::array<MemoryStats, kNumDevices> stats_{};
  std::array<std::int64_t, kNumDevices> budget_{};
};

// Parses "512MiB", "8GiB", "1.5G", "1000000" (bytes). Throws UsageError naming `option`.
std::int64_t parse_size(const std::string& text, const std::string& option);
std::string format_bytes(std::int64_t bytes);

// A memory budget as the user wrote it ("16GiB"), parsed once where it is read (the CLI: a UsageError
// naming --memory-budget) and kept with its text for repro lines. Empty: no budget.
class ByteSize {
 public:
  ByteSize() = default;
  ByteSize(const std::string& text) : text_(text), bytes_(text.empty() ? 0 : parse_size(text, "--memory-budget")) {}
  ByteSize(const char* text) : ByteSize(std::string(text)) {}
  static ByteSize of_bytes(std::int64_t bytes) { return ByteSize(std::to_string(bytes)); }
  bool empty() const { return text_.empty(); }
  std::int64_t bytes() const { return bytes_; }  // 0 when empty
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::int64_t bytes_ = 0;
};

}  // namespace lsb
