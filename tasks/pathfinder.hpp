// Pathfinder and Path-X (Long Range Arena): the seeded curve generator of ../shared/spec/lra.md,
// writing the official layout, and the loader of that layout (it reads the official release as is).
//
// Layout: ROOT/pathfinder<S>/<difficulty>/imgs/<k>/sample_<i>.png (8-bit grey, S x S) and
// ROOT/pathfinder<S>/<difficulty>/metadata/<k>.npy: plain text despite the name, one line per image,
// "imgs/<k> sample_<i>.png <i> <label> ..." (field 4 is the label). Difficulties: curv_baseline (6
// paddles per target curve), curv_contour_length_9, curv_contour_length_14 (LRA's "hard").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tasks/png.hpp"
#include "tasks/split.hpp"

namespace lsb::pathfinder {

constexpr int kVocabSize = 256, kClasses = 2;
constexpr std::int64_t kImagesPerFolder = 1000;

// "baseline" | "6", "9", "14" -> curv_baseline, curv_contour_length_9, curv_contour_length_14; the
// folder names themselves are accepted too. UsageError for anything else.
std::string difficulty_folder(const std::string& difficulty);

// The generator's parameters: those the published generator (drewlinsley/pathfinder, snakes2) ran with for
// LRA (the contour length from the difficulty). Lengths are in image pixels; each paddle and marker is
// drawn at aa_scale x the resolution and resized, as that generator draws them.
struct Params {
  int size = 32;            // S
  int contour_length = 14;  // paddles per target curve
  double paddle_length = 2, paddle_thickness = 0.5, continuity = 1.0, seed_distance = 7;
  std::vector<int> paddle_margins = {1};  // one drawn per image (Path-X: 2 or 3)
  double marker_radius = 1.5;
  double border = 1;  // rows and columns at each edge occupied from the start (the published "padding")
  int distractor_length = 4, distractor_count = 5;
  // The published retry counts: max_paddle_retrial (more orientations for a seed, more draws for the next
  // paddle) and max_distractor_contour_retrial (more tries for a distractor before it is given up).
  int paddle_retrials = 2, distractor_retrials = 4;
  // Target curves are drawn at paddle_contrast * snake_contrast, distractors at snake_contrast, markers
  // at 1; the image is then scaled to a maximum of 255.
  double snake_contrast = 2.0, paddle_contrast = 0.75;
  int aa_scale = 2;
  nlohmann::json to_json() const;
};
Params params_for(int size, const std::string& difficulty);  // size 32 or 128

struct Point {
  double x = 0, y = 0;
};
// A paddle as drawn: a line of paddle_length from the pixel `a` (column x, row y; y down) at `angle`
// (radians) to `b`, at `contrast`.
struct Paddle {
  Point a, b;
  double angle = 0, contrast = 1;
};
struct Sample {
  Image8 image;  // S x S grey, maximum 255
  int label = 0;  // 1: both markers on the ends of curve A
  std::vector<Paddle> curve_a, curve_b;
  std::vector<std::vector<Paddle>> distractors;
  // Markers: curve A's start (its first paddle's a); curve A's end (label 1) or curve B's end (label 0),
  // the last paddle's a (the published generator draws every later paddle from its head back).
  Point marker1, marker2;
  int margin = 1;    // the paddle margin drawn for this image
  int restarts = 0;  // times both target curves were grown again after one failed
};

// One image, a function of (params, seed) alone.
Sample generate_sample(const Params& p, std::uint64_t seed);

struct GenerateStats {
  std::int64_t count = 0, positives = 0;
  double seconds = 0;
  std::string dir;  // the difficulty folder written
};
// Writes `count` images (image i from seed mix(seed, i), so any thread count gives the same files)
// and their metadata under out/pathfinder<S>/<difficulty folder>/, plus lsbench-generator.json.
GenerateStats generate(const Params& p, const std::string& difficulty, std::int64_t count, std::uint64_t seed,
                       const std::string& out);

// Finds the difficulty folder (the one holding metadata/ and imgs/): `dir` itself, or
// dir/<difficulty folder>, or dir/pathfinder<S>/<difficulty folder>. InputError naming what was
// looked for when none exists.
std::string find_root(const std::string& dir, int size, const std::string& difficulty);

struct Loaded {
  Split all;               // every readable image, in metadata order (tokens: grey levels, row-major)
  std::int64_t skipped = 0;
  std::string first_skip;  // the first skipped image and why
  std::string root;
};
// Reads every metadata file (<k>.npy in numeric order) and its images (only the first `limit` images
// when limit > 0). A missing, corrupt or wrong-size image is skipped and counted; a malformed metadata
// line is an InputError naming file and line (every line is checked, whatever the limit).
Loaded load(const std::string& root, int size, std::int64_t limit = 0);

// PIL's 8-bit Lanczos resize of a square grey image (what scipy.misc.imresize(..., interp='lanczos')
// ran in the published generator), byte for byte.
std::vector<std::uint8_t> pil_lanczos_resize(const std::vector<std::uint8_t>& in, int in_size, int out_size);

// PIL's ImageDraw.line((x0, y0) -> (x1, y1), fill=255, width) on a size x size black image (Pillow 9.4, the
// published generator's paddles), pixel for pixel.
std::vector<std::uint8_t> pil_line_image(int size, int x0, int y0, int x1, int y1, int width);

// Per-image statistics of grey levels over a set of images: the mean intensity (0..255) and the shares of
// pixels above 0, above 64 and above 128, each image's values kept (for the two-sample KS statistic) and
// their quantiles over the images (p10, p25, median, p75, p90). What tells two renderings apart.
struct ImageStatistics {
  struct Quantiles {
    double p10 = 0, p25 = 0, p50 = 0, p75 = 0, p90 = 0;
  };
  std::int64_t images = 0;
  std::vector<double> mean_of, nonzero_of, above64_of, above128_of;  // per image
  Quantiles mean, nonzero, above64, above128;
};
ImageStatistics image_statistics(const std::vector<Image8>& images);
// The same over the first `limit` images (0: all) of a folder in the official layout.
ImageStatistics image_statistics(const std::string& root, int size, std::int64_t limit);
// The same statistics from per-image rows ("mean nonzero above64 above128" per line, '#' comments).
ImageStatistics image_statistics_from_rows(const std::string& text, const std::string& name);

// The published generator's statistics at LRA's hard difficulty (size 32 or 128): per-image rows of 1,000
// of its images, run as tests/golden/pathfinder/collect.py says, compiled in.
const ImageStatistics& published_statistics(int size);

// The two-sample Kolmogorov-Smirnov statistic: the largest distance between the two empirical
// distribution functions (0: the same sample; 1: no overlap).
double ks_statistic(std::vector<double> a, std::vector<double> b);

// A grid of the first `count` images (scaled up to at least 96 px), each framed green (label 1) or
// red (label 0) with its label digit in the corner: for a person to look at what was generated.
Image8 preview_grid(const std::string& root, int size, int count);

}  // namespace lsb::pathfinder
