#include "tasks/pathfinder.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/random.hpp"
#include "tasks/registry.hpp"

namespace lsb::pathfinder {
namespace fs = std::filesystem;
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr const char* kGeneratorFile = "lsbench-generator.json";

// ---- Rendering, as the published generator (drewlinsley/pathfinder, snakes2.py) renders ----------
// Its images pass through scipy.misc (imresize, imsave) and PIL; this reproduces those steps:
//   bytescale   float -> uint8 by the array's own minimum and maximum, rounded (scipy.misc.bytescale);
//   resize      PIL's 8-bit Lanczos resampling (support 3, widened by the scale when shrinking; a
//               horizontal then a vertical pass, fixed-point coefficients, clipped to 0..255 after each);
//   a paddle    a 1-pixel PIL line (Bresenham, both ends; wider lines PIL's polygon fill)
//               of length L * aa on a canvas of (2R + 1) * aa - aa + 1 pixels, R = L + ceil(thickness) +
//               margin, byte-scaled, resized to 2R + 1, / 255, times its contrast, and put with its centre
//               on the paddle's start pixel, the brighter value winning;
//   a marker    a disc of radius r * aa on the whole canvas at aa x the resolution, resized, / 255 (1.0);
//   the image   the brightest of all, byte-scaled by its own maximum (imsave).
// Contrasts: target curves paddle_contrast * snake_contrast, distractors snake_contrast, markers 1.

double lanczos(double x) {
  auto sinc = [](double v) { return v == 0.0 ? 1.0 : std::sin(kPi * v) / (kPi * v); };
  return (x >= -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
}

// PIL's resampling coefficients of one axis (in_size -> out_size): for each output, the first input
// and the fixed-point weights.
struct Coefficients {
  static constexpr int kBits = 22;  // PIL's PRECISION_BITS for 8-bit images
  std::vector<int> first;
  std::vector<std::vector<std::int32_t>> weights;
  Coefficients(int in_size, int out_size) {
    const double scale = static_cast<double>(in_size) / out_size, filterscale = std::max(scale, 1.0);
    const double support = 3.0 * filterscale;
    first.resize(static_cast<std::size_t>(out_size));
    weights.resize(static_cast<std::size_t>(out_size));
    for (int o = 0; o < out_size; ++o) {
      const double center = (o + 0.5) * scale;
      const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
      const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
      std::vector<double> w;
      double total = 0;
      for (int x = lo; x < hi; ++x) total += w.emplace_back(lanczos((x - center + 0.5) / filterscale));
      auto& k = weights[static_cast<std::size_t>(o)];
      for (double v : w) {
        v = total != 0.0 ? v / total : v;
        k.push_back(static_cast<std::int32_t>(v < 0 ? -0.5 + v * (1 << kBits) : 0.5 + v * (1 << kBits)));
      }
      first[static_cast<std::size_t>(o)] = lo;
    }
  }
  std::uint8_t apply(const std::uint8_t* in, std::ptrdiff_t stride, int o) const {
    std::int64_t acc = std::int64_t{1} << (kBits - 1);
    const auto& k = weights[static_cast<std::size_t>(o)];
    const std::uint8_t* p = in + first[static_cast<std::size_t>(o)] * stride;
    for (std::size_t x = 0; x < k.size(); ++x) acc += static_cast<std::int64_t>(p[x * stride]) * k[x];
    return static_cast<std::uint8_t>(std::clamp<std::int64_t>(acc >> kBits, 0, 255));
  }
};

// A square 8-bit image resized by PIL's Lanczos: rows first, then columns.
std::vector<std::uint8_t> lanczos_resize(const std::vector<std::uint8_t>& in, int in_size, const Coefficients& c,
                                         int out_size) {
  std::vector<std::uint8_t> rows(static_cast<std::size_t>(in_size) * out_size), out(static_cast<std::size_t>(out_size) * out_size);
  for (int y = 0; y < in_size; ++y)
    for (int x = 0; x < out_size; ++x) rows[static_cast<std::size_t>(y) * out_size + x] = c.apply(&in[static_cast<std::size_t>(y) * in_size], 1, x);
  for (int y = 0; y < out_size; ++y)
    for (int x = 0; x < out_size; ++x) out[static_cast<std::size_t>(y) * out_size + x] = c.apply(&rows[x], out_size, y);
  return out;
}

// scipy.misc.bytescale of non-negative data whose minimum is 0: v -> round(255 v / max).
std::uint8_t bytescale(float v, float max) {
  return static_cast<std::uint8_t>(std::clamp(v * (255.0f / (max > 0 ? max : 1.0f)), 0.0f, 255.0f) + 0.5f);
}

// PIL's ImageDraw.line of width 1: Bresenham from (x0, y0) to (x1, y1), both ends drawn (the same pixels
// as Pillow 9.4 at every angle tried).
void pil_line(std::vector<std::uint8_t>& img, int size, int x0, int y0, int x1, int y1) {
  auto point = [&](int x, int y) {
    if (x >= 0 && y >= 0 && x < size && y < size) img[static_cast<std::size_t>(y) * size + x] = 255;
  };
  int dx = x1 - x0, dy = y1 - y0;
  const int xs = dx < 0 ? -1 : 1, ys = dy < 0 ? -1 : 1;
  dx = std::abs(dx), dy = std::abs(dy);
  if (dx > dy) {
    int e = 2 * dy - dx;
    for (int i = 0; i <= dx; ++i, x0 += xs, e += 2 * dy) {
      point(x0, y0);
      if (e >= 0) y0 += ys, e -= 2 * dx;
    }
  } else {
    int e = 2 * dx - dy;
    for (int i = 0; i <= dy; ++i, y0 += ys, e += 2 * dx) {
      point(x0, y0);
      if (e >= 0) x0 += xs, e -= 2 * dy;
    }
  }
}

// PIL's rounding macros (Pillow's Draw.c): halves away from zero (up) or toward zero (down), sign-symmetric.
int pil_round_up(double f) { return static_cast<int>(f >= 0.0 ? std::floor(f + 0.5f) : -std::floor(std::fabs(f) + 0.5f)); }
int pil_round_down(double f) { return static_cast<int>(f >= 0.0 ? std::ceil(f - 0.5f) : -std::ceil(std::fabs(f) - 0.5f)); }

// PIL's ImageDraw.line of width > 1 (Pillow 9.4's ImagingDrawWideLine on a 32-bit "F" image, what the published
// generator draws its paddles on): the segment's rectangle with PIL's rounded corners, filled by PIL's scanline
// polygon fill, corner fix-ups included (they write the crossing list by edge index, as PIL does). The
// float arithmetic is PIL's: this file is compiled without contracting a * b + c into one rounding.
void pil_wide_line(std::vector<std::uint8_t>& img, int size, int x0, int y0, int x1, int y1, int width) {
  auto hline = [&](int a, int y, int b) {
    if (y < 0 || y >= size) return;
    if (a > b) std::swap(a, b);
    if (a < 0)
      a = 0;
    else if (a >= size)
      return;
    if (b < 0) return;
    b = std::min(b, size - 1);
    std::fill(img.begin() + static_cast<std::ptrdiff_t>(y) * size + a, img.begin() + static_cast<std::ptrdiff_t>(y) * size + b + 1, 255);
  };
  const int dx = x1 - x0, dy = y1 - y0;
  if (dx == 0 && dy == 0) return hline(x0, y0, x0);
  const double big = std::hypot(dx, dy), small = (width - 1) / 2.0;
  const double ratio_max = pil_round_up(small) / big, ratio_min = pil_round_down(small) / big;
  const int dxmin = pil_round_down(ratio_min * dy), dxmax = pil_round_down(ratio_max * dy);
  const int dymin = pil_round_down(ratio_min * dx), dymax = pil_round_down(ratio_max * dx);
  const int v[4][2] = {{x0 - dxmin, y0 + dymax}, {x1 - dxmin, y1 + dymax}, {x1 + dxmax, y1 - dymin}, {x0 + dxmax, y0 - dymin}};
  struct Edge {
    int xmin, xmax, ymin, ymax, x0, y0;
    float dx;
    float x_at(int y) const { return static_cast<float>(y - y0) * dx + static_cast<float>(x0); }
  };
  std::vector<Edge> edges;
  int ymin = size - 1, ymax = 0;
  for (int i = 0; i < 4; ++i) {
    const int ax = v[i][0], ay = v[i][1], bx = v[(i + 1) % 4][0], by = v[(i + 1) % 4][1];
    const Edge e{std::min(ax, bx), std::max(ax, bx), std::min(ay, by), std::max(ay, by), ax, ay,
                 ay == by ? 0.0f : static_cast<float>(bx - ax) / static_cast<float>(by - ay)};
    ymin = std::min(ymin, e.ymin), ymax = std::max(ymax, e.ymax);
    if (e.ymin == e.ymax) {
      hline(e.xmin, e.ymin, e.xmax);
      continue;
    }
    edges.push_back(e);
  }
  ymin = std::max(ymin, 0), ymax = std::min(ymax, size);
  std::vector<float> xx(2 * edges.size());
  for (; ymin <= ymax; ++ymin) {
    std::size_t j = 0;
    for (std::size_t i = 0; i < edges.size(); ++i) {
      const Edge& cur = edges[i];
      if (ymin < cur.ymin || ymin > cur.ymax) continue;
      xx[j++] = cur.x_at(ymin);
      if (ymin == cur.ymax && ymin < ymax) {  // PIL: "needed to draw consistent polygons"
        xx[j] = xx[j - 1];
        ++j;
      } else if (cur.dx != 0 && std::roundf(xx[j - 1]) == xx[j - 1]) {  // PIL: "connect discontiguous corners"
        for (std::size_t k = 0; k < i; ++k) {
          const Edge& other = edges[k];
          if ((cur.dx > 0 && other.dx <= 0) || (cur.dx < 0 && other.dx >= 0)) continue;
          if (((ymin == cur.ymin && ymin == other.ymin) || (ymin == cur.ymax && ymin == other.ymax)) &&
              xx[j - 1] == other.x_at(ymin)) {
            const int offset = ymin == ymax ? -1 : 1;
            const double here = cur.x_at(ymin + offset), there = other.x_at(ymin + offset);
            if (ymin == cur.ymax)
              xx[k] = static_cast<float>(cur.dx > 0 ? std::fmax(here, there) + 1 : std::fmin(here, there) - 1);
            else
              xx[k] = static_cast<float>(cur.dx > 0 ? std::fmin(here, there) : std::fmax(here, there) + 1);
            break;
          }
        }
      }
    }
    std::sort(xx.begin(), xx.begin() + static_cast<std::ptrdiff_t>(j));
    for (std::size_t i = 1; i < j; i += 2) hline(pil_round_up(xx[i - 1]), ymin, pil_round_down(xx[i]));
  }
}

// The resampling coefficients of one size pair, made once per thread.
const Coefficients& coefficients(int in_size, int out_size) {
  thread_local std::map<std::pair<int, int>, Coefficients> made;
  auto it = made.find({in_size, out_size});
  if (it == made.end()) it = made.emplace(std::make_pair(in_size, out_size), Coefficients(in_size, out_size)).first;
  return it->second;
}

// ---- A paddle, as snakes.draw_line_n_mask draws it ------------------------------------------------
// The sizes of one image's paddles (the margin is drawn per image at 128 pixels).
struct PaddleGeometry {
  int L = 2;         // paddle length (image pixels)
  int T = 1;         // ceil(thickness)
  int m = 1;         // margin
  int A = 2;         // antialiasing scale
  int width_hi = 1;  // round(thickness * A): the line's width at A x the resolution
  PaddleGeometry(const Params& p, int margin)
      : L(static_cast<int>(std::lround(p.paddle_length))), T(static_cast<int>(std::ceil(p.paddle_thickness))), m(margin),
        A(p.aa_scale), width_hi(static_cast<int>(std::lround(p.paddle_thickness * p.aa_scale))) {}
  int R() const { return L + T + m; }        // a stencil's half size: it covers (2R + 1)^2 image pixels
  int size() const { return 2 * R() + 1; }
  int hi_size() const { return 2 * R() * A + 1; }
};

// One paddle drawn from the centre of its (2R + 1)^2 square: its line (PIL's, at A x the resolution,
// Lanczos-resized; 0..255, times the paddle's contrast / 255 when drawn) and its mask (the same line grown
// by a disc of m * A pixels, cv2.dilate, then resized; 0..1: what it occupies).
struct Stencil {
  std::vector<std::uint8_t> line;
  std::vector<float> mask;
};

// The stencil of a paddle at `angle` (radians, y down). It depends only on the geometry and the pixel
// the line's head rounds to, so each is made once per thread.
const Stencil& stencil(const PaddleGeometry& g, double angle) {
  const int C = g.R() * g.A;  // the canvas centre; the head as snakes.translate_coord rounds it (up)
  const int hx = static_cast<int>(std::ceil(C + g.L * g.A * std::cos(angle)));
  const int hy = static_cast<int>(std::ceil(C + g.L * g.A * std::sin(angle)));
  thread_local std::map<std::array<int, 7>, Stencil> made;
  const std::array<int, 7> key{g.L, g.T, g.m, g.A, g.width_hi, hx, hy};
  if (auto it = made.find(key); it != made.end()) return it->second;
  const int B = g.hi_size(), n = g.size();
  std::vector<std::uint8_t> hi(static_cast<std::size_t>(B) * B, 0);
  if (g.width_hi <= 1)
    pil_line(hi, B, C, C, hx, hy);
  else
    pil_wide_line(hi, B, C, C, hx, hy, g.width_hi);
  const Coefficients& c = coefficients(B, n);
  Stencil s;
  s.line = lanczos_resize(hi, B, c, n);
  const int r = g.m * g.A;  // snakes.generate_dilation_struct(m * A): the disc x^2 + y^2 <= r^2
  std::vector<std::uint8_t> grown(hi.size(), 0);
  for (int y = 0; y < B; ++y)
    for (int x = 0; x < B; ++x) {
      if (hi[static_cast<std::size_t>(y) * B + x] == 0) continue;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
          if (dx * dx + dy * dy <= r * r && y + dy >= 0 && y + dy < B && x + dx >= 0 && x + dx < B)
            grown[static_cast<std::size_t>(y + dy) * B + x + dx] = 255;
    }
  for (const std::uint8_t v : lanczos_resize(grown, B, c, n)) s.mask.push_back(static_cast<float>(v) / 255.0f);
  return made.emplace(key, std::move(s)).first->second;
}

// ---- Growth, as the published generator grows curves (snakes.py, snakes2.py) -----------------------
// It keeps an occupancy mask: a float image in [0, 1], the maximum of the masks of the paddles placed so
// far. Pixels are integer (row, column) pairs there and here, and every rounding is its own
// (translate_coord rounds up, the second seed's position to even, a candidate's position toward zero).
// Methods are named after its functions: seed (seed_snake and initialize_two_seeds), extend (extend_snake),
// distractor (make_snake), targets (two_snakes). Its random draws are the same distributions from lsbench's
// generator, not NumPy's stream.

struct Pixel {
  int y = 0, x = 0;
};

Pixel translate(Pixel p, double angle, double dist) {  // snakes.translate_coord
  return {static_cast<int>(std::ceil(p.y + dist * std::sin(angle))), static_cast<int>(std::ceil(p.x + dist * std::cos(angle)))};
}
double flip_by_pi(double angle) { return angle < 0 ? angle + kPi : angle - kPi; }
double radians(int degrees) { return degrees * kPi / 180; }  // NumPy's randint(...) * np.pi / 180

// Rows of bits, bit x of row y for pixel (y, x): the published code's occupancy tests (a pixel whose mask
// value is above 0.3 is occupied) on whole rows at once.
class BitRows {
 public:
  explicit BitRows(int size) : S_(size), W_((size + 63) / 64), w_(static_cast<std::size_t>(S_) * W_, 0) {}
  void set(int y, int x) { w_[static_cast<std::size_t>(y) * W_ + x / 64] |= std::uint64_t{1} << (x % 64); }
  // this |= other moved by (dy, dx): bit (y, x) set where other has (y + dy, x + dx). Word i of a row takes
  // bits from the source's words i + word (shifted down) and i + word + 1 (shifted up), dx = 64 word + shift;
  // words past either end of the row read as zeros. (A seed's dilation: the hottest loop at 128 pixels.)
  void or_moved(const BitRows& o, int dy, int dx) {
    const int word = dx >= 0 ? dx / 64 : (dx - 63) / 64, shift = dx - word * 64;
    const int y0 = std::max(0, -dy), y1 = std::min(S_, S_ - dy);
    for (int i = 0; i < W_; ++i) {
      const int lo = i + word, hi = lo + 1;
      const bool take_lo = lo >= 0 && lo < W_, take_hi = shift != 0 && hi >= 0 && hi < W_;
      const std::uint64_t* src = o.w_.data() + static_cast<std::size_t>(y0 + dy) * W_;
      std::uint64_t* dst = w_.data() + static_cast<std::size_t>(y0) * W_ + i;
      if (take_lo && take_hi) {
        for (int y = y0; y < y1; ++y, src += W_, dst += W_) *dst |= (src[lo] >> shift) | (src[hi] << (64 - shift));
      } else if (take_lo) {
        for (int y = y0; y < y1; ++y, src += W_, dst += W_) *dst |= src[lo] >> shift;
      } else if (take_hi) {
        for (int y = y0; y < y1; ++y, src += W_, dst += W_) *dst |= src[hi] << (64 - shift);
      }
    }
  }
  // This = other dilated by a kernel: the OR of other moved by each offset. Returns *this.
  BitRows& dilated(const BitRows& o, const std::vector<Pixel>& kernel) {
    std::fill(w_.begin(), w_.end(), 0);
    for (const Pixel& k : kernel) or_moved(o, k.y, k.x);
    return *this;
  }
  // Sets every pixel within `band` of an edge.
  void set_border(int band) {
    for (int y = 0; y < S_; ++y) {
      if (y < band || y >= S_ - band) {
        for (int i = 0; i < W_; ++i) w_[static_cast<std::size_t>(y) * W_ + i] = valid(i);
        continue;
      }
      for (int x = 0; x < std::min(band, S_); ++x) set(y, x);
      for (int x = std::max(S_ - band, 0); x < S_; ++x) set(y, x);
    }
  }
  // Pixels whose bit is clear, in row-major order (NumPy's nonzero order): how many, and the k-th.
  std::int64_t count_clear() const {
    std::int64_t n = 0;
    for (int y = 0; y < S_; ++y)
      for (int i = 0; i < W_; ++i) n += std::popcount(~w_[static_cast<std::size_t>(y) * W_ + i] & valid(i));
    return n;
  }
  Pixel kth_clear(std::int64_t k) const {
    for (int y = 0; y < S_; ++y)
      for (int i = 0; i < W_; ++i) {
        std::uint64_t free = ~w_[static_cast<std::size_t>(y) * W_ + i] & valid(i);
        const int c = std::popcount(free);
        if (k >= c) {
          k -= c;
          continue;
        }
        for (; k > 0; --k) free &= free - 1;
        return {y, i * 64 + std::countr_zero(free)};
      }
    throw std::logic_error("pathfinder: kth_clear past the last clear pixel");
  }

 private:
  std::uint64_t valid(int i) const {
    const int bits = std::min(64, S_ - i * 64);
    return bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
  }
  int S_, W_;
  std::vector<std::uint64_t> w_;
};

// seed_snake's dilation kernel for a first paddle at `degrees`: the paddle's mask drawn from (L+m+1, L+m+1)
// on a square of 2(L+m)+1 pixels, where it is 1 (a byte of 255; the struct is cast to uint8), as offsets
// from the square's centre (cv2.dilate's anchor). A pixel p is free for the paddle when no occupied pixel
// lies at p + offset for any offset.
const std::vector<Pixel>& seed_kernel(const PaddleGeometry& g, int degrees) {
  thread_local std::map<std::array<int, 6>, std::vector<Pixel>> made;
  const std::array<int, 6> key{g.L, g.T, g.m, g.A, g.width_hi, degrees};
  if (auto it = made.find(key); it != made.end()) return it->second;
  const Stencil& st = stencil(g, radians(degrees));
  const int K = 2 * (g.L + g.m) + 1, centre = g.L + g.m, head = g.L + g.m + 1, n = g.size();
  std::vector<Pixel> offsets;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const int y = head - g.R() + i, x = head - g.R() + j;
      if (y >= 0 && y < K && x >= 0 && x < K && st.mask[static_cast<std::size_t>(i) * n + j] == 1.0f)
        offsets.push_back({y - centre, x - centre});
    }
  return made.emplace(key, std::move(offsets)).first->second;
}

// get_coords_cmf's circle of one radius: the offsets radius * (sin, cos) at np.arange(0, 360, degrees per
// pixel of arc), and atan2 of every whole-pixel offset within it (the candidates' orientations); made once
// per thread.
struct Circle {
  int r = 0;
  std::vector<double> dy, dx;
  std::vector<double> angles;  // atan2(dy, dx) for dy, dx in [-r - 1, r + 1]
  double angle(int y, int x) const { return angles[static_cast<std::size_t>((y + r + 1) * (2 * r + 3) + x + r + 1)]; }
};

const Circle& circle_of(int radius) {
  thread_local std::map<int, Circle> made;
  if (auto it = made.find(radius); it != made.end()) return it->second;
  Circle c;
  c.r = radius;
  const double step = 360.0 / (2 * radius * kPi);  // degrees per pixel of arc (np.arange's step)
  const auto count = static_cast<int>(std::ceil(360.0 / step));
  for (int k = 0; k < count; ++k) {
    const double rad = k * step * kPi / 180;
    c.dy.push_back(radius * std::sin(rad)), c.dx.push_back(radius * std::cos(rad));
  }
  for (int y = -radius - 1; y <= radius + 1; ++y)
    for (int x = -radius - 1; x <= radius + 1; ++x) c.angles.push_back(std::atan2(y, x));
  return made.emplace(radius, std::move(c)).first->second;
}

class Growth {
 public:
  // One curve while it grows.
  struct Snake {
    std::vector<Paddle> paddles;
    Pixel pivot;             // where the next paddle's circle of candidates is centred, less one step
    double orientation = 0;  // of the last step
    Pixel last_at;           // the last paddle, whose mask joins the occupancy mask when the next is placed
    const Stencil* last = nullptr;
    Pixel origin, terminal;  // the first paddle's tail and the last paddle's head: where markers go
  };

