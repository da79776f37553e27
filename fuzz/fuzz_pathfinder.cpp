// Pathfinder metadata (tasks/pathfinder): the input is metadata/0.npy (text lines naming images);
// imgs/0/sample_0.png is a valid 32x32 image, so lines naming it load and others are skipped.
#include "fuzz/harness.hpp"
#include "tasks/pathfinder.hpp"
#include "tasks/png.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const auto root = fuzz::scratch() / "curv_baseline";
  static const bool image_written = [&] {
    std::filesystem::create_directories(root / "imgs" / "0");
    write_png((root / "imgs" / "0" / "sample_0.png").string(), Image8{32, 32, 1, std::vector<std::uint8_t>(32 * 32, 7)});
    return true;
  }();
  (void)image_written;
  fuzz::write_file(root / "metadata" / "0.npy", fuzz::as_text(data, size));
  fuzz::expect_input_error_or_ok([&] { pathfinder::load(root.string(), 32); });
  fuzz::expect_input_error_or_ok([&] { pathfinder::load(root.string(), 32, 1); });
  return 0;
}
