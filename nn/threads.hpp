// The CPU threads a run asks for and the threads it gets.
//
// oneDNN's OpenMP runtime sizes its work split by omp_get_max_threads() and then hands each thread of the
// parallel region its share of that many parts: when the region gets fewer threads than that (the
// environment's OMP_THREAD_LIMIT, OMP_DYNAMIC=true under load, a scheduler's limits), the shares of the
// missing threads are never computed and the product is silently wrong. So every thread count lsbench
// uses goes through use_threads(), which makes the OpenMP setting equal to what a parallel region really
// gets: dynamic adjustment off, the request capped by the runtime's thread limit and the CPUs this
// process may run on, then measured. lsbench's own loops are `omp parallel for` (correct for any count)
// and index per-thread scratch by omp_get_thread_num() < omp_get_max_threads().
#pragma once
#include <string>

namespace lsb {

struct ThreadGrant {
  int requested = 0;  // what was asked: --threads or OMP_NUM_THREADS; without either, what was granted
  int granted = 1;    // what a parallel region gets now (and what omp_get_max_threads() returns)
  std::string why_fewer;  // empty when granted == requested; else the reason, for the warning and report
};

// The CPUs this process may run on (its affinity mask; cgroup quotas are not read).
int usable_cpus();

// Sets the OpenMP thread count to `requested` (0: OpenMP's default as the process started), capped as
// above, and returns the grant. The first call (main does it before any parallel region) remembers the
// default. A grant below the request prints one warning to stderr (once per distinct grant).
ThreadGrant use_threads(int requested);

// The grant in force (the last use_threads, or the default's before any).
const ThreadGrant& current_threads();

}  // namespace lsb