  Growth(const Params& p, int margin, Rng& rng)
      : p_(p), g_(p, margin), S_(p.size), rng_(rng), mask_(static_cast<std::size_t>(S_) * S_, 0.0f), taken_(S_),
        disc_(disc_offsets()) {}

  // two_snakes: both target curves, a paddle of each in turn after the two seeds; false when either
  // fails (the caller starts both again).
  bool targets(Snake (&t)[2]) {
    // The mask holds only the padding at the image's edges (a restart that placed nothing leaves it so:
    // most restarts end at the first seed).
    if (placed_since_reset_) {
      std::fill(mask_.begin(), mask_.end(), 0.0f);
      const int pad = static_cast<int>(p_.border);
      for (int y = 0; y < S_; ++y)
        for (int x = 0; x < S_; ++x)
          if (std::min({y, x, S_ - 1 - y, S_ - 1 - x}) < pad) mask_[index({y, x})] = 1.0f;
      taken_ = BitRows(S_);
      taken_.set_border(pad);
      placed_since_reset_ = false;
    }
    const int band = 2 * static_cast<int>(std::lround(p_.seed_distance));
    const double contrast = p_.paddle_contrast * p_.snake_contrast;
    if (!seed(t[0], contrast, band, false, true)) return false;
    // The second seed: seed_distance from the first's tail in a random whole-degree direction, rounded to
    // even; only its head and pivot are checked (against the image's bounds, not the mask).
    bool placed = false;
    for (int trial = 0; trial <= p_.paddle_retrials && !placed;) {
      const int degrees = static_cast<int>(rng_.below(360)) - 180;
      const double towards = radians(static_cast<int>(rng_.below(360)));
      const Pixel tail{static_cast<int>(std::nearbyint(t[0].origin.y + p_.seed_distance * std::sin(towards))),
                       static_cast<int>(std::nearbyint(t[0].origin.x + p_.seed_distance * std::cos(towards)))};
      if (start(t[1], tail, degrees, contrast))
        placed = true;
      else
        ++trial;
    }
    if (!placed) return false;
    for (int k = 1; k < p_.contour_length; ++k)
      for (Snake& s : t)
        if (!extend(s, contrast)) return false;
    occupy(*t[1].last, t[1].last_at);  // the second curve's last paddle only, as the published code does
    return true;
  }

