#include "nn/npy.hpp"

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>
#include <type_traits>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/files.hpp"

namespace lsb {

NpyArray read_npy(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  require_regular_file(path, ".npy array");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  const std::uintmax_t file_size = fs::file_size(path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot read its size ({})", path, ec.message()));
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw InputError(fmt::format("{}: not a .npy file (bad magic)", path));
  const int major = static_cast<unsigned char>(magic[6]);
  std::uint32_t hlen = 0;
  std::uintmax_t offset = 0;
  if (major == 1) {
    unsigned char l[2];
    if (!f.read(reinterpret_cast<char*>(l), 2)) throw InputError(fmt::format("{}: truncated header", path));
    hlen = l[0] | (l[1] << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    unsigned char l[4];
    if (!f.read(reinterpret_cast<char*>(l), 4)) throw InputError(fmt::format("{}: truncated header", path));
    hlen = l[0] | (l[1] << 8) | (l[2] << 16) | (static_cast<std::uint32_t>(l[3]) << 24);
    offset = 12;
  } else {
    throw InputError(fmt::format("{}: unsupported .npy version {}", path, major));
  }
  // Sizes come from the file: each is checked against the file's length before anything is allocated.
  if (offset + hlen > file_size)
    throw InputError(fmt::format("{}: truncated header ({} bytes announced, the file has {})", path, hlen, file_size));
  std::string header(hlen, '\0');
  if (!f.read(header.data(), hlen)) throw InputError(fmt::format("{}: truncated header", path));
  NpyArray a;
  // The header is a Python dict literal; each key's value is read where "'key':" ends (a scan, not
  // std::regex, whose matcher recurses per character and is slow to build).
  auto value_of = [&](std::string_view key) -> std::size_t {
    const std::string quoted = fmt::format("'{}'", key);
    std::size_t p = header.find(quoted);
    if (p == std::string::npos) return p;
    auto skip_space = [&] {
      while (p < header.size() && std::isspace(static_cast<unsigned char>(header[p]))) ++p;
    };
    p += quoted.size();
    skip_space();
    if (p >= header.size() || header[p] != ':') return std::string::npos;
    ++p;
    skip_space();
    return p;
  };
  // The text between `open` at `p` and the next `close`, or nullopt.
  auto delimited = [&](std::size_t p, char open, char close) -> std::optional<std::string> {
    if (p >= header.size() || header[p] != open) return std::nullopt;
    const std::size_t end = header.find(close, p + 1);
    if (end == std::string::npos) return std::nullopt;
    return header.substr(p + 1, end - p - 1);
  };
  const auto descr = delimited(value_of("descr"), '\'', '\'');
  if (!descr || descr->empty()) throw InputError(fmt::format("{}: header has no descr", path));
  a.descr = *descr;
  if (const std::size_t p = value_of("fortran_order"); p != std::string::npos && header.compare(p, 4, "True") == 0)
    throw InputError(fmt::format("{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", path));
  const auto shape = delimited(value_of("shape"), '(', ')');
  if (!shape) throw InputError(fmt::format("{}: header has no shape", path));
  // Dimensions: comma-separated non-negative integers ("(2, 3)", "(5,)", "()").
  const std::string& dims = *shape;
  std::size_t pos = 0;
  while (pos < dims.size()) {
    const std::size_t comma = dims.find(',', pos);
    const std::string tok = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? dims.size() : comma + 1;
    const auto b = tok.find_first_not_of(" \t"), e = tok.find_last_not_of(" \tL");
    if (b == std::string::npos) continue;  // "(5,)": nothing after the last comma
    const std::string d = tok.substr(b, e - b + 1);
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos)
      throw InputError(fmt::format("{}: shape ({}) has a dimension '{}' that is not a non-negative integer", path, dims, d));
    if (d.size() > 18) throw InputError(fmt::format("{}: shape ({}) has an impossible dimension {}", path, dims, d));
    a.shape.push_back(std::stoll(d));
  }
  // dtype: byte order, kind and size of the types numpy writes (bool, ints, floats).
  const std::string& t = a.descr;
  const bool known = t.size() == 3 && (t[0] == '<' || t[0] == '|' || (t[0] == '>' && t[2] == '1')) &&
                     ((t[1] == 'b' && t[2] == '1') || ((t[1] == 'i' || t[1] == 'u') && std::strchr("1248", t[2])) ||
                      (t[1] == 'f' && std::strchr("248", t[2])));
  if (!known)
    throw InputError(fmt::format("{}: unsupported dtype '{}' (little-endian bool, int, uint or float expected)", path, t));
  const std::uintmax_t item = static_cast<std::uintmax_t>(t[2] - '0');
  std::uintmax_t want = item;
  for (const std::int64_t d : a.shape) {
    if (d != 0 && want > (file_size / static_cast<std::uintmax_t>(d)) + 1)  // product past the file's length
      throw InputError(fmt::format("{}: shape {} of '{}' needs more bytes than the file's {}", path, shape_str(a.shape),
                                   t, file_size));
    want *= static_cast<std::uintmax_t>(d);
  }
  if (want > file_size - offset - hlen)
    throw InputError(fmt::format("{}: data ends early ({} of {} bytes for shape {})", path, file_size - offset - hlen,
                                 want, shape_str(a.shape)));
  a.bytes.resize(static_cast<std::size_t>(want));
  if (!f.read(a.bytes.data(), static_cast<std::streamsize>(want)))
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
  if (!out.empty()) std::memcpy(out.data(), a.bytes.data(), a.bytes.size());  // (no null pointers, even for 0 bytes)
  for (std::size_t i = 0; i < out.size(); ++i)  // a NaN or Inf would only come out as NaN results, exit 0
    if (!std::isfinite(out[i]))
      throw InputError(fmt::format("{}: {} holds {} at element {}", path, role, out[i], i));
  return out;
}

namespace {
// Calls f(T{}) with the C++ type of a dtype that read_npy accepted; false for one without (u8, f2).
template <typename F>
bool with_element_type(const std::string& t, F&& f) {
  if (t == "|b1" || t == "|u1") return f(std::uint8_t{}), true;
  if (t == "|i1") return f(std::int8_t{}), true;
  if (t == "<i2") return f(std::int16_t{}), true;
  if (t == "<u2") return f(std::uint16_t{}), true;
  if (t == "<i4") return f(std::int32_t{}), true;
  if (t == "<u4") return f(std::uint32_t{}), true;
  if (t == "<i8") return f(std::int64_t{}), true;
  if (t == "<f4") return f(float{}), true;
  if (t == "<f8") return f(double{}), true;
  return false;
}

template <typename T>
T element(const NpyArray& a, std::int64_t i) {
  T v;
  std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

std::vector<std::uint8_t> load_npy_mask(const std::string& path, const Shape& shape) {
  NpyArray a = read_npy(path);
  if (a.shape != shape)
    throw InputError(fmt::format("{}: mask must have shape {}, found {}", path, shape_str(shape), shape_str(a.shape)));
  std::vector<std::uint8_t> m(numel_of(shape));
  const bool known = with_element_type(a.descr, [&](auto tag) {
    using T = decltype(tag);
    for (std::size_t i = 0; i < m.size(); ++i) {
      const T v = element<T>(a, static_cast<std::int64_t>(i));
      if (!(v == T(0) || v == T(1)))
        throw InputError(fmt::format("{}: mask element {} is {}, expected 0 or 1", path, i, static_cast<double>(v)));
      m[i] = v == T(1);
    }
  });
  if (!known)
    throw InputError(fmt::format("{}: mask dtype '{}' not supported (bool, integers, float32, float64)", path, a.descr));
  return m;
}

std::vector<std::int64_t> load_npy_ints(const std::string& path, Shape& shape, const std::string& role) {
  NpyArray a = read_npy(path);
  shape = a.shape;
  std::vector<std::int64_t> out(numel_of(shape));
  bool integral = false;
  with_element_type(a.descr, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>) {
      integral = true;
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int64_t>(element<T>(a, static_cast<std::int64_t>(i)));
    }
  });
  if (!integral)
    throw InputError(fmt::format("{}: {} must hold integers (int8/16/32/64, uint8/16/32), found dtype '{}'", path,
                                 role, a.descr));
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
  const std::uint16_t hl = static_cast<std::uint16_t>(header.size());
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(hl & 0xff);
  bytes += static_cast<char>(hl >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(numel_of(shape) * 4));
  write_file_atomic(path, bytes);
}

}  // namespace lsb
