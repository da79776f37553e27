#include <catch2/catch.hpp>

#include <limits>

#include <filesystem>
#include <fstream>

#include "nn/errors.hpp"
#include "nn/npy.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {
fs::path tmpdir() {
  const auto p = fs::temp_directory_path() / "lsbench_test_npy";
  fs::create_directories(p);
  return p;
}
// A .npy file with an arbitrary header and payload, as NumPy would write it.
void write_raw(const fs::path& p, const std::string& descr, const std::string& shape, const std::string& payload) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(p, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  f.put(char(header.size() & 0xff));
  f.put(char(header.size() >> 8));
  f << header << payload;
}
}  // namespace

TEST_CASE("npy float32 round trip", "[npy]") {
  const auto p = (tmpdir() / "x.npy").string();
  std::vector<float> v(2 * 3 * 4);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * i - 3;
  write_npy_f32(p, {2, 3, 4}, v.data());
  CHECK(load_npy_f32(p, {2, 3, 4}, "x") == v);
  const auto p1 = (tmpdir() / "b.npy").string();
  write_npy_f32(p1, {5}, v.data());
  CHECK(read_npy(p1).shape == Shape{5});
}

TEST_CASE("npy errors name the file and what was expected", "[npy]") {
  const auto dir = tmpdir();
  std::vector<float> v(6, 1.0f);
  write_npy_f32((dir / "a.npy").string(), {2, 3}, v.data());
  CHECK_THROWS_WITH(load_npy_f32((dir / "a.npy").string(), {3, 2}, "weight wq"),
                    Catch::Contains("a.npy: weight wq must have shape (3, 2), found (2, 3)"));
  write_raw(dir / "d.npy", "<f8", "(2, 3)", std::string(48, '\0'));
  CHECK_THROWS_WITH(load_npy_f32((dir / "d.npy").string(), {2, 3}, "input x"),
                    Catch::Contains("d.npy: input x must be float32 ('<f4'), found dtype '<f8'"));
  write_raw(dir / "short.npy", "<f4", "(2, 3)", std::string(10, '\0'));
  CHECK_THROWS_WITH(read_npy((dir / "short.npy").string()), Catch::Contains("short.npy: data ends early"));
  std::ofstream(dir / "junk.npy") << "hello";
  CHECK_THROWS_WITH(read_npy((dir / "junk.npy").string()), Catch::Contains("junk.npy: not a .npy file"));
  CHECK_THROWS_WITH(read_npy((dir / "missing.npy").string()), Catch::Contains("missing.npy: cannot open"));
  CHECK_THROWS_AS(read_npy((dir / "missing.npy").string()), InputError);
}

TEST_CASE("hostile npy headers are input errors, never a crash or an allocation the file cannot back", "[npy]") {
  const auto dir = tmpdir();
  const std::pair<std::string, std::vector<std::string>> cases[] = {
      {"(4294967296, 4294967296, 8)", {"needs more bytes than the file's"}},  // the product overflows 64 bits
      {"(1099511627776,)", {"needs more bytes than the file's"}},             // 1<<40 floats from 200 bytes
      {"(-3, 2)", {"dimension '-3'", "not a non-negative integer"}},
      {"(2, x)", {"dimension 'x'"}},
      {"(99999999999999999999999,)", {"impossible dimension"}},
  };
  for (const auto& [shape, expected] : cases) {
    INFO(shape);
    write_raw(dir / "h.npy", "<f4", shape, std::string(200, '\0'));
    try {
      read_npy((dir / "h.npy").string());
      FAIL("accepted");
    } catch (const InputError& e) {
      CHECK_THAT(e.what(), Catch::Contains("h.npy"));
      for (const auto& x : expected) CHECK_THAT(e.what(), Catch::Contains(x));
    }
  }
  std::vector<float> inf(4, 1.0f);
  inf[2] = std::numeric_limits<float>::infinity();
  write_npy_f32((dir / "inf.npy").string(), {4}, inf.data());
  CHECK_THROWS_WITH(load_npy_f32((dir / "inf.npy").string(), {4}, "input x"),
                    Catch::Contains("inf.npy: input x holds inf at element 2"));
  write_raw(dir / "f9.npy", "<f9", "(2,)", std::string(18, '\0'));
  CHECK_THROWS_WITH(read_npy((dir / "f9.npy").string()), Catch::Contains("unsupported dtype '<f9'"));
  write_raw(dir / "zero.npy", "<f4", "(0, 3)", "");  // an empty array is fine
  CHECK(read_npy((dir / "zero.npy").string()).shape == Shape{0, 3});
  CHECK(load_npy_f32((dir / "zero.npy").string(), {0, 3}, "input x").empty());  // (a fuzzer's finding under UBSan)
  {  // version 2 announcing a 4 GB header in a 20-byte file
    std::ofstream f(dir / "v2.npy", std::ios::binary);
    f.write("\x93NUMPY\x02\x00\xff\xff\xff\xfe", 12);
    f << "{'descr': '<f4'";
  }
  CHECK_THROWS_WITH(read_npy((dir / "v2.npy").string()), Catch::Contains("truncated header"));
  CHECK_THROWS_WITH(read_npy(dir.string()), Catch::Contains("a directory, not the .npy array"));
}

TEST_CASE("masks load from bool and integer and float arrays and only as 0 or 1", "[npy]") {
  const auto dir = tmpdir();
  write_raw(dir / "mb.npy", "|b1", "(1, 3)", std::string("\x01\x00\x01", 3));
  CHECK(load_npy_mask((dir / "mb.npy").string(), {1, 3}) == std::vector<std::uint8_t>{1, 0, 1});
  const std::int64_t i64[3] = {0, 1, 1};
  write_raw(dir / "mi.npy", "<i8", "(1, 3)", std::string(reinterpret_cast<const char*>(i64), 24));
  CHECK(load_npy_mask((dir / "mi.npy").string(), {1, 3}) == std::vector<std::uint8_t>{0, 1, 1});
  const float f[3] = {1.0f, 1.0f, 0.0f};
  write_raw(dir / "mf.npy", "<f4", "(1, 3)", std::string(reinterpret_cast<const char*>(f), 12));
  CHECK(load_npy_mask((dir / "mf.npy").string(), {1, 3}) == std::vector<std::uint8_t>{1, 1, 0});
  const std::int32_t bad[3] = {0, 2, 1};
  write_raw(dir / "m2.npy", "<i4", "(1, 3)", std::string(reinterpret_cast<const char*>(bad), 12));
  CHECK_THROWS_WITH(load_npy_mask((dir / "m2.npy").string(), {1, 3}), Catch::Contains("element 1 is 2"));
}
