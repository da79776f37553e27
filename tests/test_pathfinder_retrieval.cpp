// Pathfinder / Path-X: the generator (determinism, balanced labels, both curves drawn, markers on the
// curve ends, pixel statistics alone near chance), the official layout written and read back,
// skipped images and malformed metadata. Retrieval: the AAN TSV parser and loader, its errors, and
// the IMDb stand-in (where the shipped data is present).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <sys/stat.h>
#include <zlib.h>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "tasks/pathfinder.hpp"
#include "tasks/png.hpp"
#include "tasks/retrieval.hpp"
#include "tasks/task.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/data_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

// The brightest pixel within `radius` of a point (image coordinates).
int brightest_near(const Image8& img, pathfinder::Point p, double radius) {
  int best = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (std::hypot(x + 0.5 - p.x, y + 0.5 - p.y) <= radius) best = std::max<int>(best, img.at(y, x));
  return best;
}

}  // namespace

TEST_CASE("pathfinder samples are deterministic with markers on the curve ends", "[pathfinder]") {
  for (const int size : {32, 128}) {
    INFO("S = " << size);
    const auto p = pathfinder::params_for(size, "14");
    CHECK(p.contour_length == 14);
    CHECK(pathfinder::params_for(size, "baseline").contour_length == 6);
    const auto a = pathfinder::generate_sample(p, 77), b = pathfinder::generate_sample(p, 77);
    CHECK(a.image.pixels == b.image.pixels);
    CHECK(a.label == b.label);
    CHECK(pathfinder::generate_sample(p, 78).image.pixels != a.image.pixels);
    int labels[2] = {0, 0};
    for (std::uint64_t seed = 0; seed < (size == 32 ? 60u : 12u); ++seed) {
      const auto s = pathfinder::generate_sample(p, seed);
      ++labels[s.label];
      REQUIRE(s.curve_a.size() == 14);
      REQUIRE(s.curve_b.size() == 14);
      CHECK(s.image.width == size);
      CHECK(*std::max_element(s.image.pixels.begin(), s.image.pixels.end()) == 255);
      // Markers: curve A's start, and the end of A (label 1) or of B (label 0); drawn bright. Every paddle
      // after a curve's first is drawn from its head back, so a curve's end is its last paddle's a.
      CHECK(s.marker1.x == s.curve_a.front().a.x);
      CHECK(s.marker1.y == s.curve_a.front().a.y);
      const auto& end = s.label == 1 ? s.curve_a.back().a : s.curve_b.back().a;
      CHECK(s.marker2.x == end.x);
      CHECK(s.marker2.y == end.y);
      CHECK(brightest_near(s.image, s.marker1, 1.0) >= 100);  // paddles: at most 1.5 / 2 of 255
      CHECK(brightest_near(s.image, s.marker2, 1.0) >= 100);
      CHECK((s.margin == 1 || (size == 128 && (s.margin == 2 || s.margin == 3))));
      const double L = p.paddle_length, m = s.margin;
      for (const auto* curve : {&s.curve_a, &s.curve_b}) {
        // Both target curves are drawn: the middle of every paddle is lit.
        for (const auto& q : *curve)
          CHECK(brightest_near(s.image, {(q.a.x + q.b.x) / 2, (q.a.y + q.b.y) / 2}, 1.0) >= 16);  // background: 0
        // A curve is a chain: each paddle's head lies on the circle of radius L + m around a pivot one step
        // (L + 2m) beyond the previous one's, so consecutive heads are at most 3L + 4m apart (plus rounding),
        // and never on the same pixel.
        for (std::size_t k = 1; k < curve->size(); ++k) {
          const double d = std::hypot((*curve)[k].a.x - (*curve)[k - 1].a.x, (*curve)[k].a.y - (*curve)[k - 1].a.y);
          CHECK(d >= 1);
          CHECK(d <= 3 * L + 4 * m + 3);
        }
      }
      for (const auto& d : s.distractors) CHECK(d.size() == static_cast<std::size_t>(p.distractor_length));
    }
    CHECK(labels[0] > 0);
    CHECK(labels[1] > 0);
  }
}

