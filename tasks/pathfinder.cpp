#include "tasks/pathfinder.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/random.hpp"

namespace lsb::pathfinder {
namespace fs = std::filesystem;
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr const char* kGeneratorFile = "lsbench-generator.json";

Point at(Point p, double angle, double dist) { return {p.x + dist * std::cos(angle), p.y + dist * std::sin(angle)}; }

double point_segment_distance(Point p, Point a, Point b) {
  const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((p.x - a.x) * dx + (p.y - a.y) * dy) / len2 : 0;
  t = std::clamp(t, 0.0, 1.0);
  return std::hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
}

double cross(Point o, Point a, Point b) { return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x); }

}  // namespace

double paddle_distance(const Paddle& s, const Paddle& t) {
  const double d1 = cross(s.a, s.b, t.a), d2 = cross(s.a, s.b, t.b), d3 = cross(t.a, t.b, s.a), d4 = cross(t.a, t.b, s.b);
  // Proper crossings only: collinear segments give cross products of round-off size and either sign.
  if (d1 * d2 < -1e-12 && d3 * d4 < -1e-12) return 0;
  return std::min({point_segment_distance(s.a, t.a, t.b), point_segment_distance(s.b, t.a, t.b),
                   point_segment_distance(t.a, s.a, s.b), point_segment_distance(t.b, s.a, s.b)});
}

namespace {

// Grows curves paddle by paddle on one canvas; every paddle placed so far is an obstacle.
class Grower {
 public:
  Grower(const Params& p, Rng& rng) : p_(p), rng_(rng) {}

  std::vector<Paddle> placed;

  bool inside(Point q) const {
    const double lo = p_.border + p_.paddle_thickness, hi = p_.size - p_.border - p_.paddle_thickness;
    return q.x >= lo && q.x <= hi && q.y >= lo && q.y <= hi;
  }
  bool fits(const Paddle& c) const {
    if (!inside(c.a) || !inside(c.b)) return false;
    const double clear = p_.paddle_thickness + p_.paddle_margin, reach = p_.paddle_length + clear;
    const Point mc{(c.a.x + c.b.x) / 2, (c.a.y + c.b.y) / 2};
    for (const auto& q : placed) {
      // Paddles whose midpoints are further apart than a paddle length plus the clearance cannot touch.
      const double dx = (q.a.x + q.b.x) / 2 - mc.x, dy = (q.a.y + q.b.y) / 2 - mc.y;
      if (dx * dx + dy * dy > reach * reach) continue;
      if (paddle_distance(c, q) < clear) return false;
    }
    return true;
  }

  // A curve of `length` paddles from `start` heading at `angle`; false (and nothing placed) on failure.
  bool grow(Point start, double angle, int length, std::vector<Paddle>& curve) {
    const std::size_t mark = placed.size();
    curve.clear();
    Paddle first{start, at(start, angle, p_.paddle_length)};
    if (!fits(first)) return false;
    place(first, curve);
    std::vector<double> weight(static_cast<std::size_t>(p_.directions));
    for (int k = 1; k < length; ++k) {
      // The next paddle starts paddle_length + 2 margin along the current direction from the current
      // paddle's start; its direction is drawn from the candidates by continuity, free ones only.
      const Paddle& cur = curve.back();
      const Point s = at(cur.a, angle, p_.paddle_length + 2 * p_.paddle_margin);
      double total = 0;
      for (int j = 0; j < p_.directions; ++j) {
        double change = 2 * kPi * j / p_.directions;
        if (change > kPi) change = 2 * kPi - change;
        const double c = std::cos(std::min(change * p_.continuity, kPi / 2));
        double w = c > 1e-6 ? c * c : 0.0;  // cos(pi / 2) is 6e-17, not 0: such a turn is never taken
        if (w > 0 && !fits({s, at(s, angle + 2 * kPi * j / p_.directions, p_.paddle_length)})) w = 0;
        weight[static_cast<std::size_t>(j)] = w;
        total += w;
      }
      if (total <= 0) {
        placed.resize(mark);
        curve.clear();
        return false;
      }
      double u = rng_.uniform() * total;
      int pick = 0;
      while (pick + 1 < p_.directions && (u -= weight[static_cast<std::size_t>(pick)]) >= 0) ++pick;
      while (weight[static_cast<std::size_t>(pick)] <= 0) --pick;  // round-off past the last positive weight
      angle += 2 * kPi * pick / p_.directions;
      place({s, at(s, angle, p_.paddle_length)}, curve);
    }
    return true;
  }

