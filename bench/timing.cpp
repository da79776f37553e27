#include "bench/timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace lsb {

TimeStats summarize(std::vector<double> s) {
  TimeStats t;
  t.samples = static_cast<int>(s.size());
  if (s.empty()) return t;
  std::sort(s.begin(), s.end());
  t.min = s.front();
  t.max = s.back();
  const std::size_t k = s.size();
  t.median = k % 2 ? s[k / 2] : 0.5 * (s[k / 2 - 1] + s[k / 2]);
  t.mean = std::accumulate(s.begin(), s.end(), 0.0) / k;
  double v = 0;
  for (double x : s) v += (x - t.mean) * (x - t.mean);
  t.stdev = k > 1 ? std::sqrt(v / (k - 1)) : 0.0;
  return t;
}

TimeStats time_it(const std::function<void()>& fn, const TimingPolicy& p) {
  using clock = std::chrono::steady_clock;
  return time_samples(
      [&] {
        const auto t0 = clock::now();
        fn();
        return std::chrono::duration<double>(clock::now() - t0).count();
      },
      p);
}

TimeStats time_samples(const std::function<double()>& timed_call, const TimingPolicy& p) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - start).count(); };
  for (int i = 0; i < p.warmup && elapsed() < p.max_time_s; ++i) timed_call();
  std::vector<double> samples;
  double measured = 0;
  while (static_cast<int>(samples.size()) < p.min_reps || measured < p.min_time_s) {
    if (elapsed() >= p.max_time_s && !samples.empty()) break;
    const double s = timed_call();
    samples.push_back(s);
    measured += s;
  }
  TimeStats t = summarize(samples);
  t.capped = t.samples < p.min_reps || measured < p.min_time_s;
  return t;
}

}  // namespace lsb
