#include "nn/cuda/cudnn.hpp"

#include <stdexcept>
#include <string>

#include "nn/cuda/library.hpp"

namespace lsb::cuda {

#if LSBENCH_HAVE_CUDNN_HEADERS
namespace {

struct Opened {
  ToolkitLibrary lib;  // lib.problem: why it cannot be used; empty when every entry point is set and the
                       // version is new enough
  CudnnApi api;
};

std::string version_text(std::size_t v) {
  // 9.x encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

Opened open_cudnn() {
  Opened o;
  // (cuDNN 9 loads its engine libraries from its own folder.)
  o.lib = open_toolkit_library("cudnn", CUDNN_MAJOR, "cuDNN",
                               "install cuDNN 9 beside the CUDA toolkit or put its lib folder on LD_LIBRARY_PATH");
  if (o.lib.handle == nullptr) return o;
  CudnnApi& a = o.api;
  o.lib.bind(a.get_version, "cudnnGetVersion");
  o.lib.bind(a.get_error_string, "cudnnGetErrorString");
  o.lib.bind(a.get_last_error_string, "cudnnGetLastErrorString");
  o.lib.bind(a.create, "cudnnCreate");
  o.lib.bind(a.create_descriptor, "cudnnBackendCreateDescriptor");
  o.lib.bind(a.destroy_descriptor, "cudnnBackendDestroyDescriptor");
  o.lib.bind(a.set_attribute, "cudnnBackendSetAttribute");
  o.lib.bind(a.get_attribute, "cudnnBackendGetAttribute");
  o.lib.bind(a.finalize, "cudnnBackendFinalize");
  o.lib.bind(a.execute, "cudnnBackendExecute");
  if (o.lib.problem.empty() && static_cast<long>(a.get_version()) < kMinCudnnVersion)
    o.lib.problem = o.lib.file + " is cuDNN " + version_text(a.get_version()) + "; lsbench's attention graphs need " +
                    version_text(kMinCudnnVersion) + " or newer";
  return o;
}

const Opened& opened() {
  static const Opened o = open_cudnn();  // opened once, by the first caller
  return o;
}

}  // namespace

std::string cudnn_problem() { return opened().lib.problem; }

std::string cudnn_version() { return opened().lib.problem.empty() ? version_text(opened().api.get_version()) : ""; }

const CudnnApi& cudnn() {
  if (!opened().lib.problem.empty()) throw std::runtime_error(opened().lib.problem);
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
