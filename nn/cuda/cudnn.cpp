#include "nn/cuda/cudnn.hpp"

#include <dlfcn.h>

#include <stdexcept>
#include <string>

namespace lsb::cuda {

#if LSBENCH_HAVE_CUDNN_HEADERS
namespace {

struct Opened {
  std::string problem;  // why it cannot be used; empty when every entry point is set and the version is new enough
  std::string file;
  CudnnApi api;
};

template <class Fn>
void bind(Opened& o, void* lib, Fn& slot, const char* symbol) {
  slot = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (slot == nullptr && o.problem.empty()) o.problem = o.file + " has no " + symbol;
}

std::string version_text(std::size_t v) {
  // 9.x encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

Opened open_cudnn() {
  Opened o;
  // The major version the code was compiled against, from the loader's path, then from the build's
  // toolkit folder (cuDNN 9 loads its engine libraries from its own folder); the unversioned name last.
  const std::string file = "libcudnn.so." + std::to_string(CUDNN_MAJOR);
  const std::string names[] = {file, std::string(LSBENCH_CUDA_LIBRARY_DIR) + "/" + file, "libcudnn.so"};
  void* lib = nullptr;
  std::string why;
  for (const std::string& name : names) {
    if ((lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) {
      o.file = name;
      break;
    }
    if (why.empty()) why = dlerror();
  }
  if (lib == nullptr) {
    o.problem = "cuDNN could not be loaded (" + why + "); install cuDNN 9 beside the CUDA toolkit or put its lib "
                "folder on LD_LIBRARY_PATH";
    return o;
  }
  CudnnApi& a = o.api;
  bind(o, lib, a.get_version, "cudnnGetVersion");
  bind(o, lib, a.get_error_string, "cudnnGetErrorString");
  bind(o, lib, a.get_last_error_string, "cudnnGetLastErrorString");
  bind(o, lib, a.create, "cudnnCreate");
  bind(o, lib, a.create_descriptor, "cudnnBackendCreateDescriptor");
  bind(o, lib, a.destroy_descriptor, "cudnnBackendDestroyDescriptor");
  bind(o, lib, a.set_attribute, "cudnnBackendSetAttribute");
  bind(o, lib, a.get_attribute, "cudnnBackendGetAttribute");
  bind(o, lib, a.finalize, "cudnnBackendFinalize");
  bind(o, lib, a.execute, "cudnnBackendExecute");
  if (o.problem.empty() && static_cast<long>(a.get_version()) < kMinCudnnVersion)
    o.problem = o.file + " is cuDNN " + version_text(a.get_version()) + "; lsbench's attention graphs need " +
                version_text(kMinCudnnVersion) + " or newer";
  return o;
}

const Opened& opened() {
  static const Opened o = open_cudnn();  // opened once, by the first caller
  return o;
}

}  // namespace

std::string cudnn_problem() { return opened().problem; }

std::string cudnn_version() { return opened().problem.empty() ? version_text(opened().api.get_version()) : ""; }

const CudnnApi& cudnn() {
  if (!opened().problem.empty()) throw std::runtime_error(opened().problem);
  return opened().api;
}

void check_cudnn(cudnnStatus_t status, const char* what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const CudnnApi& a = cudnn();
  char last[512] = {};
  a.get_last_error_string(last, sizeof last);
  std::string message = std::string("cuDNN: ") + what + " failed: " + a.get_error_string(status);
  if (last[0] != '\0') message += std::string(" (") + last + ")";
  throw std::runtime_error(message);
}

cudnnHandle_t cudnn_handle() {
  static const cudnnHandle_t h = [] {
    cudnnHandle_t created = nullptr;
    check_cudnn(cudnn().create(&created), "cudnnCreate");
    return created;  // a new handle works on the default stream
  }();
  return h;
}

#else

std::string cudnn_problem() { return "this binary was built without cuDNN's headers (cudnn_graph.h)"; }
std::string cudnn_version() { return ""; }

#endif

}  // namespace lsb::cuda
