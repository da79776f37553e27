// Shared by the fuzz harnesses (one per loader, fuzz/fuzz_*.cpp). Each harness defines libFuzzer's
// entry point, LLVMFuzzerTestOneInput: it writes the input bytes where the loader expects a file (a
// scratch folder of this process) and calls the loader. An InputError is the loader refusing bad
// data, which is correct; anything else that escapes (an internal error, a bad_alloc from a size the
// file never justified, a sanitizer report, a hang) is a finding.
//
// Built two ways (fuzz/CMakeLists.txt): with clang's -fsanitize=fuzzer to search (preset fuzz,
// fuzz/run.sh), and with any compiler against replay_main.cpp, which runs every file of the seed
// corpora in fuzz/corpus/<harness>/ once (a CTest entry per harness, so CI replays them on every run).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "nn/errors.hpp"

namespace lsb::fuzz {

// This process's scratch folder (under TMPDIR), created on first use and removed at exit.
const std::filesystem::path& scratch();

// Writes `bytes` to `path` (folders created), replacing what was there.
void write_file(const std::filesystem::path& path, std::string_view bytes);

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `load`; an InputError (the loader refusing the data) is the expected outcome for most inputs.
template <class F>
void expect_input_error_or_ok(F&& load) {
  try {
    load();
  } catch (const InputError&) {
  }
}

}  // namespace lsb::fuzz
