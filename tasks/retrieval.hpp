// Retrieval (Long Range Arena, byte-level document matching with two towers): the loader of the
// official AAN layout, new_aan_pairs.{train,eval,test}.tsv (no header; five TAB-separated fields:
// label, id1, id2, text1, text2; TAB only, no quoting; the label may be a float such as "1.0"), and
// the stand-in generator that writes the same files from IMDb (../shared/spec/lra.md).
#pragma once
#include <cstdint>
#include <string>

#include "tasks/split.hpp"

namespace lsb::retrieval {

constexpr int kVocabSize = 257, kClasses = 2;
constexpr std::int64_t kDocumentBytes = 10000;  // each document's first bytes, before the length cut
constexpr const char* kGeneratorFile = "lsbench-generator.json";

// One line: the label and both documents as tokens (byte + 1 of the first kDocumentBytes, truncated
// to max_len). InputError naming `where` (file:line): not five fields, a label that is not 0 or 1,
// an empty document.
struct Pair {
  int label = 0;
  std::vector<std::int32_t> doc1, doc2;
};
Pair parse_line(const std::string& line, std::int64_t max_len, const std::string& where);

struct Data {
  Split train, val, test;  // val: the eval file
  std::string root;
};
// dir: the folder holding the three files, or one containing tsv_data/ or lra_release/.../tsv_data.
Data load_aan(const std::string& dir, std::int64_t max_len);

// The stand-in: pairs of IMDb reviews, label 1 for two different reviews of the same title (the
// urls_{pos,neg}.txt files name each review's title) and 0 for reviews of different titles, half of
// each, seeded. Train pairs from the train part; eval and test pairs from two disjoint halves of the
// test part's titles (train and test titles are disjoint already). Text: the whole review with TAB,
// CR and LF replaced by spaces. Ids: imdb-<part>-<pos|neg>-<id>.
struct PairConfig {
  std::uint64_t seed = 0;
  std::int64_t train = 20000, eval = 2000, test = 2000;
};
struct PairStats {
  double seconds = 0;
  std::string imdb_root;
};
PairStats generate_pairs(const std::string& imdb_dir, const std::string& out, const PairConfig& cfg);

}  // namespace lsb::retrieval