TEST_CASE("the renderer's Lanczos resize is PIL's, byte for byte", "[pathfinder]") {
  // Expected bytes: Pillow 9.4's Image.resize(..., Image.LANCZOS) on the same 8-bit images (the
  // published generator's scipy.misc.imresize is that call).
  std::vector<std::uint8_t> line(17 * 17, 0);  // ImageDraw.line((8, 8) -> (12, 10)) on a 17 x 17 canvas
  for (const int k : {144, 162, 163, 181, 182}) line[static_cast<std::size_t>(k)] = 255;
  const std::vector<std::uint8_t> want_line = {
      0, 0, 0, 0, 0,  0,   0,   0, 0, 0, 0, 0, 0, 0,  0,   0,   0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 0,
      0, 0, 0, 0, 0,  0,   1,   0, 0, 0, 0, 1, 0, 93, 66,  0,   1, 0, 0, 0, 1, 1, 24, 105, 121, 1, 0,
      0, 0, 0, 0, 0,  0,   6,   0, 0, 0, 0, 0, 0, 1,  3,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK(pathfinder::pil_lanczos_resize(line, 17, 9) == want_line);
  std::vector<std::uint8_t> disc(64 * 64, 0);  // a marker: radius 3 around (row 20, column 30), 64 -> 32
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      if ((y - 20) * (y - 20) + (x - 30) * (x - 30) <= 9) disc[static_cast<std::size_t>(y) * 64 + x] = 255;
  const auto got = pathfinder::pil_lanczos_resize(disc, 64, 32);
  const int want_disc[6][6] = {{0, 0, 0, 0, 0, 0},      {0, 0, 28, 65, 3, 1},      {0, 28, 228, 254, 133, 2},
                               {0, 66, 255, 255, 190, 6}, {0, 0, 132, 178, 55, 1}, {0, 1, 0, 0, 0, 1}};
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) CHECK(got[static_cast<std::size_t>(y + 7) * 32 + x + 12] == want_disc[y][x]);
}

TEST_CASE("the renderer's wide lines are PIL's, pixel for pixel", "[pathfinder]") {
  // Path-X's paddles are lines 3 pixels wide at 2x the resolution. Expected: Pillow 9.4 on every head a
  // whole-degree paddle of 10 pixels reaches from the centre of a 41 x 41 canvas (70 heads;
  // tests/golden/pathfinder/pil_wide_lines.py made the file).
  std::ifstream in(std::string(LSBENCH_GOLDEN_DIR) + "/pathfinder/pil-wide-lines.txt");
  REQUIRE(in);
  int heads = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    int hx = 0, hy = 0;
    fields >> hx >> hy;
    std::vector<std::uint8_t> want(41 * 41, 0);
    for (int index; fields >> index;) want[static_cast<std::size_t>(index)] = 255;
    INFO("head (" << hx << ", " << hy << ")");
    CHECK(pathfinder::pil_line_image(41, 20, 20, hx, hy, 3) == want);
    ++heads;
  }
  CHECK(heads == 70);
}

TEST_CASE("the two-sample KS statistic and the published generator's statistics", "[pathfinder]") {
  // By hand: F_a steps at 1, 2, 3 and F_b at 2, 3, 4, 5; after 1 and after 2 they differ by 1/3 and
  // 2/3 - 1/4 = 5/12; after 3 by 1 - 1/2 = 1/2, the largest.
  CHECK(pathfinder::ks_statistic({3, 1, 2}, {2, 3, 4, 5}) == Approx(0.5));
  CHECK(pathfinder::ks_statistic({1, 2, 3}, {3, 2, 1}) == 0.0);
  CHECK(pathfinder::ks_statistic({1, 2}, {3, 4}) == 1.0);
  CHECK(pathfinder::ks_statistic({1, 1, 1, 2}, {1, 2, 2, 2}) == Approx(0.5));  // ties step together
  const auto rows = pathfinder::image_statistics_from_rows("# comment\n1 0.5 0.25 0.125\n3 0.7 0.35 0.2\n", "rows");
  CHECK(rows.images == 2);
  CHECK(rows.mean.p50 == Approx(2.0));
  CHECK(rows.above128_of[1] == 0.2);
  CHECK_THROWS_WITH(pathfinder::image_statistics_from_rows("1 2 3\n", "bad.tsv"), Catch::Contains("bad.tsv:1"));
  CHECK_THROWS_WITH(pathfinder::image_statistics_from_rows("# x\n1 2 3 nan\n", "bad.tsv"), Catch::Contains("bad.tsv:2"));
  for (const int size : {32, 128}) {
    const auto& pub = pathfinder::published_statistics(size);
    CHECK(pub.images == 1000);
    CHECK(pub.mean.p10 < pub.mean.p90);
  }
}

