// Typed errors. The CLI maps each to a documented exit code (see README "Exit codes"):
//   UsageError 2, InputError 3, OutOfMemory 4, anything else 5 (internal); 6 is a diverged training run.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lsb {

// A bad command line: unknown variant or key, impossible value. Message lists what is valid.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bad input data: a malformed or misshapen file. Message names the file (and line/record).
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An allocation refused because it would exceed the memory budget (or the system refused it).
struct OutOfMemory : std::runtime_error {
  OutOfMemory(const std::string& msg, std::int64_t requested_bytes, std::int64_t budget_bytes = 0)
      : std::runtime_error(msg), requested(requested_bytes), budget(budget_bytes) {}
  std::int64_t requested;
  std::int64_t budget;  // the budget that refused it; 0 when the system refused
};

enum ExitCode : int { kOk = 0, kRegression = 1, kUsage = 2, kBadInput = 3, kOutOfMemory = 4, kInternal = 5,
                       kDiverged = 6 };  // a training run whose loss became NaN/Inf (report kept)

// Every exit code with its meaning, in order: the one table the help footer and README print.
inline constexpr const char* kExitCodes[][2] = {
    {"0", "ok"}, {"1", "regression (compare)"}, {"2", "usage error"}, {"3", "bad input data"},
    {"4", "out of memory"}, {"5", "internal error"}, {"6", "a training run diverged (its report kept)"}};

}  // namespace lsb
