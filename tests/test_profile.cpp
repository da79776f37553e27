// nn/profile: the per-op timeline on the CPU (the GPU's events are exercised by sweep --profile on a GPU).
#include <catch2/catch.hpp>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "nn/profile.hpp"

namespace lsb {

TEST_CASE("a profile gives each interval to the innermost open op and counts every call", "[profile]") {
  using namespace std::chrono_literals;
  {
    const profile::Scope off("before any collection");  // no collection open: nothing is recorded
  }
  profile::Collection c(Device::cpu);
  CHECK_THROWS_AS(profile::Collection(Device::cpu), std::logic_error);  // one at a time
  for (int i = 0; i < 3; ++i) {
    LSB_PROFILE("outer");
    {
      LSB_PROFILE("inner");
      std::this_thread::sleep_for(5ms);
    }
  }
  std::thread other([] {
    LSB_PROFILE("other thread");  // not the collecting thread: not counted
    std::this_thread::sleep_for(1ms);
  });
  other.join();
  CHECK(c.marks() == 1 + 4 * 3);  // the opening, then two boundaries per call
  const profile::Result r = c.finish();
  CHECK(r.count("before any collection") == 0);
  CHECK(r.count("other thread") == 0);
  REQUIRE(r.count("outer") == 1);
  REQUIRE(r.count("inner") == 1);
  CHECK(r.at("outer").calls == 3);
  CHECK(r.at("inner").calls == 3);
  CHECK(r.at(profile::kOutside).calls == 0);
  CHECK(r.at("inner").seconds >= 0.015);  // the sleeps are the inner op's, not the outer's
  CHECK(r.at("outer").seconds < r.at("inner").seconds);
  {
    const profile::Scope after("after finish");  // the collection is closed: nothing more is recorded
  }
  profile::Collection again(Device::cpu);  // a finished collection lets the next one open
  CHECK(again.finish().count("after finish") == 0);
}

}  // namespace lsb
