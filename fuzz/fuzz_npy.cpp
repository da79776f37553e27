// .npy files (nn/npy): the header parser and every typed loader over the same bytes.
#include "fuzz/harness.hpp"
#include "nn/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const std::string path = (fuzz::scratch() / "input.npy").string();
  fuzz::write_file(path, fuzz::as_text(data, size));
  Shape shape;
  fuzz::expect_input_error_or_ok([&] { shape = read_npy(path).shape; });
  fuzz::expect_input_error_or_ok([&] {
    Shape s;
    load_npy_ints(path, s, "fuzzed ints");
  });
  // The typed loaders with the shape the header declares (accepted) and with another one (refused).
  for (const Shape& want : {shape, Shape{2, 3}}) {
    fuzz::expect_input_error_or_ok([&] { load_npy_f32(path, want, "fuzzed x"); });
    fuzz::expect_input_error_or_ok([&] { load_npy_mask(path, want); });
  }
  return 0;
}