 private:
  void place(const Paddle& q, std::vector<Paddle>& curve) {
    placed.push_back(q);
    curve.push_back(q);
  }
  const Params& p_;
  Rng& rng_;
};

// Antialiased rendering: coverage at aa_scale x the resolution (a soft one-pixel edge), the brightest
// shape winning where shapes overlap, then a box filter down to S x S, then scaled to a maximum of 255.
Image8 render(const Params& p, const Sample& s) {
  const int A = p.aa_scale, W = p.size * A;
  std::vector<float> hi(static_cast<std::size_t>(W) * W, 0.0f);
  auto stamp = [&](double x0, double y0, double x1, double y1, double radius, double contrast, auto distance) {
    const int X0 = std::max(0, static_cast<int>(std::floor((x0 - radius - 1) * A)));
    const int X1 = std::min(W - 1, static_cast<int>(std::ceil((x1 + radius + 1) * A)));
    const int Y0 = std::max(0, static_cast<int>(std::floor((y0 - radius - 1) * A)));
    const int Y1 = std::min(W - 1, static_cast<int>(std::ceil((y1 + radius + 1) * A)));
    for (int Y = Y0; Y <= Y1; ++Y)
      for (int X = X0; X <= X1; ++X) {
        const double d = distance(Point{(X + 0.5) / A, (Y + 0.5) / A});
        const double cover = std::clamp((radius - d) * A + 0.5, 0.0, 1.0);
        float& v = hi[static_cast<std::size_t>(Y) * W + X];
        v = std::max(v, static_cast<float>(cover * contrast));
      }
  };
  auto paddles = [&](const std::vector<Paddle>& curve) {
    for (const auto& q : curve)
      stamp(std::min(q.a.x, q.b.x), std::min(q.a.y, q.b.y), std::max(q.a.x, q.b.x), std::max(q.a.y, q.b.y),
            p.paddle_thickness / 2, p.paddle_contrast, [&](Point c) { return point_segment_distance(c, q.a, q.b); });
  };
  paddles(s.curve_a);
  paddles(s.curve_b);
  for (const auto& d : s.distractors) paddles(d);
  for (const Point m : {s.marker1, s.marker2})
    stamp(m.x, m.y, m.x, m.y, p.marker_radius, p.target_contrast, [&](Point c) { return std::hypot(c.x - m.x, c.y - m.y); });
  std::vector<float> lo(static_cast<std::size_t>(p.size) * p.size, 0.0f);
  float mx = 0;
  for (int y = 0; y < p.size; ++y)
    for (int x = 0; x < p.size; ++x) {
      float sum = 0;
      for (int dy = 0; dy < A; ++dy)
        for (int dx = 0; dx < A; ++dx) sum += hi[static_cast<std::size_t>(y * A + dy) * W + x * A + dx];
      lo[static_cast<std::size_t>(y) * p.size + x] = sum / static_cast<float>(A * A);
      mx = std::max(mx, lo[static_cast<std::size_t>(y) * p.size + x]);
    }
  Image8 img{p.size, p.size, 1, std::vector<std::uint8_t>(lo.size())};
  for (std::size_t i = 0; i < lo.size(); ++i)
    img.pixels[i] = static_cast<std::uint8_t>(std::lround(mx > 0 ? 255.0f * lo[i] / mx : 0.0f));
  return img;
}

std::uint64_t image_seed(std::uint64_t seed, std::int64_t i) {
  Rng r(seed ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(i + 1)));
  return r.next();
}

