#include "tasks/png.hpp"

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>
#include <png.h>

#include "nn/errors.hpp"

namespace lsb {

Image8 read_png(const std::string& path, int channels) {
  if (channels != 1 && channels != 3) throw std::invalid_argument("read_png: channels must be 1 or 3");
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);
  // Only regular files: a FIFO or a device named by a metadata line would block or never end.
  if (ec || !std::filesystem::is_regular_file(path, ec))
    throw InputError(fmt::format("{}: not a readable PNG (missing or not a regular file)", path));
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path.c_str()))
    throw InputError(fmt::format("{}: not a readable PNG ({})", path, img.message));
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  // Deflate expands at most about 1032:1, so a header declaring more pixels than the file can hold is
  // corrupt: refused before allocating for it.
  const std::uint64_t pixel_bytes = std::uint64_t{img.width} * img.height * static_cast<std::uint64_t>(channels);
  if (pixel_bytes > 1032 * std::uint64_t{file_bytes} + 4096) {
    png_image_free(&img);
    throw InputError(fmt::format("{}: corrupt PNG (declares {}x{} pixels, more than its {} bytes can hold)", path,
                                 img.width, img.height, file_bytes));
  }
  Image8 out;
  out.width = static_cast<int>(img.width);
  out.height = static_cast<int>(img.height);
  out.channels = channels;
  out.pixels.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.pixels.data(), 0, nullptr)) {
    const std::string why = img.message;
    png_image_free(&img);
    throw InputError(fmt::format("{}: corrupt PNG ({})", path, why));
  }
  return out;
}

void write_png(const std::string& path, const Image8& image) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(image.width);
  img.height = static_cast<png_uint_32>(image.height);
  img.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  const std::string tmp = path + ".tmp";
  if (!png_image_write_to_file(&img, tmp.c_str(), 0, image.pixels.data(), 0, nullptr))
    throw InputError(fmt::format("{}: cannot write PNG ({})", path, img.message));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot write PNG ({})", path, ec.message()));
}

}  // namespace lsb
