// Where a step's time goes, by operation: while a Collection is open, every Scope (one per device op,
// attention core and optimiser call) marks a boundary on the device's timeline (a host clock reading on
// the CPU, a CUDA event on the GPU's default stream), and the time between two consecutive boundaries
// goes to the innermost scope open then ("(outside any op)" when none is: host work, the batch's copy).
// So the entries add up to the collection's whole time, with no op counted twice. Off (one branch per
// scope) while no collection is open. One collection at a time; only the scopes of the thread that
// opened it count. On the GPU an op's time is the stream's time between its boundaries, so it includes
// the GPU's idle time while the host was still issuing the op's work: a launch-bound op shows as one
// whose time exceeds its kernels'.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "nn/tensor.hpp"

namespace lsb::profile {

struct Entry {
  double seconds = 0;
  std::int64_t calls = 0;  // scopes entered (0 for the time outside any op)
};
using Result = std::map<std::string, Entry>;
constexpr const char* kOutside = "(outside any op)";

class Collection {
 public:
  // `expected_marks`: boundaries to prepare for (CUDA events are created up front, not while timing).
  explicit Collection(Device device, std::size_t expected_marks = 0);
  ~Collection();
  Collection(const Collection&) = delete;
  Collection& operator=(const Collection&) = delete;
  // Closes the timeline (synchronising the GPU) and returns the time per op since the collection opened.
  Result finish();
  // Boundaries marked so far (two per op call, one at the opening).
  std::size_t marks() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Marks the boundaries of one op while a collection is open; `name` must outlive the collection (a literal).
class Scope {
 public:
  explicit Scope(const char* name);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool active_;
};

}  // namespace lsb::profile

#define LSB_PROFILE_CONCAT2(a, b) a##b
#define LSB_PROFILE_CONCAT(a, b) LSB_PROFILE_CONCAT2(a, b)
// Times the rest of the enclosing block as op `name` (a string literal) in the open collection, if any.
#define LSB_PROFILE(name) const ::lsb::profile::Scope LSB_PROFILE_CONCAT(lsb_profile_scope_, __LINE__)(name)