  // make_snake for a distractor of `length` paddles: placed (and its mask kept) only when it grows whole.
  bool distractor(int length, std::vector<Paddle>& out) {
    Snake s;
    if (!seed(s, p_.snake_contrast, 1, true)) return false;  // a seed places nothing in the mask
    const std::vector<float> before = mask_;
    const BitRows taken_before = taken_;
    bool ok = true;
    for (int k = 1; ok && k < length; ++k) ok = extend(s, p_.snake_contrast);
    if (!ok) {
      mask_ = before;
      taken_ = taken_before;
      return false;
    }
    occupy(*s.last, s.last_at);
    out = std::move(s.paddles);
    return true;
  }

 private:
  std::size_t index(Pixel q) const { return static_cast<std::size_t>(q.y) * S_ + q.x; }
  bool inside(Pixel q) const { return q.y >= 0 && q.y < S_ && q.x >= 0 && q.x < S_; }

  // The rows i and columns j of a stencil placed with its centre at `at` that fall inside the image:
  // pixel (at.y - R + i, at.x - R + j) for i in [i0, i1), j in [j0, j1).
  struct Window {
    int i0, i1, j0, j1;
  };
  Window window(Pixel at) const {
    const int n = g_.size(), R = g_.R();
    return {std::max(0, R - at.y), std::min(n, S_ + R - at.y), std::max(0, R - at.x), std::min(n, S_ + R - at.x)};
  }

