// Files that are either whole or absent: written to PATH.tmp, then renamed over PATH.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {

// Throws InputError naming `path` when it cannot be written.
inline void write_file_atomic(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw InputError(fmt::format("{}: cannot open for writing", path));
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
    f.close();
    if (!f) throw InputError(fmt::format("{}: writing failed", path));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot move into place: {}", path, ec.message()));
}

}  // namespace lsb
