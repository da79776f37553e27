#include "nn/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <fmt/format.h>

#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"

namespace lsb {
namespace {

constexpr char kMagic[8] = {'L', 'S', 'B', 'C', 'K', 'P', 'T', '1'};

struct Writer {
  std::string buf;
  void bytes(const void* p, std::size_t n) { buf.append(static_cast<const char*>(p), n); }
  void u64(std::uint64_t v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
};

std::uint64_t fnv1a(const char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ULL;
  return h;
}

// A bounds-checked cursor over the file's bytes.
struct Reader {
  const std::string& path;
  const std::string& buf;
  std::size_t pos = 0;
  void need(std::size_t n) const {
    if (buf.size() - pos < n) throw InputError(fmt::format("{}: truncated checkpoint (at byte {})", path, pos));
  }
  const char* take(std::size_t n) {
    need(n);
    const char* p = buf.data() + pos;
    pos += n;
    return p;
  }
  std::uint64_t u64() {
    std::uint64_t v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
  std::string str() {
    const std::uint64_t n = u64();
    need(n);
    return std::string(take(n), n);
  }
};

struct Parsed {
  std::string metadata;
  struct Item {
    Shape shape;
    const char* data;
  };
  std::map<std::string, Item> tensors;
};

// Reads and verifies the whole file; `buf` owns the bytes the result points into.
Parsed parse(const std::string& path, std::string& buf) {
  require_regular_file(path, "checkpoint");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open checkpoint", path));
  buf.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  if (buf.size() < sizeof kMagic + 8 || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
    throw InputError(fmt::format("{}: not an lsbench checkpoint (bad magic or too short)", path));
  std::uint64_t stored;
  std::memcpy(&stored, buf.data() + buf.size() - 8, 8);
  if (stored != fnv1a(buf.data(), buf.size() - 8))
    throw InputError(fmt::format("{}: checksum mismatch (the file is corrupt or truncated)", path));
  Reader r{path, buf, sizeof kMagic};
  Parsed out;
  out.metadata = r.str();
  const std::uint64_t count = r.u64();
  for (std::uint64_t k = 0; k < count; ++k) {
    std::string name = r.str();
    const std::uint64_t rank = r.u64();
    if (rank > 8) throw InputError(fmt::format("{}: tensor '{}' has rank {}", path, name, rank));
    Shape shape(rank);
    for (auto& d : shape) d = static_cast<std::int64_t>(r.u64());
    const char* data = r.take(static_cast<std::size_t>(numel_of(shape)) * sizeof(float));
    out.tensors[std::move(name)] = {shape, data};
  }
  if (r.pos != buf.size() - 8) throw InputError(fmt::format("{}: trailing bytes after the last tensor", path));
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, const std::string& metadata, const std::vector<CheckpointEntry>& tensors) {
  Writer w;
  w.bytes(kMagic, sizeof kMagic);
  w.str(metadata);
  w.u64(tensors.size());
  for (const auto& [name, t] : tensors) {
    w.str(name);
    w.u64(static_cast<std::uint64_t>(t->rank()));
    for (const auto d : t->shape()) w.u64(static_cast<std::uint64_t>(d));
    if (t->device() == Device::cpu) {
      w.bytes(t->data(), static_cast<std::size_t>(t->bytes()));
    } else {  // through the host
      std::vector<char> host(static_cast<std::size_t>(t->bytes()));
      cuda::copy(host.data(), t->data(), host.size());
      w.bytes(host.data(), host.size());
    }
  }
  w.u64(fnv1a(w.buf.data(), w.buf.size()));
  write_file_atomic(path, std::string_view(w.buf.data(), w.buf.size()));  // durable before it replaces the old one
}

std::string read_checkpoint_metadata(const std::string& path) {
  std::string buf;
  return parse(path, buf).metadata;
}

std::string load_checkpoint(const std::string& path, const std::vector<CheckpointEntry>& tensors) {
  std::string buf;
  Parsed p = parse(path, buf);
  for (const auto& [name, t] : tensors) {
    const auto it = p.tensors.find(name);
    if (it == p.tensors.end()) throw InputError(fmt::format("{}: no tensor '{}' in the checkpoint", path, name));
    if (it->second.shape != t->shape())
      throw InputError(fmt::format("{}: tensor '{}' has shape {}, the model has {}", path, name,
                                   shape_str(it->second.shape), shape_str(t->shape())));
    if (t->device() == Device::cpu)
      std::memcpy(t->data(), it->second.data, static_cast<std::size_t>(t->bytes()));
    else
      cuda::copy(t->data(), it->second.data, static_cast<std::size_t>(t->bytes()));
  }
  return p.metadata;
}

}  // namespace lsb
