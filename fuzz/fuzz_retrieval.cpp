// Retrieval's AAN TSV files (tasks/retrieval): the input is the train file; eval and test hold one
// valid pair each.
#include "fuzz/harness.hpp"
#include "tasks/retrieval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const auto dir = fuzz::scratch() / "aan";
  fuzz::write_file(dir / "new_aan_pairs.train.tsv", fuzz::as_text(data, size));
  for (const char* part : {"eval", "test"})
    fuzz::write_file(dir / ("new_aan_pairs." + std::string(part) + ".tsv"), "1\ta\tb\tone text\tanother text\n");
  fuzz::expect_input_error_or_ok([&] { retrieval::load_aan(dir.string(), 256); });
  return 0;
}
