// The command line (bench/cli.cpp) in parse-only mode (LSBENCH_PARSE_ONLY: nothing runs after the values
// are read and checked): the input's lines are the arguments after `lsbench`, at most 64 of them. Every
// argument vector must end in a documented exit code other than "internal error" (a command line the CLI
// cannot describe is the user's, never lsbench's fault), without a crash or a hang. Standard output (help
// texts) is discarded; run.sh gives this harness -close_fd_mask=2 as well.
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "bench/cli.hpp"
#include "fuzz/harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = [] {
    ::setenv("LSBENCH_PARSE_ONLY", "1", 1);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) ::dup2(null, 1), ::close(null);
    return true;
  }();
  (void)quiet;
  std::vector<std::string> args = {"lsbench"};
  std::string current;
  for (const char c : lsb::fuzz::as_text(data, size)) {
    if (c != '\n') {
      current += c;
      continue;
    }
    args.push_back(current);
    current.clear();
    if (args.size() > 64) break;
  }
  if (!current.empty() && args.size() <= 64) args.push_back(current);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int code = lsb::cli_main(static_cast<int>(args.size()), argv.data());
  if (code < lsb::kOk || code > lsb::kDiverged || code == lsb::kInternal) std::abort();
  return 0;
}
