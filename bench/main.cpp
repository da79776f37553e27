// The lsbench executable: the command line of bench/cli.cpp.
#include "bench/cli.hpp"

int main(int argc, char** argv) { return lsb::cli_main(argc, argv); }