  // The occupancy mask = max(mask, a stencil's mask placed at `at`).
  void occupy(const Stencil& st, Pixel at) {
    placed_since_reset_ = true;
    const int n = g_.size(), R = g_.R();
    const Window w = window(at);
    for (int i = w.i0; i < w.i1; ++i) {
      const int y = at.y - R + i;
      const float* from = &st.mask[static_cast<std::size_t>(i) * n];
      float* row = &mask_[index({y, 0})];
      for (int j = w.j0; j < w.j1; ++j) {
        const int x = at.x - R + j;
        float& v = row[x];
        v = std::max(v, from[j]);
        if (v > 0.3f) taken_.set(y, x);
      }
    }
  }

  // Whether a stencil placed at `at` overlaps the occupancy mask: a sum of 1.8 anywhere.
  bool overlaps(const Stencil& st, Pixel at) const {
    const int n = g_.size(), R = g_.R();
    const Window w = window(at);
    for (int i = w.i0; i < w.i1; ++i) {
      const float* from = &st.mask[static_cast<std::size_t>(i) * n];
      const float* row = &mask_[index({at.y - R + i, 0})];
      for (int j = w.j0; j < w.j1; ++j)
        if (static_cast<double>(row[at.x - R + j]) + from[j] >= 1.8) return true;
    }
    return false;
  }

  // A curve's first paddle from `tail` at `degrees`, when its head and pivot fall inside the image.
  bool start(Snake& s, Pixel tail, int degrees, double contrast) {
    const double angle = radians(degrees);
    const Pixel head = translate(tail, angle, g_.L), pivot = translate(head, flip_by_pi(angle), g_.L + g_.m);
    if (!inside(head) || !inside(pivot)) return false;
    s = Snake{};
    s.paddles.push_back(paddle(tail, angle, contrast));
    s.pivot = pivot, s.orientation = angle;
    s.last = &stencil(g_, angle), s.last_at = tail;
    s.origin = s.terminal = tail;
    return true;
  }