TEST_CASE("pathfinder and path-x images have the published generator's per-image distributions", "[pathfinder][distribution]") {
  // 1,000 images against the published generator's 1,000 (tests/golden/pathfinder): the two-sample KS
  // statistic of each per-image statistic under 0.087, the 0.1% critical value for 1,000 vs 1,000 (the growth
  // before this one matched only the medians: 0.29 on two of the four at 32 pixels).
  for (const int size : {32, 128}) {
    const auto p = pathfinder::params_for(size, "14");
    std::vector<Image8> images(1000);
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < 1000; ++i) images[static_cast<std::size_t>(i)] = pathfinder::generate_sample(p, 9000 + i).image;
    const auto st = pathfinder::image_statistics(images), &pub = pathfinder::published_statistics(size);
    INFO("S = " << size << ": medians " << st.mean.p50 << " / " << st.nonzero.p50 << " / " << st.above64.p50 << " / "
                << st.above128.p50 << ", published " << pub.mean.p50 << " / " << pub.nonzero.p50 << " / "
                << pub.above64.p50 << " / " << pub.above128.p50);
    CHECK(pathfinder::ks_statistic(st.mean_of, pub.mean_of) < 0.087);
    CHECK(pathfinder::ks_statistic(st.nonzero_of, pub.nonzero_of) < 0.087);
    CHECK(pathfinder::ks_statistic(st.above64_of, pub.above64_of) < 0.087);
    CHECK(pathfinder::ks_statistic(st.above128_of, pub.above128_of) < 0.087);
  }
}

TEST_CASE("pathfinder labels are balanced and pixel histograms alone stay near chance", "[pathfinder]") {
  const auto p = pathfinder::params_for(32, "14");
  const int n = 1200, bins = 16;
  std::vector<std::vector<double>> features;
  std::vector<int> labels;
  for (int i = 0; i < n; ++i) {
    const auto s = pathfinder::generate_sample(p, 1000 + static_cast<std::uint64_t>(i));
    std::vector<double> h(bins + 1, 0.0);
    for (const auto v : s.image.pixels) h[static_cast<std::size_t>(v * bins / 256)] += 1.0 / s.image.pixels.size();
    for (int k = 0; k < bins; ++k) h[static_cast<std::size_t>(k)] = std::log(h[static_cast<std::size_t>(k)] + 1e-4);
    h[bins] = 1.0;  // bias
    features.push_back(h);
    labels.push_back(s.label);
  }
  const double positives = std::count(labels.begin(), labels.end(), 1) / static_cast<double>(n);
  CHECK(std::fabs(positives - 0.5) < 4 * 0.5 / std::sqrt(n));  // a fair coin, 4 standard deviations
  // Logistic regression on standardised log-histograms: trained on 900, tested on 300.
  const int train = 900;
  std::vector<double> mean(bins + 1, 0), sd(bins + 1, 0), w(bins + 1, 0);
  for (int i = 0; i < train; ++i)
    for (int k = 0; k < bins; ++k) mean[k] += features[i][k] / train;
  for (int i = 0; i < train; ++i)
    for (int k = 0; k < bins; ++k) sd[k] += std::pow(features[i][k] - mean[k], 2) / train;
  for (auto& f : features)
    for (int k = 0; k < bins; ++k) f[k] = (f[k] - mean[k]) / std::sqrt(sd[k] + 1e-12);
  for (int epoch = 0; epoch < 300; ++epoch) {
    std::vector<double> g(bins + 1, 0);
    for (int i = 0; i < train; ++i) {
      double z = 0;
      for (int k = 0; k <= bins; ++k) z += w[k] * features[i][k];
      const double err = 1 / (1 + std::exp(-z)) - labels[i];
      for (int k = 0; k <= bins; ++k) g[k] += err * features[i][k] / train;
    }
    for (int k = 0; k <= bins; ++k) w[k] -= 0.5 * g[k];
  }
  int right = 0;
  for (int i = train; i < n; ++i) {
    double z = 0;
    for (int k = 0; k <= bins; ++k) z += w[k] * features[i][k];
    right += (z > 0) == (labels[i] == 1);
  }
  const double acc = right / static_cast<double>(n - train);
  INFO("held-out accuracy of a logistic regression on pixel histograms: " << acc);
  CHECK(acc < 0.5 + 3 * 0.5 / std::sqrt(n - train));  // within 3 standard deviations of chance
}

