#include "bench/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

namespace lsb {

Progress::Progress(std::int64_t total, double line_interval_s)
    : total_(std::max<std::int64_t>(total, 1)),
      interval_(line_interval_s),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_line_(start_) {}

Progress::~Progress() { finish(); }

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
}

void Progress::update(std::int64_t done, const std::string& text, double seconds_per_unit) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const std::string eta = format_duration(seconds_per_unit * static_cast<double>(total_ - done));
  if (tty_) {
    constexpr int kWidth = 24;
    const int fill = static_cast<int>(kWidth * done / total_);
    fmt::print(stderr, "\r\033[K[{}{}] {}/{} {} | {} elapsed, {} left", std::string(fill, '#'),
               std::string(kWidth - fill, '.'), done, total_, text, format_duration(elapsed), eta);
    std::fflush(stderr);
    drawn_ = true;
  } else if (std::chrono::duration<double>(now - last_line_).count() >= interval_ || done == total_) {
    fmt::print(stderr, "{}/{} {} | {} elapsed, {} left\n", done, total_, text, format_duration(elapsed), eta);
    last_line_ = now;
  }
}

void Progress::message(const std::string& line) {
  if (tty_ && drawn_) fmt::print(stderr, "\r\033[K");
  fmt::print(stderr, "{}\n", line);
  drawn_ = false;
}

void Progress::finish() {
  if (tty_ && drawn_) fmt::print(stderr, "\n");
  drawn_ = false;
}

}  // namespace lsb
