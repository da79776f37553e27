// Image (LRA grey CIFAR-10): cifar-10-batches-bin/data_batch_{1..5}.bin and test_batch.bin, records
// of 1 label byte + 3072 bytes (1024 R, 1024 G, 1024 B, row-major 32 x 32). Token = grey level
// round(0.2989 R + 0.5870 G + 0.1140 B), clamped to 255; pixel 0 is a real token (never padding).
#pragma once
#include <cstdint>
#include <string>

#include "tasks/split.hpp"

namespace lsb::image {

constexpr int kVocabSize = 256, kClasses = 10, kLength = 1024;
constexpr std::int64_t kRecordBytes = 3073;

struct Data {
  Split train, val, test;
  std::string root;
};

std::int32_t grey(std::uint8_t r, std::uint8_t g, std::uint8_t b);

// root: the cifar-10-batches-bin directory (or a directory containing it). Validation: a seeded
// 5,000 of the 50,000 training images (10%). Errors are InputError naming the file and record: a
// missing file, a file whose size is not a whole number of records, a label above 9.
Data load_cifar10(const std::string& root, std::uint64_t split_seed);

}  // namespace lsb::image
