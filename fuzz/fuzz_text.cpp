// The IMDb layout of the Text task (tasks/text): the input's first line is a review's file name, the
// rest its content, placed in train/pos beside one valid review in each other folder.
#include "fuzz/harness.hpp"
#include "tasks/text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  namespace fs = std::filesystem;
  const std::string_view in = fuzz::as_text(data, size);
  const std::size_t nl = in.find('\n');
  std::string name(in.substr(0, nl == std::string_view::npos ? in.size() : nl));
  const std::string_view content = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
  // A name the file system can hold in one folder (the loader's concern is what the name says).
  for (char& c : name)
    if (c == '/' || c == '\0') c = '_';
  // (not the name of the fixed review, which must stay)
  if (name.empty() || name == "." || name == ".." || name == "1_7.txt" || name.size() > 200) return 0;
  const fs::path root = fuzz::scratch() / "aclImdb";
  static const bool layout_written = [&] {
    for (const char* part : {"train", "test"})
      for (const char* label : {"pos", "neg"}) fuzz::write_file(root / part / label / "1_7.txt", "A fine film.");
    return true;
  }();
  (void)layout_written;
  static fs::path previous;  // the last input's file, removed so that each run sees one fuzzed review
  std::error_code ec;
  if (!previous.empty()) fs::remove(previous, ec);
  previous = root / "train" / "pos" / name;
  fuzz::write_file(previous, content);
  fuzz::expect_input_error_or_ok([&] { text::load_imdb(root.string(), 512, 0, true); });
  fuzz::expect_input_error_or_ok([&] { text::load_imdb(root.string(), 512, 0, false); });
  return 0;
}
