// Repetition and statistics (../shared/spec/measurement.md "Time"): warm-up never counted, then
// repeat until both a minimum count and a minimum time are reached, or a per-point cap is hit.
#pragma once
#include <functional>
#include <vector>

namespace lsb {

struct TimingPolicy {
  int warmup = 2;
  int min_reps = 5;
  double min_time_s = 1.0;
  double max_time_s = 60.0;  // per-point cap
  int profile_steps = 0;     // sweep's model points: steps run after the timed ones under a per-op profile
};

struct TimeStats {
  double min = 0, median = 0, mean = 0, max = 0, stdev = 0;
  int samples = 0;
  bool capped = false;  // stopped by max_time_s before min_reps/min_time were reached
};

TimeStats summarize(std::vector<double> samples);
// Each sample times one call of `fn` alone (steady clock).
TimeStats time_it(const std::function<void()>& fn, const TimingPolicy& policy);
// Each sample is the seconds `timed_call` returns for one call it makes and times itself (CUDA:
// events around the work, then a synchronise); warm-up calls are made the same way.
TimeStats time_samples(const std::function<double()>& timed_call, const TimingPolicy& policy);

}  // namespace lsb
