#include "nn/threads.hpp"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace lsb {

namespace {

// OpenMP's own default, read before lsbench first changes the setting.
int openmp_default() {
  static const int d = omp_get_max_threads();
  return d;
}

ThreadGrant& grant_in_force() {
  static ThreadGrant g = [] {
    ThreadGrant first;
    first.requested = first.granted = openmp_default();
    return first;
  }();
  return g;
}

// The threads a parallel region with the current setting really gets.
int measure_region() {
  int got = 1;
#pragma omp parallel
  {
#pragma omp single
    got = omp_get_num_threads();
  }
  return got;
}

}  // namespace

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
}

ThreadGrant use_threads(int requested) {
  // OpenMP's default counts as asked for where OMP_NUM_THREADS set it; the CPUs it defaults to otherwise
  // are only what the process may use, and no warning is due when fewer are.
  const bool explicit_request = requested > 0 || std::getenv("OMP_NUM_THREADS") != nullptr;
  const int asked = requested > 0 ? requested : openmp_default();
  omp_set_dynamic(0);  // the runtime may not hand out fewer threads than set
  const int limit = omp_get_thread_limit(), cpus = usable_cpus();
  int target = std::max(1, std::min({asked, limit, cpus}));
  omp_set_num_threads(target);
  const int got = measure_region();
  if (got != target) omp_set_num_threads(target = got);  // whatever else held it back: ask only for what comes

  ThreadGrant g;
  g.requested = explicit_request ? asked : target;
  g.granted = target;
  if (target < g.requested) {
    std::vector<std::string> why;
    if (asked > cpus) why.push_back(fmt::format("this process may run on {} CPUs", cpus));
    if (asked > limit) why.push_back(fmt::format("OpenMP's thread limit is {} (OMP_THREAD_LIMIT)", limit));
    if (why.empty()) why.push_back(fmt::format("a parallel region got only {}", got));
    g.why_fewer = fmt::format("{} threads asked for, {} used: {}", asked, target, fmt::join(why, "; "));
    static std::mutex m;
    static std::set<std::string> said;
    const std::lock_guard lock(m);
    if (said.insert(g.why_fewer).second) fmt::print(stderr, "lsbench: warning: {}\n", g.why_fewer);
  }
  grant_in_force() = g;
  return g;
}

const ThreadGrant& current_threads() { return grant_in_force(); }

}  // namespace lsb
