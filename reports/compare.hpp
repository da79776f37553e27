// `lsbench compare BASE NEW` (../shared/spec/measurement.md "Comparing and gating in CI"): results
// paired by id; a point regresses when it is slower by more than both the relative and the absolute
// threshold, its peak memory grew by more than the memory threshold, its status went from ok to
// anything else, or its accuracy fell by more than the accuracy threshold (improvements are the
// mirror image). The verdict is a Markdown table for a CI summary.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace lsb {

struct CompareThresholds {
  double time_rel = 0.10;     // --time-threshold 10%
  double time_abs_s = 1e-3;   // --abs-threshold 1ms
  double memory_rel = 0.05;   // --memory-threshold 5%
  double accuracy_pts = 1.0;  // --accuracy-threshold 1pt (percentage points)
  double bpc_abs = 0.02;      // --bpc-threshold 0.02 (bits per character, language models)
};

// "10%" or "0.1" -> 0.1; "1ms", "250us", "0.5s" -> seconds; "1pt" or "1" -> points. UsageError names the option.
double parse_fraction(const std::string& text, const std::string& option);
double parse_duration_s(const std::string& text, const std::string& option);
double parse_points(const std::string& text, const std::string& option);

struct Comparison {
  int regressed = 0, improved = 0, unchanged = 0, added = 0, missing = 0;
  bool contexts_differ = false;
  std::string markdown;
};

// base, next: valid reports (read_report). Names are used in the text only.
Comparison compare_reports(const nlohmann::json& base, const nlohmann::json& next, const std::string& base_name,
                           const std::string& next_name, const CompareThresholds& t);

}  // namespace lsb