  // seed_snake (and initialize_two_seeds' first seed): a tail drawn uniformly among the pixels where a
  // paddle at a random whole-degree orientation touches nothing occupied, the image's outer `band` rows
  // and columns counted as occupied; up to paddle_retrials more orientations when the head or pivot
  // falls outside. `stop_when_full`: fail when under 1% of the image is free (the distractors' rule).
  // `at_reset`: the mask holds only the image's padding (the first target curve's seed, after a restart).
  bool seed(Snake& s, double contrast, int band, bool stop_when_full, bool at_reset = false) {
    if (stop_when_full &&
        static_cast<double>(taken_.count_clear()) / (static_cast<double>(S_) * S_) < 0.01)
      return false;
    std::optional<BitRows> occupied, fresh;  // made when an orientation gets that far (most stop at the corner test)
    for (int trial = 0; trial <= p_.paddle_retrials;) {
      const int degrees = static_cast<int>(rng_.below(360)) - 180;
      const std::vector<Pixel>& kernel = seed_kernel(g_, degrees);
      // cv2.dilate gives a pixel whose kernel lies wholly outside the image the lowest double, and the
      // published find_available_coordinates then finds no pixel at all ("if np.min(mask) < 0"). The kernel
      // is the paddle's core shifted by (1, 1), so this happens at every orientation whose core has no
      // pixel above (or left of) that shift: most of them, which is why the published generator restarts
      // its target curves hundreds of times per image and places few distractors. Small kernels reach
      // wholly outside at a corner first.
      if (outside_at_a_corner(kernel)) return false;
      if (!occupied) {
        occupied.emplace(taken_);
        occupied->set_border(band);
      }
      if (!at_reset && !fresh) fresh.emplace(S_);
      const BitRows& blocked = at_reset ? blocked_at_reset(*occupied, kernel, band, degrees)
                                        : fresh->dilated(*occupied, kernel);
      const std::int64_t available = blocked.count_clear();
      if (available == 0) return false;
      const Pixel tail = blocked.kth_clear(static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(available))));
      if (start(s, tail, degrees, contrast)) return true;
      ++trial;
    }
    return false;
  }

  // The pixels a paddle's kernel at `degrees` cannot take while the mask holds only the padding: the same
  // for every restart of the target curves (about 430 per image at 128 pixels), so made once per thread
  // for each geometry, padding, band and orientation.
  const BitRows& blocked_at_reset(const BitRows& occupied, const std::vector<Pixel>& kernel, int band, int degrees) {
    thread_local std::map<std::array<int, 9>, BitRows> made;
    const std::array<int, 9> key{S_, static_cast<int>(p_.border), band, g_.L, g_.T, g_.m, g_.A, g_.width_hi, degrees};
    if (auto it = made.find(key); it != made.end()) return it->second;
    BitRows blocked(S_);
    return made.emplace(key, std::move(blocked.dilated(occupied, kernel))).first->second;
  }

  bool outside_at_a_corner(const std::vector<Pixel>& kernel) const {
    for (const Pixel corner : {Pixel{0, 0}, Pixel{0, S_ - 1}, Pixel{S_ - 1, 0}, Pixel{S_ - 1, S_ - 1}})
      if (std::none_of(kernel.begin(), kernel.end(), [&](Pixel o) { return inside({corner.y + o.y, corner.x + o.x}); }))
        return true;
    return false;
  }

  // extend_snake: the next paddle's head on the circle of radius L + m around the pivot one step
  // (L + 2m) further along; candidates weighted by continuity and by how free the margin-dilated mask
  // is there; up to paddle_retrials more draws when the paddle's mask would overlap the occupancy mask
  // (a sum of 1.8 anywhere).
  bool extend(Snake& s, double contrast) {
    const Pixel pivot = translate(s.pivot, s.orientation, g_.L + 2 * g_.m);
    const int radius = g_.L + g_.m;
    candidates_.clear();
    const Circle& circle = circle_of(radius);
    for (std::size_t k = 0; k < circle.dy.size(); ++k) {
      const double y = pivot.y + circle.dy[k], x = pivot.x + circle.dx[k];
      if (y >= S_ || y < 0 || x >= S_ || x < 0) continue;
      candidates_.push_back({static_cast<int>(y), static_cast<int>(x)});
    }
    std::sort(candidates_.begin(), candidates_.end(), [](Pixel a, Pixel b) { return a.y != b.y ? a.y < b.y : a.x < b.x; });
    candidates_.erase(std::unique(candidates_.begin(), candidates_.end(),
                                  [](Pixel a, Pixel b) { return a.y == b.y && a.x == b.x; }),
                      candidates_.end());
    if (candidates_.empty()) return false;
    cmf_.clear(), orientations_.clear();
    double total = 0;
    for (const Pixel& c : candidates_) {
      const double o = circle.angle(c.y - pivot.y, c.x - pivot.x);
      double delta = std::abs(o - s.orientation);
      delta = std::min(std::min(delta, 2 * kPi - delta) * p_.continuity, 0.5 * kPi);
      const double w = std::pow(std::max(std::cos(delta), 0.0), 2);
      total += (1.0 - dilated_at(c)) * w;
      cmf_.push_back(total), orientations_.push_back(o);
    }
    if (total < 1e-4) return false;
    for (double& v : cmf_) v /= total;
    for (int trial = 0; trial <= p_.paddle_retrials; ++trial) {
      const double u = rng_.uniform();
      std::size_t pick = 0;  // the first index whose cumulative weight exceeds u (np.argmax: 0 when none does)
      while (pick < cmf_.size() && !(cmf_[pick] > u)) ++pick;
      if (pick == cmf_.size()) pick = 0;
      const Pixel head = candidates_[pick];
      const double angle = flip_by_pi(orientations_[pick]);
      const Stencil& st = stencil(g_, angle);
      if (overlaps(st, head)) continue;
      occupy(*s.last, s.last_at);
      s.paddles.push_back(paddle(head, angle, contrast));
      s.pivot = pivot, s.orientation = orientations_[pick];
      s.last = &st, s.last_at = head, s.terminal = head;
      return true;
    }
    return false;
  }

  // The occupancy mask dilated by the margin's disc (snakes.generate_dilation_struct(m)), at one pixel.
  float dilated_at(Pixel c) const {
    float v = 0;
    const int m = g_.m;
    if (c.y >= m && c.x >= m && c.y < S_ - m && c.x < S_ - m) {  // the whole disc inside: no bounds tests
      const float* at = &mask_[index(c)];
      for (const std::ptrdiff_t o : disc_) v = std::max(v, at[o]);
      return v;
    }
    for (int dy = -m; dy <= m; ++dy)
      for (int dx = -m; dx <= m; ++dx) {
        const Pixel q{c.y + dy, c.x + dx};
        if (dx * dx + dy * dy <= m * m && inside(q)) v = std::max(v, mask_[index(q)]);
      }
    return v;
  }
  // The disc's pixels as offsets in mask_.
  std::vector<std::ptrdiff_t> disc_offsets() const {
    std::vector<std::ptrdiff_t> d;
    for (int dy = -g_.m; dy <= g_.m; ++dy)
      for (int dx = -g_.m; dx <= g_.m; ++dx)
        if (dx * dx + dy * dy <= g_.m * g_.m) d.push_back(static_cast<std::ptrdiff_t>(dy) * S_ + dx);
    return d;
  }

  Paddle paddle(Pixel at, double angle, double contrast) const {
    const Point a{static_cast<double>(at.x), static_cast<double>(at.y)};
    return {a, {a.x + g_.L * std::cos(angle), a.y + g_.L * std::sin(angle)}, angle, contrast};
  }

  const Params& p_;
  PaddleGeometry g_;
  int S_;
  Rng& rng_;
  std::vector<float> mask_;
  BitRows taken_;                   // mask_ > 0.3: the pixels the published code counts as occupied
  bool placed_since_reset_ = true;  // the mask needs its reset to the padding alone
  std::vector<Pixel> candidates_;
  std::vector<double> cmf_, orientations_;
  std::vector<std::ptrdiff_t> disc_;  // after S_ and g_, which it is made from
};