TEST_CASE("pathfinder data round-trips through the official layout and bad files are named", "[pathfinder][cli]") {
  const auto dir = test::fresh_dir("pathfinder");
  const auto r = test::run_cli(fmt::format("data generate pathfinder --size 32 --difficulty 9 --count 1200 --seed 3 --out {}",
                                           dir.string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  const fs::path root = dir / "pathfinder32" / "curv_contour_length_9";
  CHECK(fs::exists(root / "metadata" / "0.npy"));
  CHECK(fs::exists(root / "metadata" / "1.npy"));
  CHECK(fs::exists(root / "imgs" / "1" / "sample_1199.png"));
  CHECK(pathfinder::find_root(dir.string(), 32, "9") == root.string());
  CHECK_THROWS_AS(pathfinder::find_root(dir.string(), 32, "14"), InputError);
  auto loaded = pathfinder::load(root.string(), 32);
  REQUIRE(loaded.all.size() == 1200);
  CHECK(loaded.skipped == 0);
  // The loaded image equals the generated sample of the same index, and so does its label.
  const Image8 img = read_png((root / "imgs" / "0" / "sample_5.png").string(), 1);
  CHECK(std::vector<std::int32_t>(img.pixels.begin(), img.pixels.end()) == loaded.all.tokens[5]);
  // The same command writes the same bytes (any thread count: image i has its own seed).
  const auto again = test::fresh_dir("pathfinder_again");
  REQUIRE(test::run_cli(fmt::format("data generate pathfinder --size 32 --difficulty 9 --count 1200 --seed 3 --out {} "
                                    "--threads 1",
                                    again.string()))
              .code == 0);
  for (const char* f : {"imgs/0/sample_5.png", "imgs/1/sample_1100.png", "metadata/1.npy"})
    CHECK(test::read_file(root / f) == test::read_file(again / "pathfinder32" / "curv_contour_length_9" / f));
  // The task: 80/10/10 of every image, grey levels as tokens.
  const TaskOptions opt{.data_dir = dir.string(), .difficulty = "9"};
  const TaskData t = load_task("pathfinder", opt);
  CHECK(t.train.size() == 960);
  CHECK(t.val.size() == 120);
  CHECK(t.test.size() == 120);
  CHECK(t.provenance["generated"] == true);
  CHECK(t.provenance["generator"]["seed"] == 3);
  // A missing and a corrupt image are skipped and counted; a malformed metadata line is an error.
  fs::remove(root / "imgs" / "0" / "sample_7.png");
  std::ofstream(root / "imgs" / "0" / "sample_8.png") << "not a png";
  loaded = pathfinder::load(root.string(), 32);
  CHECK(loaded.all.size() == 1198);
  CHECK(loaded.skipped == 2);
  CHECK(loaded.first_skip.find("sample_7.png") != std::string::npos);
  std::ofstream(root / "metadata" / "1.npy", std::ios::app) << "imgs/1 sample_9999.png 9999\n";
  CHECK_THROWS_WITH(pathfinder::load(root.string(), 32), Catch::Contains("1.npy:201"));
  // Preview: a grid image of the first samples.
  const auto pv = test::run_cli(fmt::format("data preview pathfinder {} --difficulty 9 --count 6 -o {}", dir.string(),
                                            (dir / "grid.png").string()));
  CHECK(pv.code == 3);  // the malformed line above stops it, named
  CHECK(pv.output.find("1.npy:201") != std::string::npos);
  fs::remove(root / "metadata" / "1.npy");
  REQUIRE(test::run_cli(fmt::format("data preview pathfinder {} --difficulty 9 --count 6 -o {}", dir.string(),
                                    (dir / "grid.png").string()))
              .code == 0);
  const Image8 grid = read_png((dir / "grid.png").string(), 3);
  CHECK(grid.width == 3 * (96 + 6 + 4) + 4);
  CHECK(grid.height == 2 * (96 + 6 + 4) + 4);
  CHECK(test::run_cli(fmt::format("data generate pathfinder --size 64 --count 1 --out {}", dir.string())).code == 2);
  CHECK(test::run_cli(fmt::format("data generate pathfinder --difficulty 20 --count 1 --out {}", dir.string())).code == 2);
}

TEST_CASE("hostile pathfinder metadata and PNG headers are refused before reading or allocating", "[pathfinder][hardening]") {
  const auto root = test::fresh_dir("pathfinder_hostile");
  fs::create_directories(root / "imgs" / "0");
  fs::create_directories(root / "metadata");
  const fs::path png = root / "imgs" / "0" / "sample_0.png";
  write_png(png.string(), Image8{32, 32, 1, std::vector<std::uint8_t>(32 * 32, 9)});
  auto metadata = [&](const std::string& lines) { std::ofstream(root / "metadata" / "0.npy") << lines; };
  metadata("imgs/0 sample_0.png 0 1\n");
  REQUIRE(pathfinder::load(root.string(), 32).all.size() == 1);
  // Image paths that leave the dataset folder (a relative climb, an absolute path) are malformed lines.
  metadata("imgs/0 sample_0.png 0 1\n../../.. etc/passwd 1 0\n");
  CHECK_THROWS_WITH(pathfinder::load(root.string(), 32), Catch::Contains("0.npy:2") && Catch::Contains("leaves the dataset folder"));
  metadata("/dev stdin 0 1\n");
  CHECK_THROWS_WITH(pathfinder::load(root.string(), 32), Catch::Contains("leaves the dataset folder"));
  metadata(std::string("imgs/0 sample_0.png 0 1\nimgs/0 sample_0.png\0/x 0 1\n", 51));
  CHECK_THROWS_WITH(pathfinder::load(root.string(), 32), Catch::Contains("0.npy:2") && Catch::Contains("NUL"));
  // A FIFO where an image should be is skipped as unreadable, not read (which would block forever).
  REQUIRE(::mkfifo((root / "imgs" / "0" / "sample_1.png").c_str(), 0600) == 0);
  metadata("imgs/0 sample_0.png 0 1\nimgs/0 sample_1.png 1 0\n");
  const auto loaded = pathfinder::load(root.string(), 32);
  CHECK(loaded.all.size() == 1);
  CHECK(loaded.skipped == 1);
  CHECK_THAT(loaded.first_skip, Catch::Contains("not a regular file"));
  // A metadata file number beyond any integer is named, not an internal error.
  metadata("imgs/0 sample_0.png 0 1\n");
  std::ofstream(root / "metadata" / "99999999999999999999999.npy") << "imgs/0 sample_0.png 0 1\n";
  CHECK_THROWS_WITH(pathfinder::load(root.string(), 32), Catch::Contains("99999999999999999999999.npy") && Catch::Contains("out of range"));
  // A PNG header declaring 1,000,000 x 1,000,000 pixels in a few dozen bytes is corrupt: refused before
  // a terabyte is asked for. (The valid image's IHDR width and height rewritten, its CRC recomputed.)
  std::string bytes = test::read_file(png);
  REQUIRE(bytes.substr(12, 4) == "IHDR");
  for (int k : {16, 20}) {
    const std::uint32_t big = 1000000;
    for (int b = 0; b < 4; ++b) bytes[static_cast<std::size_t>(k + b)] = static_cast<char>((big >> (24 - 8 * b)) & 0xff);
  }
  const std::uint32_t crc = static_cast<std::uint32_t>(
      ::crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 12), 17));  // "IHDR" + its 13 data bytes
  for (int b = 0; b < 4; ++b) bytes[static_cast<std::size_t>(29 + b)] = static_cast<char>((crc >> (24 - 8 * b)) & 0xff);
  const fs::path huge = root / "huge.png";
  std::ofstream(huge, std::ios::binary) << bytes;
  CHECK_THROWS_WITH(read_png(huge.string(), 1), Catch::Contains("huge.png") && Catch::Contains("1000000x1000000"));
  fs::remove_all(root);
}

