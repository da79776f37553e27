// Error checks for the .cu files: every CUDA and cuBLAS call goes through one of these, and a
// failure becomes a std::runtime_error naming the call, the file and the line.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace lsb::cuda {

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the caller can go on after handling this one
  throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(e) + " in " + call + " (" + file + ":" +
                           std::to_string(line) + ")");
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLAS error ") + std::to_string(static_cast<int>(s)) + " in " + call + " (" +
                           file + ":" + std::to_string(line) + ")");
}

}  // namespace lsb::cuda

#define LSB_CUDA_CHECK(call) ::lsb::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define LSB_CUBLAS_CHECK(call) ::lsb::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad configuration shows up here, a fault in the kernel at the next sync.
#define LSB_CUDA_LAUNCHED() LSB_CUDA_CHECK(cudaGetLastError())
// Blocks of `threads` to cover `count` items.
#define LSB_BLOCKS(count, threads) static_cast<unsigned>(((count) + (threads)-1) / (threads))
