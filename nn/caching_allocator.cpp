#include "nn/caching_allocator.hpp"

#include <algorithm>
#include <stdexcept>

namespace lsb {

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

std::size_t CachingAllocator::rounded(std::size_t bytes) {
  const std::size_t g = bytes < kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t size = rounded(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= 2 * size) {
    void* p = it->second;
    in_use_.emplace(p, it->first);
    stats_.cached -= static_cast<std::int64_t>(it->first);
    stats_.cache_hits += 1;
    free_.erase(it);
    return p;
  }
  void* p = raw_alloc_(size);
  if (!p && !free_.empty()) {  // the driver is full of our cached blocks: give them back, try again
    empty_cache_locked();
    p = raw_alloc_(size);
  }
  if (!p) return nullptr;
  in_use_.emplace(p, size);
  stats_.raw_allocations += 1;
  stats_.reserved += static_cast<std::int64_t>(size);
  stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  return p;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = in_use_.find(p);
  if (it == in_use_.end()) throw std::logic_error("CachingAllocator::release: a pointer it did not allocate");
  free_.emplace(it->second, p);
  stats_.cached += static_cast<std::int64_t>(it->second);
  in_use_.erase(it);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

void CachingAllocator::empty_cache_locked() {
  for (const auto& [size, p] : free_) {
    raw_free_(p);
    stats_.reserved -= static_cast<std::int64_t>(size);
    stats_.raw_frees += 1;
  }
  free_.clear();
  stats_.cached = 0;
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace lsb