std::vector<std::string> fields_of(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> f;
  for (std::string w; in >> w;) f.push_back(w);
  return f;
}

}  // namespace

std::string difficulty_folder(const std::string& d) {
  if (d == "baseline" || d == "6" || d == "curv_baseline") return "curv_baseline";
  if (d == "9" || d == "curv_contour_length_9") return "curv_contour_length_9";
  if (d == "14" || d == "curv_contour_length_14") return "curv_contour_length_14";
  throw UsageError(fmt::format("--difficulty {}: expected baseline, 9 or 14", d));
}

Params params_for(int size, const std::string& difficulty) {
  const std::string folder = difficulty_folder(difficulty);
  Params p;
  if (size == 128) {
    p.size = 128;
    p.paddle_length = 5, p.paddle_thickness = 1.5, p.paddle_margin = 2, p.continuity = 1.8, p.seed_distance = 20;
    p.marker_radius = 3, p.distractor_count = 8, p.target_contrast = 0.9, p.paddle_contrast = 1.0;
  } else if (size != 32) {
    throw UsageError(fmt::format("--size {}: expected 32 (Pathfinder) or 128 (Path-X)", size));
  }
  p.contour_length = folder == "curv_baseline" ? 6 : folder == "curv_contour_length_9" ? 9 : 14;
  return p;
}

nlohmann::json Params::to_json() const {
  return {{"size", size}, {"contour_length", contour_length}, {"paddle_length", paddle_length},
          {"paddle_thickness", paddle_thickness}, {"paddle_margin", paddle_margin}, {"continuity", continuity},
          {"seed_distance", seed_distance}, {"marker_radius", marker_radius}, {"border", border},
          {"distractor_length", distractor_length}, {"distractor_count", distractor_count},
          {"target_contrast", target_contrast}, {"paddle_contrast", paddle_contrast}, {"aa_scale", aa_scale},
          {"directions", directions}};
}

Sample generate_sample(const Params& p, std::uint64_t seed) {
  Rng rng(seed);
  Sample s;
  s.label = rng.uniform() < 0.5 ? 1 : 0;
  // Curves grow on the antialiasing canvas (S x aa_scale pixels), where the table's lengths apply.
  Params canvas = p;
  canvas.size = p.size * p.aa_scale;
  Grower g(canvas, rng);
  const double lo = canvas.border + canvas.paddle_thickness, span = canvas.size - 2 * lo;
  auto random_point = [&] { return Point{lo + span * rng.uniform(), lo + span * rng.uniform()}; };
  // Two target curves whose starts are seed_distance apart; if either fails, both start again.
  for (;; ++s.restarts) {
    if (s.restarts > 100000) throw std::logic_error("pathfinder: no two target curves fit (parameters too tight)");
    g.placed.clear();
    const Point a0 = random_point();
    const Point b0 = at(a0, 2 * kPi * rng.uniform(), canvas.seed_distance);
    if (!g.inside(b0)) continue;
    if (g.grow(a0, 2 * kPi * rng.uniform(), canvas.contour_length, s.curve_a) &&
        g.grow(b0, 2 * kPi * rng.uniform(), canvas.contour_length, s.curve_b))
      break;
  }
  for (int d = 0; d < canvas.distractor_count; ++d) {
    std::vector<Paddle> curve;
    if (g.grow(random_point(), 2 * kPi * rng.uniform(), canvas.distractor_length, curve)) s.distractors.push_back(curve);
  }
  // Into image coordinates, then drawn.
  const double k = 1.0 / p.aa_scale;
  auto scale = [k](std::vector<Paddle>& curve) {
    for (auto& q : curve) q = {{q.a.x * k, q.a.y * k}, {q.b.x * k, q.b.y * k}};
  };
  scale(s.curve_a);
  scale(s.curve_b);
  for (auto& d : s.distractors) scale(d);
  s.marker1 = s.curve_a.front().a;
  s.marker2 = s.label == 1 ? s.curve_a.back().b : s.curve_b.back().b;
  // Paddles are drawn at least one canvas pixel wide (a thinner stroke would all but vanish in the
  // downsampling; geometry and clearances keep the table's thickness).
  Params image = p;
  image.paddle_thickness = std::max(p.paddle_thickness, 1.0) * k, image.marker_radius *= k;
  s.image = render(image, s);
  return s;
}

