// LSB_HOST_DEVICE marks a function that both the host compiler and nvcc's device side compile (so a
// header shared by .cpp and .cu files can hold small formulas both devices use).
#pragma once

#if defined(__CUDACC__)
#define LSB_HOST_DEVICE __host__ __device__
#else
#define LSB_HOST_DEVICE
#endif
