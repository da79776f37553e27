// Checkpoint files (nn/checkpoint). A file whose checksum does not match is refused before anything
// is parsed, so half of the inputs (first byte odd) get the right checksum appended to reach the
// parser behind it.
#include "fuzz/harness.hpp"
#include "nn/checkpoint.hpp"

namespace {
std::uint64_t fnv1a(std::string_view bytes) {  // the checksum nn/checkpoint.cpp writes
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  std::string bytes(fuzz::as_text(data, size));
  if (size > 0 && (data[0] & 1)) {
    const std::uint64_t h = fnv1a(bytes);
    bytes.append(reinterpret_cast<const char*>(&h), sizeof h);  // little-endian, as written
  }
  const std::string path = (fuzz::scratch() / "step.ckpt").string();
  fuzz::write_file(path, bytes);
  fuzz::expect_input_error_or_ok([&] { read_checkpoint_metadata(path); });
  static Tensor w({2, 3}, MemCategory::parameters, "fuzz w"), b({4}, MemCategory::parameters, "fuzz b");
  fuzz::expect_input_error_or_ok([&] { load_checkpoint(path, {{"w", &w}, {"b", &b}}); });
  return 0;
}
