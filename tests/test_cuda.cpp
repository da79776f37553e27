// The CUDA part of the tree: compiled whenever nvcc exists; these checks run for real where a GPU is
// present and say why they skip where none is.
#include <catch2/catch.hpp>

#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/memory.hpp"
#include "nn/tensor.hpp"

using namespace lsb;

TEST_CASE("device query and tracked CUDA allocations", "[cuda]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    CHECK_THROWS(cuda::query(0));
    CHECK_FALSE(cuda::unavailable_reason().empty());
    return;
  }
  const auto info = cuda::query(0);
  CHECK(!info.name.empty());
  CHECK(info.memory_bytes > (1LL << 30));
  CHECK(info.sm_major >= 5);
  auto& mt = MemoryTracker::instance();
  const auto before = mt.stats(Device::cuda).live;
  {
    Tensor t({1 << 20}, MemCategory::activations, "device buffer", Device::cuda);
    CHECK(t.data() != nullptr);
    CHECK(mt.stats(Device::cuda).live - before == 4 << 20);
  }
  CHECK(mt.stats(Device::cuda).live == before);
  mt.set_budget(Device::cuda, before + (1 << 20));
  CHECK_THROWS_AS(Tensor({1 << 20}, MemCategory::activations, "over budget", Device::cuda), OutOfMemory);
  mt.set_budget(Device::cuda, 0);
}
