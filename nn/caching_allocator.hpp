// A caching allocator over a raw one (on the GPU: cudaMalloc / cudaFree, which are slow and
// synchronise the device). Freed blocks are kept and handed out again, so a steady-state step takes
// nothing from the driver. The tracker (nn/memory.hpp) still counts the bytes asked for, exactly as on
// the CPU; this class adds what the cache holds from the driver (`reserved`), which reports give beside.
//
// Policy: sizes are rounded up to 512 bytes below 1 MiB and to 2 MiB above (kSmallGranule,
// kLargeGranule). A request takes the smallest cached block of at least its rounded size and at most
// twice it (so a small request never pins a huge block); otherwise a new raw block. When the raw
// allocator refuses, every cached block is returned to it and the request is tried once more. Blocks
// are never split or merged: simple, and enough for lsbench, whose modules allocate their buffers once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

namespace lsb {

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(std::size_t)>;  // nullptr when refused
  using RawFree = std::function<void(void*)>;
  static constexpr std::size_t kSmallGranule = 512, kLargeGranule = std::size_t(2) << 20,
                               kSmallLimit = std::size_t(1) << 20;

  struct Stats {
    std::int64_t reserved = 0;       // bytes of every raw block held (in use and cached)
    std::int64_t peak_reserved = 0;  // since construction or reset_peak()
    std::int64_t cached = 0;         // bytes of the blocks held but free
    std::int64_t raw_allocations = 0, raw_frees = 0, cache_hits = 0;
  };

  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free);
  ~CachingAllocator();  // returns every cached block; blocks still in use are the owner's leak
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  static std::size_t rounded(std::size_t bytes);
  // nullptr when the raw allocator refuses even after the cache was emptied; bytes = 0 gives nullptr.
  void* allocate(std::size_t bytes);
  // p must come from allocate() (nullptr is ignored); its block goes back to the cache.
  void release(void* p);
  // Returns every cached block to the raw allocator (blocks in use stay).
  void empty_cache();
  Stats stats() const;
  void reset_peak();

 private:
  void empty_cache_locked();
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mu_;
  std::multimap<std::size_t, void*> free_;             // block size -> block
  std::unordered_map<void*, std::size_t> in_use_;      // block -> block size
  Stats stats_;
};

}  // namespace lsb
