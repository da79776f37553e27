// cuDNN, opened at its first use (nn/cuda/library.hpp, as cuBLAS): a binary built with CUDA starts,
// and every test passes, on a machine without cuDNN; only the `cudnn` attention variant needs it, and it
// says why it cannot run. Only in builds with CUDA.
#pragma once
#include <string>

#include "nn/cuda/device.hpp"  // cudnn_problem(), cudnn_version()

#if __has_include(<cudnn_graph.h>)
#include <cudnn_graph.h>
#define LSBENCH_HAVE_CUDNN_HEADERS 1
#else
#define LSBENCH_HAVE_CUDNN_HEADERS 0
#endif

namespace lsb::cuda {

// The oldest cuDNN whose fused attention graphs lsbench builds: 9.10 (-inf masks, dQ accumulated and
// zeroed by cuDNN itself, no padding workarounds).
constexpr long kMinCudnnVersion = 91000;

#if LSBENCH_HAVE_CUDNN_HEADERS
// The entry points the graph code uses; their types come from the header, so a signature that changes
// fails to compile here instead of misbehaving at run time.
struct CudnnApi {
  decltype(&::cudnnGetVersion) get_version = nullptr;
  decltype(&::cudnnGetErrorString) get_error_string = nullptr;
  decltype(&::cudnnGetLastErrorString) get_last_error_string = nullptr;
  decltype(&::cudnnCreate) create = nullptr;
  decltype(&::cudnnBackendCreateDescriptor) create_descriptor = nullptr;
  decltype(&::cudnnBackendDestroyDescriptor) destroy_descriptor = nullptr;
  decltype(&::cudnnBackendSetAttribute) set_attribute = nullptr;
  decltype(&::cudnnBackendGetAttribute) get_attribute = nullptr;
  decltype(&::cudnnBackendFinalize) finalize = nullptr;
  decltype(&::cudnnBackendExecute) execute = nullptr;
};
// The entry points; std::runtime_error with cudnn_problem() when they cannot be used.
const CudnnApi& cudnn();
// One handle for the process, on the default stream (where every lsbench kernel runs).
cudnnHandle_t cudnn_handle();
// Throws std::runtime_error "cuDNN: <what> failed: <status> (<cuDNN's last message>)" unless OK.
void check_cudnn(cudnnStatus_t status, const char* what);
#endif

}  // namespace lsb::cuda
