// PNG images (tasks/png, libpng's simplified API): read as grey and as RGB.
#include "fuzz/harness.hpp"
#include "tasks/png.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const std::string path = (fuzz::scratch() / "image.png").string();
  fuzz::write_file(path, fuzz::as_text(data, size));
  for (int channels : {1, 3}) fuzz::expect_input_error_or_ok([&] { read_png(path, channels); });
  return 0;
}
