// The lsbench command line as a function: bench/main.cpp calls it, and the tests call it in-process to walk
// every option of every command (tests/test_cli.cpp) without starting a process per case.
//
// Environment: LSBENCH_LIST_OPTIONS=1 prints the CLI's registry (one line per option of every command:
// command, name, type, required or optional, value, flag or positional) and returns 0; LSBENCH_PARSE_ONLY=1
// returns 0 once the command line is read and every value checked, running nothing.
#pragma once

namespace lsb {

// Returns the exit code (README "Exit codes").
int cli_main(int argc, char** argv);

}  // namespace lsb