// ---- The image ------------------------------------------------------------------------------------
// Every paddle's line at its contrast and the two markers, the brightest value winning, byte-scaled by
// the image's own maximum (imsave).
class Renderer {
 public:
  Renderer(const Params& p, const PaddleGeometry& g)
      : p_(p), g_(g), canvas_coeffs_(coefficients(p.size * p.aa_scale, p.size)),
        image_(static_cast<std::size_t>(p.size) * p.size, 0.0f) {}

  // A paddle's line, centred on its start pixel (q.a).
  void paddle(const Paddle& q) {
    const Stencil& st = stencil(g_, q.angle);
    const int n = g_.size(), R = g_.R(), sx = static_cast<int>(q.a.x), sy = static_cast<int>(q.a.y);
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x) {
        const int X = sx - R + x, Y = sy - R + y;
        if (X < 0 || Y < 0 || X >= p_.size || Y >= p_.size) continue;
        float& v = image_[static_cast<std::size_t>(Y) * p_.size + X];
        v = std::max(v, static_cast<float>(st.line[static_cast<std::size_t>(y) * n + x] / 255.0 * q.contrast));
      }
  }

  // A marker disc centred on the pixel holding `m` (snakes2.draw_circle): drawn on the canvas at aa x
  // the resolution, resized; only the window that can be lit is computed.
  void marker(Point m) {
    const int S = p_.size, A = p_.aa_scale, W = S * A;
    const int cx = static_cast<int>(std::floor(m.x)), cy = static_cast<int>(std::floor(m.y));
    const double r2 = (p_.marker_radius * A) * (p_.marker_radius * A);
    const int reach = static_cast<int>(std::ceil(p_.marker_radius)) + 4;  // + the filter's support
    const int x0 = std::max(0, cx - reach), x1 = std::min(S, cx + reach + 1), y0 = std::max(0, cy - reach),
              y1 = std::min(S, cy + reach + 1);
    // Input rows and columns the window's outputs read.
    const int ix0 = canvas_coeffs_.first[static_cast<std::size_t>(x0)], iy0 = canvas_coeffs_.first[static_cast<std::size_t>(y0)];
    const int ix1 = std::min(W, canvas_coeffs_.first[static_cast<std::size_t>(x1 - 1)] +
                                    static_cast<int>(canvas_coeffs_.weights[static_cast<std::size_t>(x1 - 1)].size()));
    const int iy1 = std::min(W, canvas_coeffs_.first[static_cast<std::size_t>(y1 - 1)] +
                                    static_cast<int>(canvas_coeffs_.weights[static_cast<std::size_t>(y1 - 1)].size()));
    auto disc = [&](int X, int Y) -> std::uint8_t {
      const double dx = X - cx * A, dy = Y - cy * A;
      return dx * dx + dy * dy <= r2 ? 255 : 0;
    };
    std::vector<std::uint8_t> rows(static_cast<std::size_t>(iy1 - iy0) * (x1 - x0)), line(static_cast<std::size_t>(W), 0);
    for (int Y = iy0; Y < iy1; ++Y) {
      for (int X = ix0; X < ix1; ++X) line[static_cast<std::size_t>(X)] = disc(X, Y);
      for (int x = x0; x < x1; ++x)
        rows[static_cast<std::size_t>(Y - iy0) * (x1 - x0) + (x - x0)] = canvas_coeffs_.apply(line.data(), 1, x);
    }
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        // canvas_coeffs_ reads rows from first[y]; `rows` starts at iy0.
        const std::uint8_t v = canvas_coeffs_.apply(&rows[static_cast<std::size_t>(x - x0)] - static_cast<std::ptrdiff_t>(iy0) * (x1 - x0),
                                                     x1 - x0, y);
        float& out = image_[static_cast<std::size_t>(y) * S + x];
        out = std::max(out, v / 255.0f);
      }
  }

  Image8 finish() const {
    float mx = 0;
    for (const float v : image_) mx = std::max(mx, v);
    Image8 img{p_.size, p_.size, 1, std::vector<std::uint8_t>(image_.size())};
    for (std::size_t i = 0; i < image_.size(); ++i) img.pixels[i] = bytescale(image_[i], mx);
    return img;
  }

 private:
  const Params& p_;
  const PaddleGeometry& g_;
  const Coefficients& canvas_coeffs_;
  std::vector<float> image_;
};

Image8 render(const Params& p, const PaddleGeometry& g, const Sample& s) {
  Renderer r(p, g);
  for (const auto* curve : {&s.curve_a, &s.curve_b})
    for (const auto& q : *curve) r.paddle(q);
  for (const auto& d : s.distractors)
    for (const auto& q : d) r.paddle(q);
  r.marker(s.marker1);
  r.marker(s.marker2);
  return r.finish();
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
    p.paddle_length = 5, p.paddle_thickness = 1.5, p.paddle_margins = {2, 3}, p.continuity = 1.8, p.seed_distance = 20;
    p.marker_radius = 3, p.distractor_count = 8, p.snake_contrast = 0.9, p.paddle_contrast = 1.0;
  } else if (size != 32) {
    throw UsageError(fmt::format("--size {}: expected 32 (Pathfinder) or 128 (Path-X)", size));
  }
  p.contour_length = folder == "curv_baseline" ? 6 : folder == "curv_contour_length_9" ? 9 : 14;
  return p;
}

nlohmann::json Params::to_json() const {
  return {{"size", size}, {"contour_length", contour_length}, {"paddle_length", paddle_length},
          {"paddle_thickness", paddle_thickness}, {"paddle_margins", paddle_margins}, {"continuity", continuity},
          {"seed_distance", seed_distance}, {"marker_radius", marker_radius}, {"border", border},
          {"distractor_length", distractor_length}, {"distractor_count", distractor_count},
          {"paddle_retrials", paddle_retrials}, {"distractor_retrials", distractor_retrials},
          {"snake_contrast", snake_contrast}, {"paddle_contrast", paddle_contrast}, {"aa_scale", aa_scale}};
}

