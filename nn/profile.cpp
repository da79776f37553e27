#include "nn/profile.hpp"

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "nn/cuda/device.hpp"

namespace lsb::profile {

struct Collection::Impl {
  Device device;
  std::thread::id host_thread;     // scopes on other threads (inside a parallel region) are not timed
  std::vector<const char*> stack;  // open scopes, innermost last
  std::vector<const char*> owner;  // owner[i]: the op the interval after boundary i belongs to
  std::vector<std::chrono::steady_clock::time_point> host;  // CPU boundaries
  std::unique_ptr<cuda::EventTimeline> events;              // GPU boundaries
  Result calls_only;                                        // the calls of each op (their seconds come in finish())

  void mark() {
    owner.push_back(stack.empty() ? kOutside : stack.back());
    if (device == Device::cuda)
      events->mark();
    else
      host.push_back(std::chrono::steady_clock::now());
  }
};

namespace {
Collection::Impl* open_collection = nullptr;
}

Collection::Collection(Device device, std::size_t expected_marks) : impl_(std::make_unique<Impl>()) {
  if (open_collection) throw std::logic_error("profile: a collection is already open");
  impl_->device = device;
  impl_->host_thread = std::this_thread::get_id();
  if (device == Device::cuda) {
    impl_->events = std::make_unique<cuda::EventTimeline>();
    impl_->events->reserve(expected_marks + 2);
  }
  open_collection = impl_.get();
  impl_->mark();
}

Collection::~Collection() {
  if (open_collection == impl_.get()) open_collection = nullptr;
}

std::size_t Collection::marks() const { return impl_->owner.size(); }

Result Collection::finish() {
  Impl& c = *impl_;
  c.mark();
  open_collection = nullptr;
  std::vector<double> intervals;
  if (c.device == Device::cuda) {
    intervals = c.events->intervals_s();
  } else {
    for (std::size_t i = 1; i < c.host.size(); ++i)
      intervals.push_back(std::chrono::duration<double>(c.host[i] - c.host[i - 1]).count());
  }
  Result r = c.calls_only;
  for (std::size_t i = 0; i < intervals.size(); ++i) r[c.owner[i]].seconds += intervals[i];
  return r;
}

Scope::Scope(const char* name)
    : active_(open_collection != nullptr && std::this_thread::get_id() == open_collection->host_thread) {
  if (!active_) return;
  open_collection->stack.push_back(name);
  open_collection->mark();  // the interval from here on is this op's
  ++open_collection->calls_only[name].calls;
}

Scope::~Scope() {
  if (!active_ || !open_collection) return;
  open_collection->stack.pop_back();
  open_collection->mark();  // from here on, the enclosing op's again
}

}  // namespace lsb::profile
