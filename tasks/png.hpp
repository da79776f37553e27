// 8-bit PNG files through libpng's simplified API: Pathfinder's images, sample grids, rendered plots.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lsb {

struct Image8 {
  int width = 0, height = 0, channels = 1;  // 1 grey, 3 RGB
  std::vector<std::uint8_t> pixels;         // row-major, channels interleaved: height x width x channels
  std::uint8_t& at(int y, int x, int c = 0) { return pixels[(static_cast<std::size_t>(y) * width + x) * channels + c]; }
  std::uint8_t at(int y, int x, int c = 0) const {
    return pixels[(static_cast<std::size_t>(y) * width + x) * channels + c];
  }
};

// Any PNG converted to `channels` (1: grey, 3: RGB; alpha composed over white is not done: alpha is
// dropped). Throws InputError naming the file and libpng's reason when it is missing or corrupt.
Image8 read_png(const std::string& path, int channels = 1);

// Writes atomically (PATH.tmp, then rename). Throws InputError naming the file on failure.
void write_png(const std::string& path, const Image8& image);

}  // namespace lsb