GenerateStats generate(const Params& p, const std::string& difficulty, std::int64_t count, std::uint64_t seed,
                       const std::string& out) {
  if (count <= 0) throw UsageError(fmt::format("--count {}: expected a positive number of images", count));
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path root = fs::path(out) / fmt::format("pathfinder{}", p.size) / difficulty_folder(difficulty);
  std::error_code ec;
  fs::create_directories(root / "metadata", ec);
  if (ec) throw InputError(fmt::format("{}: cannot create: {}", root.string(), ec.message()));
  const std::int64_t folders = (count + kImagesPerFolder - 1) / kImagesPerFolder;
  for (std::int64_t k = 0; k < folders; ++k) fs::create_directories(root / "imgs" / std::to_string(k));
  std::vector<int> labels(static_cast<std::size_t>(count));
  std::string error;
#pragma omp parallel for schedule(dynamic, 64)
  for (std::int64_t i = 0; i < count; ++i) {
    try {
      const Sample s = generate_sample(p, image_seed(seed, i));
      labels[static_cast<std::size_t>(i)] = s.label;
      write_png((root / "imgs" / std::to_string(i / kImagesPerFolder) / fmt::format("sample_{}.png", i)).string(),
                s.image);
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = e.what();
    }
  }
  if (!error.empty()) throw InputError(error);
  GenerateStats st{count, 0, 0, root.string()};
  for (std::int64_t k = 0; k < folders; ++k) {
    std::string text;
    for (std::int64_t i = k * kImagesPerFolder; i < std::min(count, (k + 1) * kImagesPerFolder); ++i) {
      text += fmt::format("imgs/{} sample_{}.png {} {} {} {}\n", k, i, i, labels[static_cast<std::size_t>(i)], p.size,
                          p.contour_length);
      st.positives += labels[static_cast<std::size_t>(i)];
    }
    write_file_atomic((root / "metadata" / fmt::format("{}.npy", k)).string(), text);
  }
  const nlohmann::json meta = {{"generator", "lsbench pathfinder"}, {"seed", seed}, {"count", count},
                               {"difficulty", difficulty_folder(difficulty)}, {"params", p.to_json()}};
  write_file_atomic((root / kGeneratorFile).string(), meta.dump(2) + "\n");
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

std::string find_root(const std::string& dir, int size, const std::string& difficulty) {
  const std::string folder = difficulty_folder(difficulty);
  const std::vector<fs::path> candidates = {fs::path(dir), fs::path(dir) / folder,
                                            fs::path(dir) / fmt::format("pathfinder{}", size) / folder};
  for (const auto& c : candidates)
    if (fs::is_directory(c / "metadata")) return c.string();
  throw InputError(fmt::format("{}: no Pathfinder data (looked for metadata/ in it, in {}/ and in pathfinder{}/{}/; make "
                               "some with 'lsbench data generate pathfinder --size {} --difficulty {} --out {}')",
                               dir, folder, size, folder, size, difficulty, dir));
}

Loaded load(const std::string& root, int size, std::int64_t limit) {
  const fs::path meta_dir = fs::path(root) / "metadata";
  std::vector<std::pair<long, fs::path>> files;
  for (const auto& e : fs::directory_iterator(meta_dir)) {
    const std::string stem = e.path().stem().string();
    if (e.path().extension() != ".npy" || stem.empty() || !std::all_of(stem.begin(), stem.end(), ::isdigit)) continue;
    files.emplace_back(std::stol(stem), e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw InputError(fmt::format("{}: no <k>.npy metadata files", meta_dir.string()));
  struct Entry {
    std::string image;
    int label;
  };
  std::vector<Entry> entries;
  for (const auto& [k, path] : files) {
    std::ifstream in(path);
    std::string line;
    for (std::int64_t no = 1; std::getline(in, line); ++no) {
      const auto f = fields_of(line);
      if (f.empty()) continue;
      if (f.size() < 4 || (f[3] != "0" && f[3] != "1"))
        throw InputError(fmt::format("{}:{}: expected 'imgs/<k> sample_<i>.png <i> <label 0|1> ...', got '{}'",
                                     path.string(), no, line.substr(0, 80)));
      entries.push_back({(fs::path(root) / f[0] / f[1]).string(), f[3] == "1" ? 1 : 0});
    }
  }
  if (limit > 0 && static_cast<std::int64_t>(entries.size()) > limit) entries.resize(static_cast<std::size_t>(limit));
  std::vector<std::optional<std::vector<std::int32_t>>> tokens(entries.size());
  std::vector<std::string> why(entries.size());
#pragma omp parallel for schedule(dynamic, 64)
  for (std::size_t i = 0; i < entries.size(); ++i) {
    try {
      const Image8 img = read_png(entries[i].image, 1);
      if (img.width != size || img.height != size) {
        why[i] = fmt::format("{}: {}x{}, expected {}x{}", entries[i].image, img.width, img.height, size, size);
        continue;
      }
      tokens[i].emplace(img.pixels.begin(), img.pixels.end());
    } catch (const InputError& e) {
      why[i] = e.what();
    }
  }
  Loaded out;
  out.root = root;
  out.all.path = root;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!tokens[i]) {
      if (out.skipped++ == 0) out.first_skip = why[i];
      continue;
    }
    out.all.tokens.push_back(std::move(*tokens[i]));
    out.all.labels.push_back(entries[i].label);
  }
  return out;
}

Image8 preview_grid(const std::string& root, int size, int count) {
  Loaded d = load(root, size, count);  // the grid's images only, not the whole data set
  count = std::min<int>(count, static_cast<int>(d.all.size()));
  if (count <= 0) throw InputError(fmt::format("{}: no readable images to preview", root));
  const int scale = std::max(1, 96 / size), frame = 3, tile = size * scale + 2 * frame, gap = 4;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
  const int rows = (count + cols - 1) / cols;
  Image8 g{cols * (tile + gap) + gap, rows * (tile + gap) + gap, 3, {}};
  g.pixels.assign(static_cast<std::size_t>(g.width) * g.height * 3, 255);
  // 3x5 digits 0 and 1, drawn at 2x in the tile's corner.
  static const char* const kDigit[2][5] = {{"###", "#.#", "#.#", "#.#", "###"}, {".#.", "##.", ".#.", ".#.", "###"}};
  for (int n = 0; n < count; ++n) {
    const int ox = gap + (n % cols) * (tile + gap), oy = gap + (n / cols) * (tile + gap);
    const int label = d.all.labels[static_cast<std::size_t>(n)];
    const std::uint8_t rgb[3] = {static_cast<std::uint8_t>(label ? 30 : 220), static_cast<std::uint8_t>(label ? 170 : 40),
                                 40};
    for (int y = 0; y < tile; ++y)
      for (int x = 0; x < tile; ++x) {
        const bool border = x < frame || y < frame || x >= tile - frame || y >= tile - frame;
        const std::uint8_t v =
            border ? 0 : static_cast<std::uint8_t>(d.all.tokens[static_cast<std::size_t>(n)]
                                                              [static_cast<std::size_t>((y - frame) / scale) * size +
                                                               (x - frame) / scale]);
        for (int c = 0; c < 3; ++c) g.at(oy + y, ox + x, c) = border ? rgb[c] : v;
      }
    for (int y = 0; y < 10; ++y)
      for (int x = 0; x < 6; ++x)
        if (kDigit[label][y / 2][x / 2] == '#')
          for (int c = 0; c < 3; ++c) g.at(oy + frame + 2 + y, ox + frame + 2 + x, c) = rgb[c];
  }
  return g;
}

}  // namespace lsb::pathfinder
