// Live progress of a long command. On a terminal: one line redrawn in place (a bar, the caller's
// status text, elapsed and estimated time left). Otherwise (logs, CI): a plain line at most every
// `line_interval_s` seconds, so that log files stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace lsb {

class Progress {
 public:
  Progress(std::int64_t total, double line_interval_s = 15.0);
  ~Progress();
  // done of total units finished; text: what to show after the bar ("loss 2.30 lr 1e-4 ...").
  // seconds_per_unit: the caller's estimate of one remaining unit, for the time left (the caller
  // knows which time counts, e.g. training steps without evaluation).
  void update(std::int64_t done, const std::string& text, double seconds_per_unit);
  // Prints a message on its own line (clearing the bar first on a terminal).
  void message(const std::string& line);
  void finish();

  static std::string format_duration(double seconds);  // "42s", "3m05s", "2h07m"

 private:
  std::int64_t total_;
  double interval_;
  bool tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_line_;
};

}  // namespace lsb