TEST_CASE("retrieval lines parse as the AAN layout says and bad ones are named", "[retrieval]") {
  const auto p = retrieval::parse_line("1.0\ta\tb\tab\tc", 4096, "f:1");
  CHECK(p.label == 1);
  CHECK(p.doc1 == std::vector<std::int32_t>{'a' + 1, 'b' + 1});
  CHECK(p.doc2 == std::vector<std::int32_t>{'c' + 1});
  CHECK(retrieval::parse_line("0\ta\tb\t\"x,y\"\tz", 4096, "f:1").doc1.size() == 5);  // no quote handling
  CHECK(retrieval::parse_line("0\ta\tb\tabcdef\tz", 3, "f:1").doc1.size() == 3);     // truncated
  const std::string long_doc(20000, 'q');
  CHECK(retrieval::parse_line("0\ta\tb\t" + long_doc + "\tz", 1 << 20, "f:1").doc1.size() == 10000);  // first 10,000 bytes
  CHECK_THROWS_WITH(retrieval::parse_line("1\ta\tb\tc", 10, "f.tsv:7"), Catch::Contains("f.tsv:7") && Catch::Contains("got 4"));
  CHECK_THROWS_WITH(retrieval::parse_line("2\ta\tb\tc\td", 10, "f.tsv:8"), Catch::Contains("f.tsv:8"));
  CHECK_THROWS_WITH(retrieval::parse_line("yes\ta\tb\tc\td", 10, "f.tsv:9"), Catch::Contains("not 0 or 1"));
  CHECK_THROWS_WITH(retrieval::parse_line("1\ta\tb\t\td", 10, "f.tsv:3"), Catch::Contains("empty document"));

  const auto dir = test::fresh_dir("retrieval_layout");
  fs::create_directories(dir / "tsv_data");
  for (const char* split : {"train", "eval", "test"})
    std::ofstream(dir / "tsv_data" / fmt::format("new_aan_pairs.{}.tsv", split)) << "1\tx\ty\thello\tworld\n0.0\tx\tz\tab\tcd\n";
  TaskOptions opt;
  opt.data_dir = dir.string();
  const TaskData t = load_task("retrieval", opt);
  CHECK(t.train.pairs());
  CHECK(t.test.size() == 2);
  CHECK(t.train.tokens2[1] == std::vector<std::int32_t>{'c' + 1, 'd' + 1});
  CHECK(t.provenance["generated"] == false);
  Batch batch;
  const std::int64_t idx[2] = {1, 0};
  make_batch(t.train, idx, 2, 6, batch);
  CHECK(batch.tokens.size() == 4 * 6);  // two examples, two documents each
  CHECK(batch.tokens[2 * 6] == 'c' + 1);  // the second documents follow the first ones
  CHECK(batch.real_tokens == 2 + 2 + 5 + 5);
  std::ofstream(dir / "tsv_data" / "new_aan_pairs.eval.tsv", std::ios::app) << "1\tonly\tfour\tfields\n";
  CHECK_THROWS_WITH(load_task("retrieval", opt), Catch::Contains("new_aan_pairs.eval.tsv:3"));
}

