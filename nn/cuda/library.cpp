#include "nn/cuda/library.hpp"

#include <dlfcn.h>

namespace lsb::cuda {

void* ToolkitLibrary::find(const char* symbol) const { return handle == nullptr ? nullptr : dlsym(handle, symbol); }

ToolkitLibrary open_toolkit_library(const std::string& stem, int major, const std::string& what,
                                    const std::string& hint) {
  ToolkitLibrary lib;
  const std::string file = "lib" + stem + ".so." + std::to_string(major);
  const std::string names[] = {file, std::string(LSBENCH_CUDA_LIBRARY_DIR) + "/" + file, "lib" + stem + ".so"};
  std::string why;
  for (const std::string& name : names) {
    if ((lib.handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) {
      lib.file = name;
      return lib;
    }
    if (why.empty()) why = dlerror();
  }
  lib.problem = what + " could not be loaded (" + why + "); " + hint;
  return lib;
}

}  // namespace lsb::cuda
