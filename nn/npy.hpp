// NumPy .npy files (format versions 1-3, C order, little-endian), the interop format of
// `lsbench attention run`. Errors are InputError naming the file and what was expected.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/tensor.hpp"

namespace lsb {

struct NpyArray {
  std::string descr;  // e.g. "<f4", "|b1", "<i8"
  Shape shape;
  std::vector<char> bytes;
};

NpyArray read_npy(const std::string& path);
// float32 data of exactly `shape` (descr "<f4"), every element finite; `role` names the array in errors
// ("input x").
std::vector<float> load_npy_f32(const std::string& path, const Shape& shape, const std::string& role);
// A 0/1 mask of `shape` from bool, uint8, int32, int64, float32 or float64 data.
std::vector<std::uint8_t> load_npy_mask(const std::string& path, const Shape& shape);
// Integer data (int8/16/32/64, uint8/16/32, bool) widened to int64; `shape` receives the array's shape.
std::vector<std::int64_t> load_npy_ints(const std::string& path, Shape& shape, const std::string& role);
// Writes float32 data atomically (temporary file, then rename).
void write_npy_f32(const std::string& path, const Shape& shape, const float* data);

}  // namespace lsb