TEST_CASE("the retrieval stand-in from IMDb: balanced pairs, same title = 1, disjoint splits", "[retrieval][data]") {
  const std::string imdb = test::imdb_dir();
  if (imdb.empty()) {
    WARN("skipped: the IMDb archive (../shared/data/aclImdb_v1-labeled.tar.xz) is not beside the checkout");
    return;
  }
  const auto dir = test::fresh_dir("retrieval_pairs");
  const auto r = test::run_cli(fmt::format("data generate retrieval-pairs --from-imdb {} --out {} --train 400 --eval 100 "
                                           "--test 100 --seed 5",
                                           imdb, dir.string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  TaskOptions opt;
  opt.data_dir = dir.string();
  const TaskData t = load_task("retrieval", opt);
  CHECK(t.train.size() == 400);
  CHECK(t.val.size() == 100);
  CHECK(std::count(t.train.labels.begin(), t.train.labels.end(), 1) == 200);
  CHECK(t.provenance["generated"] == true);
  // Ids say where each document came from: train pairs from train, eval and test from test, and the
  // eval and test files share no review.
  std::ifstream train(dir / "new_aan_pairs.train.tsv"), eval(dir / "new_aan_pairs.eval.tsv"),
      test(dir / "new_aan_pairs.test.tsv");
  std::string line;
  while (std::getline(train, line)) CHECK(line.find("\timdb-train-") != std::string::npos);
  std::set<std::string> eval_ids;
  auto ids = [](const std::string& l) {
    const auto a = l.find('\t') + 1, b = l.find('\t', a) + 1;
    return std::make_pair(l.substr(a, l.find('\t', a) - a), l.substr(b, l.find('\t', b) - b));
  };
  while (std::getline(eval, line)) {
    const auto [x, y] = ids(line);
    CHECK(x.rfind("imdb-test-", 0) == 0);
    eval_ids.insert(x), eval_ids.insert(y);
  }
  while (std::getline(test, line)) {
    const auto [x, y] = ids(line);
    CHECK(eval_ids.count(x) == 0);
    CHECK(eval_ids.count(y) == 0);
  }
}
