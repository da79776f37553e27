#include <catch2/catch.hpp>

#include "nn/errors.hpp"
#include "nn/memory.hpp"
#include "nn/tensor.hpp"

using namespace lsb;

TEST_CASE("the tracker counts live and peak bytes by category", "[memory]") {
  auto& mt = MemoryTracker::instance();
  const auto before = mt.stats(Device::cpu);
  mt.reset_peak(Device::cpu);
  {
    Tensor a({1000}, MemCategory::activations, "a");
    Tensor g({500}, MemCategory::gradients, "g");
    const auto s = mt.stats(Device::cpu);
    CHECK(s.live - before.live == 6000);
    CHECK(s.live_by_category[int(MemCategory::activations)] - before.live_by_category[int(MemCategory::activations)] ==
          4000);
    CHECK(s.allocations == 2);
  }
  const auto after = mt.stats(Device::cpu);
  CHECK(after.live == before.live);
  CHECK(after.peak - before.live == 6000);
  CHECK(after.at_peak_by_category[int(MemCategory::gradients)] - before.live_by_category[int(MemCategory::gradients)] ==
        2000);
}

TEST_CASE("a budget refuses the allocation that would exceed it and names the request", "[memory]") {
  auto& mt = MemoryTracker::instance();
  const auto live = mt.stats(Device::cpu).live;
  mt.set_budget(Device::cpu, live + 1024 * 1024);
  Tensor ok({1024}, MemCategory::data, "fits");
  try {
    Tensor big({1024 * 1024}, MemCategory::activations, "attention probabilities (b, h, n, n)");
    FAIL("no OutOfMemory");
  } catch (const OutOfMemory& e) {
    CHECK(e.requested == 4 * 1024 * 1024);
    CHECK_THAT(e.what(), Catch::Contains("attention probabilities (b, h, n, n)") && Catch::Contains("4.0 MiB") &&
                             Catch::Contains("activations"));
  }
  CHECK(mt.stats(Device::cpu).live == live + 4096);  // the refused request left nothing behind
  mt.set_budget(Device::cpu, 0);
  Tensor now_fine({1024 * 1024}, MemCategory::activations, "fine without a budget");
}

TEST_CASE("ensure() reuses a buffer of the same shape and replaces one of another", "[memory]") {
  Tensor t;
  ensure(t, {4, 4}, MemCategory::workspace, "w");
  float* p = t.data();
  MemoryTracker::instance().reset_peak(Device::cpu);
  ensure(t, {4, 4}, MemCategory::workspace, "w");
  CHECK(t.data() == p);
  CHECK(MemoryTracker::instance().stats(Device::cpu).allocations == 0);
  ensure(t, {8, 4}, MemCategory::workspace, "w");
  CHECK(t.numel() == 32);
}

TEST_CASE("sizes parse with units and reject nonsense naming the option", "[memory]") {
  CHECK(parse_size("8GiB", "--memory-budget") == 8LL << 30);
  CHECK(parse_size("512MiB", "--memory-budget") == 512LL << 20);
  CHECK(parse_size("1.5G", "--memory-budget") == 1'500'000'000LL);
  CHECK(parse_size("4096", "--memory-budget") == 4096);
  CHECK_THROWS_WITH(parse_size("lots", "--memory-budget"), Catch::Contains("--memory-budget: 'lots' is not a size"));
  CHECK_THROWS_AS(parse_size("8 parsecs", "--memory-budget"), UsageError);
  CHECK_THROWS_AS(parse_size("-1G", "--memory-budget"), UsageError);
}
