// CIFAR-10 binary batches (tasks/image): the input is data_batch_1.bin; the other four training
// batches and the test batch hold one valid record each.
#include "fuzz/harness.hpp"
#include "tasks/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const auto dir = fuzz::scratch() / "cifar-10-batches-bin";
  static const std::string record = [] {
    std::string r(image::kRecordBytes, '\x40');
    r[0] = 3;  // label
    return r;
  }();
  fuzz::write_file(dir / "data_batch_1.bin", fuzz::as_text(data, size));
  for (const char* name : {"data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"})
    fuzz::write_file(dir / name, record);
  fuzz::expect_input_error_or_ok([&] { image::load_cifar10(dir.string(), 0); });
  return 0;
}
