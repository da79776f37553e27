#include "nn/npy.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw InputError(fmt::format("{}: not a .npy file (bad magic)", path));
  const int major = static_cast<unsigned char>(magic[6]);
  std::uint32_t hlen = 0;
  if (major == 1) {
    unsigned char l[2];
    if (!f.read(reinterpret_cast<char*>(l), 2)) throw InputError(fmt::format("{}: truncated header", path));
    hlen = l[0] | (l[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char l[4];
    if (!f.read(reinterpret_cast<char*>(l), 4)) throw InputError(fmt::format("{}: truncated header", path));
    hlen = l[0] | (l[1] << 8) | (l[2] << 16) | (static_cast<std::uint32_t>(l[3]) << 24);
  } else {
    throw InputError(fmt::format("{}: unsupported .npy version {}", path, major));
  }
  std::string header(hlen, '\0');
  if (!f.read(header.data(), hlen)) throw InputError(fmt::format("{}: truncated header", path));
  NpyArray a;
  std::smatch mt;
  if (!std::regex_search(header, mt, std::regex(R"('descr'\s*:\s*'([^']+)')")))
    throw InputError(fmt::format("{}: header has no descr", path));
  a.descr = mt[1];
  if (std::regex_search(header, mt, std::regex(R"('fortran_order'\s*:\s*True)")))
    throw InputError(fmt::format("{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", path));
  if (!std::regex_search(header, mt, std::regex(R"('shape'\s*:\s*\(([^)]*)\))")))
    throw InputError(fmt::format("{}: header has no shape", path));
  const std::string dims = mt[1];
  std::regex num(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  std::int64_t item = 0;
  if (a.descr.size() >= 3) item = std::stoll(a.descr.substr(2));
  if (item <= 0 || (a.descr[0] == '>' && item > 1))
    throw InputError(fmt::format("{}: unsupported dtype '{}' (little-endian data expected)", path, a.descr));
  const std::int64_t want = numel_of(a.shape) * item;
  a.bytes.resize(static_cast<std::size_t>(want));
  if (!f.read(a.bytes.data(), want))
    throw InputError(fmt::format("{}: data ends early ({} of {} bytes for shape {})", path, f.gcount(), want,
                                 shape_str(a.shape)));
  return a;
}

std::vector<float> load_npy_f32(const std::string& path, const Shape& shape, const std::string& role) {
  NpyArray a = read_npy(path);
  if (a.descr != "<f4")
    throw InputError(fmt::format("{}: {} must be float32 ('<f4'), found dtype '{}'", path, role, a.descr));
  if (a.shape != shape)
    throw InputError(
        fmt::format("{}: {} must have shape {}, found {}", path, role, shape_str(shape), shape_str(a.shape)));
  std::vector<float> out(numel_of(shape));
  std::memcpy(out.data(), a.bytes.data(), a.bytes.size());
  return out;
}

std::vector<std::uint8_t> load_npy_mask(const std::string& path, const Shape& shape) {
  NpyArray a = read_npy(path);
  if (a.shape != shape)
    throw InputError(fmt::format("{}: mask must have shape {}, found {}", path, shape_str(shape), shape_str(a.shape)));
  const std::int64_t n = numel_of(shape);
  std::vector<std::uint8_t> m(n);
  auto take = [&](auto tag) {
    using T = decltype(tag);
    for (std::int64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
      if (!(v == T(0) || v == T(1)))
        throw InputError(fmt::format("{}: mask element {} is {}, expected 0 or 1", path, i, static_cast<double>(v)));
      m[i] = v == T(1);
    }
  };
  const std::string& t = a.descr;
  if (t == "|b1" || t == "|u1")
    take(std::uint8_t{});
  else if (t == "<i4")
    take(std::int32_t{});
  else if (t == "<i8")
    take(std::int64_t{});
  else if (t == "<f4")
    take(float{});
  else if (t == "<f8")
    take(double{});
  else
    throw InputError(fmt::format("{}: mask dtype '{}' not supported (bool, uint8, int32, int64, float32, float64)",
                                 path, t));
  return m;
}

std::vector<std::int64_t> load_npy_ints(const std::string& path, Shape& shape, const std::string& role) {
  NpyArray a = read_npy(path);
  shape = a.shape;
  const std::int64_t n = numel_of(shape);
  std::vector<std::int64_t> out(n);
  auto take = [&](auto tag) {
    using T = decltype(tag);
    for (std::int64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
      out[i] = static_cast<std::int64_t>(v);
    }
  };
  const std::string& t = a.descr;
  if (t == "|u1" || t == "|b1")
    take(std::uint8_t{});
  else if (t == "|i1")
    take(std::int8_t{});
  else if (t == "<i2")
    take(std::int16_t{});
  else if (t == "<u2")
    take(std::uint16_t{});
  else if (t == "<i4")
    take(std::int32_t{});
  else if (t == "<u4")
    take(std::uint32_t{});
  else if (t == "<i8")
    take(std::int64_t{});
  else
    throw InputError(fmt::format("{}: {} must hold integers (int8/16/32/64, uint8/16/32), found dtype '{}'", path,
                                 role, t));
  return out;
}

void write_npy_f32(const std::string& path, const Shape& shape, const float* data) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // "(2, 3)" but "(5,)"
  else if (!shape.empty()) dims.pop_back();
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw InputError(fmt::format("{}: cannot write ({})", path, std::strerror(errno)));
    const std::uint16_t hl = static_cast<std::uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    f.put(static_cast<char>(hl & 0xff));
    f.put(static_cast<char>(hl >> 8));
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(data), numel_of(shape) * 4);
    if (!f) throw InputError(fmt::format("{}: write failed", path));
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace lsb
