// Sums and maxima over the 32 lanes of a warp (every lane gets the result), written against the kernel
// dialect's lane_xor (nn/cuda/kernel_dialect.cuh on the GPU, tests/simt_dialect.hpp on the emulated
// block). Included inside a namespace after lane_xor and LSB_DEVICE_FN are defined.
LSB_DEVICE_FN float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += lane_xor(v, o);
  return v;
}
LSB_DEVICE_FN float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, lane_xor(v, o));
  return v;
}
