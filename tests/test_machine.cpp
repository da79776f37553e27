// The measured fp32 peak and what says whether to trust it: the warning rule, and a busy machine
// (processes spinning beside the measurement) that must be flagged.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "bench/machine.hpp"

using namespace lsb;

TEST_CASE("the peak warning names contention, a peak far below nominal and unsteady rounds", "[machine]") {
  PeakMeasurement m;
  m.threads = 2, m.rounds = 8, m.best_gflops = 400, m.median_gflops = 390, m.others_cpu = 0.05, m.load_average = 0.3;
  m.nominal_gflops = 450;
  CHECK(peak_warning(m).empty());
  m.others_cpu = 1.4, m.load_average = 2.5;
  CHECK_THAT(peak_warning(m), Catch::Contains("other processes took 1.4 CPUs") && Catch::Contains("load average 2.5"));
  m.others_cpu = 0, m.best_gflops = 4.2, m.median_gflops = 4.0;  // the 4.2 GFLOP/s of a busy 2-core machine
  CHECK_THAT(peak_warning(m), Catch::Contains("1% of the 450 GFLOP/s"));
  m.best_gflops = 400, m.median_gflops = 200;
  CHECK_THAT(peak_warning(m), Catch::Contains("rounds varied from 200 (median) to 400"));
  m.nominal_gflops = 0, m.others_cpu = -1, m.median_gflops = 390;  // nothing known beyond the rounds
  CHECK(peak_warning(m).empty());
}

TEST_CASE("a peak measured beside spinning processes is flagged as contended", "[machine]") {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  std::vector<pid_t> spinners;
  for (long i = 0; i < std::max(cpus, 2L); ++i) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      alarm(30);  // never outlives a test run that dies before killing it
      for (;;) asm volatile("");
    }
    spinners.push_back(pid);
  }
  usleep(100000);  // let them get going
  const PeakMeasurement m = measure_peak(1);
  for (const pid_t pid : spinners) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  INFO("others " << m.others_cpu << " CPUs, best " << m.best_gflops << " median " << m.median_gflops << ", warning: "
                 << m.warning);
  CHECK(m.others_cpu > 0.5);  // the spinners' time, seen through /proc/stat
  CHECK_THAT(m.warning, Catch::Contains("other processes took"));
  CHECK(m.to_json().contains("warning"));
}