Sample generate_sample(const Params& p, std::uint64_t seed) {
  // snakes2.from_wrapper for one image: the label, the margin, both target curves (both started again
  // until they grow whole), the distractors (each given up after 1 + distractor_retrials tries), markers.
  Rng rng(seed);
  Sample s;
  s.label = static_cast<int>(rng.below(2));
  const int margin = p.paddle_margins.at(rng.below(p.paddle_margins.size()));
  Growth growth(p, margin, rng);
  Growth::Snake targets[2];
  while (!growth.targets(targets))
    if (++s.restarts > 100000) throw std::logic_error("pathfinder: no two target curves fit (parameters too tight)");
  for (int d = 0; d < p.distractor_count; ++d) {
    std::vector<Paddle> curve;
    for (int attempt = 0; attempt <= p.distractor_retrials; ++attempt)
      if (growth.distractor(p.distractor_length, curve)) {
        s.distractors.push_back(std::move(curve));
        break;
      }
  }
  // Markers: the start of a random one of the two curves (curve A here), and the end of the same curve
  // (label 1) or of the other.
  const int origin = static_cast<int>(rng.below(2));
  const Growth::Snake &a = targets[origin], &b = targets[1 - origin];
  s.curve_a = a.paddles, s.curve_b = b.paddles;
  const auto point = [](const auto& px) { return Point{static_cast<double>(px.x), static_cast<double>(px.y)}; };
  s.marker1 = point(a.origin);
  s.marker2 = point(s.label == 1 ? a.terminal : b.terminal);
  s.margin = margin;
  s.image = render(p, PaddleGeometry(p, margin), s);
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
    long k = 0;
    const auto [end, err] = std::from_chars(stem.data(), stem.data() + stem.size(), k);
    if (e.path().extension() != ".npy" || stem.empty() || !std::all_of(stem.begin(), stem.end(), ::isdigit)) continue;
    if (err != std::errc{} || end != stem.data() + stem.size())
      throw InputError(fmt::format("{}: metadata file number out of range", e.path().string()));
    files.emplace_back(k, e.path());
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
      if (line.find('\0') != std::string::npos)  // a path with a NUL would name another file than it shows
        throw InputError(fmt::format("{}:{}: a NUL byte in a metadata line", path.string(), no));
      const auto f = fields_of(line);
      if (f.empty()) continue;
      if (f.size() < 4 || (f[3] != "0" && f[3] != "1"))
        throw InputError(fmt::format("{}:{}: expected 'imgs/<k> sample_<i>.png <i> <label 0|1> ...', got '{}'",
                                     path.string(), no, line.substr(0, 80)));
      // The image must lie inside the dataset folder: no absolute path, no ".." step out of it.
      const fs::path image = fs::path(f[0]) / f[1];
      if (image.is_absolute() || std::any_of(image.begin(), image.end(), [](const fs::path& step) { return step == ".."; }))
        throw InputError(fmt::format("{}:{}: image path '{}' leaves the dataset folder", path.string(), no,
                                     image.string().substr(0, 80)));
      entries.push_back({(fs::path(root) / image).string(), f[3] == "1" ? 1 : 0});
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

std::vector<std::uint8_t> pil_line_image(int size, int x0, int y0, int x1, int y1, int width) {
  std::vector<std::uint8_t> img(static_cast<std::size_t>(size) * size, 0);
  if (width <= 1)
    pil_line(img, size, x0, y0, x1, y1);
  else
    pil_wide_line(img, size, x0, y0, x1, y1, width);
  return img;
}

std::vector<std::uint8_t> pil_lanczos_resize(const std::vector<std::uint8_t>& in, int in_size, int out_size) {
  return lanczos_resize(in, in_size, Coefficients(in_size, out_size), out_size);
}

namespace {

ImageStatistics::Quantiles quantiles_of(std::vector<double> v) {
  ImageStatistics::Quantiles q;
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  auto at = [&](double f) {  // linear interpolation between order statistics (numpy's default)
    const double pos = f * static_cast<double>(v.size() - 1);
    const std::size_t lo = static_cast<std::size_t>(pos);
    return lo + 1 < v.size() ? v[lo] + (pos - static_cast<double>(lo)) * (v[lo + 1] - v[lo]) : v[lo];
  };
  return {at(0.1), at(0.25), at(0.5), at(0.75), at(0.9)};
}

void summarise(ImageStatistics& st) {
  st.images = static_cast<std::int64_t>(st.mean_of.size());
  st.mean = quantiles_of(st.mean_of), st.nonzero = quantiles_of(st.nonzero_of);
  st.above64 = quantiles_of(st.above64_of), st.above128 = quantiles_of(st.above128_of);
}

// The published generator's rows, as tests/golden/pathfinder/stats-{32,128}.tsv held them at build time.
const char* const kPublishedRows[] = {
#include "pathfinder_published.inc"
};

}  // namespace

ImageStatistics image_statistics(const std::vector<Image8>& images) {
  ImageStatistics st;
  for (const Image8& im : images) {
    double sum = 0, nz = 0, a64 = 0, a128 = 0;
    for (const std::uint8_t v : im.pixels) sum += v, nz += v > 0, a64 += v > 64, a128 += v > 128;
    const double n = static_cast<double>(std::max<std::size_t>(im.pixels.size(), 1));
    st.mean_of.push_back(sum / n), st.nonzero_of.push_back(nz / n), st.above64_of.push_back(a64 / n);
    st.above128_of.push_back(a128 / n);
  }
  summarise(st);
  return st;
}

ImageStatistics image_statistics_from_rows(const std::string& text, const std::string& name) {
  ImageStatistics st;
  std::istringstream in(text);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    double v[4];
    for (double& x : v)
      if (!(fields >> x) || !std::isfinite(x) || x < 0)
        throw InputError(fmt::format("{}:{}: expected four non-negative numbers per image", name, line_no));
    st.mean_of.push_back(v[0]), st.nonzero_of.push_back(v[1]), st.above64_of.push_back(v[2]);
    st.above128_of.push_back(v[3]);
  }
  summarise(st);
  return st;
}

const ImageStatistics& published_statistics(int size) {
  static const ImageStatistics s32 = image_statistics_from_rows(kPublishedRows[0], "tests/golden/pathfinder/stats-32.tsv");
  static const ImageStatistics s128 = image_statistics_from_rows(kPublishedRows[1], "tests/golden/pathfinder/stats-128.tsv");
  if (size != 32 && size != 128) throw UsageError(fmt::format("--size {}: expected 32 or 128", size));
  return size == 32 ? s32 : s128;
}

double ks_statistic(std::vector<double> a, std::vector<double> b) {
  if (a.empty() || b.empty()) return 1.0;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  double d = 0;
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);  // step both distribution functions past every value equal to x
    while (i < a.size() && a[i] == x) ++i;
    while (j < b.size() && b[j] == x) ++j;
    d = std::max(d, std::abs(static_cast<double>(i) / a.size() - static_cast<double>(j) / b.size()));
  }
  return d;
}

ImageStatistics image_statistics(const std::string& root, int size, std::int64_t limit) {
  const Loaded l = load(root, size, limit);
  std::vector<Image8> images;
  for (std::int64_t i = 0; i < l.all.size(); ++i) {
    Image8 im{size, size, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(size) * size)};
    const auto& t = l.all.tokens[static_cast<std::size_t>(i)];
    for (std::size_t k = 0; k < im.pixels.size() && k < t.size(); ++k) im.pixels[k] = static_cast<std::uint8_t>(t[k]);
    images.push_back(std::move(im));
  }
  return image_statistics(images);
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

// ---- The task records: Pathfinder (S = 32) and Path-X (S = 128) ------------------------------------

