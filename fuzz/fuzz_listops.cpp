// ListOps TSV files (tasks/listops): the split loader, and the reference evaluator on the raw text.
#include "fuzz/harness.hpp"
#include "tasks/listops.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const std::string path = (fuzz::scratch() / "basic_train.tsv").string();
  fuzz::write_file(path, fuzz::as_text(data, size));
  fuzz::expect_input_error_or_ok([&] { listops::load_split(path, 2048); });
  fuzz::expect_input_error_or_ok([&] { listops::evaluate(std::string(fuzz::as_text(data, size))); });
  return 0;
}
