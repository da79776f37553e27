// What the kernel dialect derives from its primitives, written once for both of its machines
// (nn/cuda/kernel_dialect.cuh on the GPU, tests/simt_dialect.hpp on the emulated block; nn/cuda/warp.cuh
// for the kernels outside the dialect). Included inside a namespace after lane_xor and LSB_DEVICE_FN.

// Sums and maxima over the 32 lanes of a warp (every lane gets the result).
[[maybe_unused]] LSB_DEVICE_FN float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += lane_xor(v, o);
  return v;
}
[[maybe_unused]] LSB_DEVICE_FN float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, lane_xor(v, o));
  return v;
}

// The block of query rows this block owns, when a row's work grows with its position (causal attention):
// the last rows first, so that the short blocks fill the end of the grid instead of the long ones.
[[maybe_unused]] LSB_DEVICE_FN unsigned query_block(bool causal) { return causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x; }
