// A CUDA toolkit library opened with dlopen at its first use instead of linked (cuBLAS in nn/cuda/blas.cu,
// cuDNN in nn/cuda/cudnn.cpp): a binary built with CUDA then starts on a node without them and under a small
// address-space limit, and CPU commands do not pay for loading them.
#pragma once
#include <string>

namespace lsb::cuda {

struct ToolkitLibrary {
  void* handle = nullptr;
  std::string file;     // what was opened
  std::string problem;  // why it cannot be used; empty while every symbol bound so far was found

  // slot = the library's `symbol` (its type from the library's header, so that a signature that changes with
  // the toolkit fails to compile instead of misbehaving); a missing one is the problem (the first is kept).
  template <class Fn>
  void bind(Fn& slot, const char* symbol) {
    slot = reinterpret_cast<Fn>(find(symbol));
    if (slot == nullptr && problem.empty()) problem = file + " has no " + symbol;
  }

 private:
  void* find(const char* symbol) const;
};

// lib<stem>.so.<major> (the major version the code was compiled against) from the loader's path, then from the
// build's toolkit folder (a machine whose loader does not know it), then lib<stem>.so (a development install).
// When none opens, problem = "<what> could not be loaded (<the loader's error>); <hint>".
ToolkitLibrary open_toolkit_library(const std::string& stem, int major, const std::string& what,
                                    const std::string& hint);

}  // namespace lsb::cuda
