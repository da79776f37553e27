// Text (LRA byte-level IMDb): the aclImdb layout {train,test}/{pos,neg}/<id>_<rating>.txt,
// pos = 1, neg = 0. Token = byte + 1 (pad 0, vocab 257), truncated to max_len bytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tasks/split.hpp"

namespace lsb::text {

constexpr int kPad = 0, kVocabSize = 257, kClasses = 2;
// The shipped archive (../shared/data) that holds aclImdb/ (Text, and the Retrieval stand-in made from it).
constexpr const char* kArchive = "aclImdb_v1-labeled.tar.xz";

struct Data {
  Split train, val, test;
  std::string root;
  bool val_from_test = false;
};

// The aclImdb directory: `dir` itself or dir/aclImdb. InputError when neither exists.
std::string find_root(const std::string& dir);

struct Review {
  long long id = 0;
  int label = 0;  // pos 1, neg 0
  std::string path;
};
// The reviews of `part` (train or test) in load order: negatives then positives, each by numeric id.
// InputError naming the directory or file: a missing folder, a name not of the form <id>_<rating>.txt.
std::vector<Review> list_reviews(const std::string& root, const std::string& part);

// root: the aclImdb directory (or a directory containing it). Reviews are read in order of their
// numeric id, negatives first, so the result does not depend on directory order. Validation: a
// seeded 10% hold-out of train, or (val_from_test, the LRA convention) the test split itself.
// Errors are InputError naming the file: missing directories, an empty review, a file name not
// of the form <id>_<rating>.txt.
Data load_imdb(const std::string& root, std::int64_t max_len, std::uint64_t split_seed, bool val_from_test);

}  // namespace lsb::text
