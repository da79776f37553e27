// The shipped real data (../shared/data beside the checkout), extracted once into the build's data
// cache. Tests that need it skip with a message where it is absent.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "tasks/archive.hpp"
#include "tasks/listops.hpp"

namespace lsb::test {

// The directory `inner` of the archive, extracted; "" when the archive is not there. Safe when
// several test processes ask at once: each extracts into its own temporary directory and the
// first rename wins.
inline std::string extracted(const std::string& archive, const std::string& inner) {
  namespace fs = std::filesystem;
  const fs::path src = fs::path(LSBENCH_SHARED_DATA) / archive;
  if (!fs::exists(src)) return "";
  const fs::path cache = fs::path(LSBENCH_DATA_CACHE), done = cache / (inner + ".extracted");
  if (!fs::exists(done)) {
    const fs::path tmp = cache / fmt::format("{}.tmp{}", inner, ::getpid());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    extract_archive(src.string(), tmp.string());
    std::error_code ec;
    fs::rename(tmp / inner, cache / inner, ec);  // fails harmlessly when another process was first
    fs::remove_all(tmp);
    if (!fs::exists(done)) std::ofstream(done) << "ok\n";
  }
  return (cache / inner).string();
}

inline std::string imdb_dir() { return extracted("aclImdb_v1-labeled.tar.xz", "aclImdb"); }
inline std::string cifar_dir() { return extracted("cifar-10-binary-from-jpeg-q75.tar.xz", "cifar-10-batches-bin"); }

// Short ListOps data (trees of 10..250 tokens) for the smoke preset, generated once per build into the
// build's data cache (the generator is deterministic). Safe when several test processes ask at once:
// each generates into its own temporary directory and the first rename wins.
inline std::string smoke_listops_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path cache = LSBENCH_DATA_CACHE, d = cache / "listops-smoke-seed1", done = cache / "listops-smoke-seed1.done";
    if (!fs::exists(done)) {
      const fs::path tmp = cache / fmt::format("listops-smoke-seed1.tmp{}", ::getpid());
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      listops::generate({.seed = 1, .train = 5000, .val = 500, .test = 2000, .min_length = 10, .max_length = 250},
                        tmp.string());
      std::error_code ec;
      fs::rename(tmp, d, ec);  // fails harmlessly when another process was first
      fs::remove_all(tmp);
      if (!fs::exists(done)) std::ofstream(done) << "ok\n";
    }
    return d.string();
  }();
  return dir;
}

}  // namespace lsb::test