namespace lsb {
namespace {
namespace fs = std::filesystem;

// Images read from the official layout, split 80/10/10.
TaskData load_images(const TaskOptions& opt, int size) {
  const std::string root = pathfinder::find_root(opt.data_dir, size, opt.difficulty);
  pathfinder::Loaded d = pathfinder::load(root, size);
  if (d.skipped > 0)
    fmt::print(stderr, "warning: {}: {} images skipped (missing, unreadable or not {}x{}); the first: {}\n", root,
               d.skipped, size, size, d.first_skip);
  TaskData t;
  t.train = std::move(d.all);
  t.test = hold_out(t.train, 0.1, opt.split_seed, "test");
  t.val = hold_out(t.train, 1.0 / 9.0, opt.split_seed + 7, "val");
  t.train.name = "train";
  const fs::path meta = fs::path(root) / pathfinder::kGeneratorFile;
  t.provenance = {{"source", fmt::format("Pathfinder {}x{} PNG + metadata (official layout)", size, size)},
                  {"path", root},
                  {"difficulty", pathfinder::difficulty_folder(opt.difficulty)},
                  {"generated", fs::exists(meta)},
                  {"tokenizer", "grey level 0..255, row-major"},
                  {"skipped_images", d.skipped},
                  {"validation", "seeded 80/10/10 split of all images"}};
  if (fs::exists(meta)) t.provenance["generator"] = read_generator_file(meta.string());
  return t;
}

// Generated at LRA's hard difficulty unless the layout is there already.
Prepared prepare_images(const PrepareContext& ctx, const std::string& folder, int size, std::int64_t count) {
  const fs::path dir = fs::path(ctx.data_dir) / folder;
  try {
    pathfinder::find_root(dir.string(), size, "14");
  } catch (const InputError&) {
    const auto st = pathfinder::generate(pathfinder::params_for(size, "14"), "14", count, 1, dir.string());
    fmt::print("generated {} {}x{} images into {} ({:.1f} s)\n", count, size, size, st.dir, st.seconds);
  }
  return {dir.string(), ""};
}

// Quantiles over images of the mean grey level and the shares of pixels above 0, 64 and 128; at LRA's hard
// difficulty beside the published generator's medians and the two-sample KS statistic against its images.
void print_image_stats(const TaskOptions& opt, int size, std::int64_t max_images) {
  const std::string root = pathfinder::find_root(opt.data_dir, size, opt.difficulty);
  const auto st = pathfinder::image_statistics(root, size, max_images);
  const bool hard = pathfinder::difficulty_folder(opt.difficulty) == "curv_contour_length_14";
  const pathfinder::ImageStatistics* pub = hard ? &pathfinder::published_statistics(size) : nullptr;
  fmt::print("\n{}: {} images\n\n| per-image statistic | p10 | p25 | median | p75 | p90 |{}\n|---|---:|---:|---:|---:|---:|{}\n",
             root, st.images, pub ? " published median | KS |" : "", pub ? "---:|---:|" : "");
  using Stats = pathfinder::ImageStatistics;
  const std::tuple<const char*, const Stats::Quantiles Stats::*, const std::vector<double> Stats::*> rows[] = {
      {"mean intensity (0..255)", &Stats::mean, &Stats::mean_of},
      {"share of non-zero pixels", &Stats::nonzero, &Stats::nonzero_of},
      {"share of pixels > 64", &Stats::above64, &Stats::above64_of},
      {"share of pixels > 128", &Stats::above128, &Stats::above128_of}};
  for (const auto& [name, quantiles, values] : rows) {
    const auto& q = st.*quantiles;
    const int digits = q.p50 > 1 ? 1 : 3;
    fmt::print("| {} | {:.{}f} | {:.{}f} | {:.{}f} | {:.{}f} | {:.{}f} |", name, q.p10, digits, q.p25, digits, q.p50,
               digits, q.p75, digits, q.p90, digits);
    if (pub)
      fmt::print(" {:.{}f} | {:.3f} |", (pub->*quantiles).p50, digits, pathfinder::ks_statistic(st.*values, pub->*values));
    fmt::print("\n");
  }
  if (pub)
    fmt::print("\npublished: {} images of the published generator (tests/golden/pathfinder); KS below {:.3f} is "
               "within the 0.1% critical value for these two sample sizes\n",
               pub->images, 1.949 * std::sqrt(static_cast<double>(st.images + pub->images) / (static_cast<double>(st.images) * pub->images)));
}

// LRA's Pathfinder recipe; lra.md gives no Path-X row, so Path-X takes Pathfinder's at 16K tokens.
constexpr TaskRecipe kLraSmall = {.batch = 256, .steps = 62400, .warmup = 312, .lr = 1e-4, .dropout = 0.1};

}  // namespace

LSB_TASK(pathfinder) {
  TaskInfo t;
  t.name = "pathfinder";
  t.summary = "Pathfinder: are two dots joined by a curve, from 32x32 pixels (generated; pathfinder32/ layout)";
  t.vocab = pathfinder::kVocabSize, t.classes = pathfinder::kClasses, t.default_length = 32 * 32;
  t.fixed_length = true;
  t.load = [](const TaskOptions& opt, std::int64_t) { return load_images(opt, 32); };
  t.prepare = [](const PrepareContext& ctx) { return prepare_images(ctx, "pathfinder", 32, ctx.small ? 2000 : 200000); };
  t.print_stats = [](const TaskOptions& opt, std::int64_t max_items) { print_image_stats(opt, 32, max_items); };
  t.presets["lra-small"] = kLraSmall;
  t.presets["smoke"] = {.batch = 16, .steps = 200, .warmup = 20, .eval_every = 100, .lr = 5e-4, .max_val = 200,
                        .max_test = 400};
  t.published = {{"full", "LRA paper, Table 1", "Transformer", 71.40},
                 {"linformer", "LRA paper, Table 1", "Linformer", 76.34},
                 {"full", "Nystromformer paper, PyTorch small recipe", "softmax attention", 74.16},
                 {"linformer", "Nystromformer paper, PyTorch small recipe", "Linformer", 67.60}};
  t.lra_suite = t.lra_average = true;
  return t;
}

LSB_TASK(pathx) {
  TaskInfo t;
  t.name = "pathx";
  t.summary = "Path-X: Pathfinder at 128x128 pixels (16,384 tokens; generated; pathfinder128/ layout)";
  t.vocab = pathfinder::kVocabSize, t.classes = pathfinder::kClasses, t.default_length = 128 * 128;
  t.fixed_length = true;
  t.load = [](const TaskOptions& opt, std::int64_t) { return load_images(opt, 128); };
  t.prepare = [](const PrepareContext& ctx) { return prepare_images(ctx, "pathx", 128, ctx.small ? 200 : 20000); };
  t.print_stats = [](const TaskOptions& opt, std::int64_t max_items) { print_image_stats(opt, 128, max_items); };
  t.presets["lra-small"] = kLraSmall;
  // A few steps only: full attention needs 2 GiB per head and image.
  t.presets["smoke"] = {.batch = 2, .steps = 10, .warmup = 2, .eval_every = 10, .lr = 5e-4, .max_val = 16,
                        .max_test = 32};
  // Every model of LRA Table 1 failed Path-X (chance).
  t.published = {{"full", "LRA paper, Table 1", "Transformer", NAN}, {"linformer", "LRA paper, Table 1", "Linformer", NAN}};
  t.lra_suite = true;
  return t;
}

}  // namespace lsb
