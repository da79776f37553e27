// The checks of ../shared/spec/attention.md for every CPU variant: float64 reference, finite
// differences of every input and parameter with padding present, equivalences, padding
// invariance, the ls window edges, and linear memory for everything but full.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention_impls/registry.hpp"
#include "attention_impls/reference_f64.hpp"
#include "bench/attention_bench.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "nn/ops.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
using namespace lsb::test;

namespace {

// Specs covering every variant and the ls switches; n = 12 is a multiple of every w used.
const std::vector<std::string> kSpecs = {"full",       "flash",       "linformer:k=5",  "linformer:k=5,share=separate",
                                         "sliding:R=2", "sliding:R=0", "ls:w=4,r=3",     "ls:w=3,r=2",
                                         "ls:w=0,r=3",  "ls:w=4,r=0",  "ls:w=1,r=2",
                                         "performer:features=16", "performer:features=5,seed=3",
                                         "lsra:K=3,Hc=2", "lsra:K=4,Hc=4",
                                         // m=4: the second example's last segment is all padding; m=5: an
                                         // uneven split; m=12: one token per landmark, with an even conv.
                                         "nystromformer:m=4", "nystromformer:m=5,conv=3",
                                         "nystromformer:m=12,iters=3,conv=4"};

std::unique_ptr<Attention> make(const std::string& spec, std::int64_t D, std::int64_t h, std::int64_t n_max,
                                std::uint64_t seed) {
  auto a = make_attention(VariantSpec::parse(spec), D, h, n_max);
  randomize(*a, seed);
  return a;
}

std::vector<float> run_forward(Attention& a, const Problem& p, bool keep = false) {
  std::vector<float> y(p.x.size());
  a.forward(p.x.data(), p.mask.data(), p.b, p.n, y.data(), keep);
  return y;
}

// After a forward of both with keep_for_backward: `got`'s dx and parameter gradients within 1e-4 of `want`'s
// for one random output gradient.
void check_same_backward(Attention& got, Attention& want, const Problem& p) {
  std::vector<float> g(p.x.size()), dx_want(p.x.size()), dx_got(p.x.size());
  Rng rng(3);
  for (auto& v : g) v = static_cast<float>(rng.normal());
  want.zero_grad();
  got.zero_grad();
  want.backward(g.data(), dx_want.data());
  got.backward(g.data(), dx_got.data());
  CHECK(max_rel_diff(dx_got, dx_want) <= 1e-4);
  for (std::size_t i = 0; i < want.params().size(); ++i) {
    const auto& pw = want.params()[i].grad;
    const auto& pg = got.params()[i].grad;
    INFO(want.params()[i].name);
    CHECK(max_rel_diff({pg.data(), pg.data() + pg.numel()}, {pw.data(), pw.data() + pw.numel()}, 1e-1) <= 1e-4);
  }
}

}  // namespace

// Without dropout, and with dropout on the attention probabilities where the variant has it.
const std::vector<ProbDropout> kDropouts = {{}, {0.3f, 99}};

TEST_CASE("every variant matches the float64 reference with padding present", "[attention][reference]") {
  for (const auto& spec : kSpecs)
    for (const ProbDropout& drop : kDropouts) {
      INFO(spec << ", attention dropout " << drop.p);
      const Problem p = make_problem(2, 12, 8, 2, 5, 11);
      auto a = make(spec, p.D, p.h, p.n, 3);
      if (drop.active() && !a->supports_prob_dropout()) continue;
      a->set_prob_dropout(drop);
      const auto y = run_forward(*a, p);
      const auto ref = reference_attention(a->name(), a->resolved_params(), p.D, p.h, p.b, p.n, params_f64(*a),
                                           to_f64(p.x), p.mask, drop);
      CHECK(compare_to_reference(y.data(), ref).max_rel < 2e-6);
    }
}

TEST_CASE("attention dropout: keep rate and scale of the mask, refused where there are no probabilities",
          "[attention][dropout]") {
  const ProbDropout drop{0.25f, 7};
  const std::int64_t rows = 200, keys = 1000;
  double zeros = 0, sum = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t k = 0; k < keys; ++k) {
      const float f = drop.factor(r, keys, k);
      REQUIRE((f == 0.0f || f == 1.0f / 0.75f));
      zeros += f == 0.0f;
      sum += f;
    }
  const double count = rows * keys, sd = std::sqrt(count * 0.25 * 0.75);
  CHECK(std::fabs(zeros - 0.25 * count) < 5 * sd);  // drop rate p
  CHECK(std::fabs(sum / count - 1.0) < 5 * sd / count / 0.75);  // inverted dropout keeps the mean
  // Another seed, another mask: they differ where one keeps and the other drops, 2 p (1 - p) of the time.
  const ProbDropout other{0.25f, 8};
  int differ = 0;
  for (std::int64_t k = 0; k < keys; ++k) differ += drop.factor(3, keys, k) != other.factor(3, keys, k);
  CHECK(std::abs(differ - 375) < 5 * std::sqrt(keys * 0.375 * 0.625));

  for (const char* spec : {"performer:features=8", "nystromformer:m=4"}) {
    INFO(spec);
    auto a = make(spec, 8, 2, 12, 1);
    CHECK_FALSE(a->supports_prob_dropout());
    CHECK_THROWS_AS(a->set_prob_dropout({0.1f, 1}), UsageError);
    CHECK_NOTHROW(a->set_prob_dropout({}));
  }
  auto full = make("full", 8, 2, 12, 1);
  CHECK_THROWS_AS(full->set_prob_dropout({1.0f, 1}), UsageError);
  CHECK_THROWS_AS(full->set_prob_dropout({-0.1f, 1}), UsageError);
}

// The bf16 tolerance rule (docs/VARIANTS.md): with bf16 products, the forward's max error against
// float64 and every gradient's max difference from the fp32 gradient, both relative to the largest
// magnitude, stay within 2^-5 = 8 bf16 unit roundoffs; and the products really are bf16 (the forward's
// error is at least 2^-10, where fp32 gives 1e-6).
TEST_CASE("every variant in bf16 stays within the bf16 tolerance of float64, forward and backward",
          "[attention][bf16]") {
  std::string why;
  if (!bf16_matmul_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  for (const auto& spec : kSpecs) {
    INFO(spec);
    const Problem p = make_problem(2, 48, 32, 4, 13, 11);
    auto a = make(spec, p.D, p.h, p.n, 3);
    Rng rng(5);
    std::vector<float> dy(p.x.size());
    for (auto& v : dy) v = static_cast<float>(rng.normal());
    auto pass = [&](Precision prec) {
      PrecisionScope scope(prec);
      std::vector<float> y(p.x.size()), dx(p.x.size());
      a->zero_grad();
      a->forward(p.x.data(), p.mask.data(), p.b, p.n, y.data(), true);
      a->backward(dy.data(), dx.data());
      std::vector<std::vector<float>> grads{dx};
      for (auto& prm : a->params()) grads.emplace_back(prm.grad.data(), prm.grad.data() + prm.grad.numel());
      return std::pair{y, grads};
    };
    const auto [y32, g32] = pass(Precision::fp32);
    const auto [y16, g16] = pass(Precision::bf16);
    const auto ref = reference_attention(a->name(), a->resolved_params(), p.D, p.h, p.b, p.n, params_f64(*a),
                                         to_f64(p.x), p.mask);
    const double err = compare_to_reference(y16.data(), ref).max_rel;
    CHECK(err <= 0x1p-5);
    CHECK(err >= 0x1p-10);
    // Gradients that are 0 in exact arithmetic (bk's) compare their round-off against dx's scale.
    double dx_scale = 0;
    for (float v : g32[0]) dx_scale = std::max(dx_scale, static_cast<double>(std::fabs(v)));
    for (std::size_t i = 0; i < g32.size(); ++i) {
      INFO((i == 0 ? std::string("dx") : a->params()[i - 1].name));
      CHECK(max_rel_diff(g16[i], g32[i], i == 0 ? 0.0 : dx_scale) <= 0x1p-5);
    }
  }
}

TEST_CASE("finite differences of the float64 reference agree with every gradient", "[attention][gradient]") {
  for (const auto& spec : kSpecs)
    for (const ProbDropout& drop : kDropouts) {
      INFO(spec << ", attention dropout " << drop.p);
      const Problem p = make_problem(2, 12, 8, 2, 5, 21);
      auto a = make(spec, p.D, p.h, p.n, 5);
      if (drop.active() && !a->supports_prob_dropout()) continue;
      a->set_prob_dropout(drop);
      Rng rng(77);
      std::vector<float> g(p.x.size());
      for (auto& v : g) v = static_cast<float>(rng.normal());
      std::vector<float> y(p.x.size()), dx(p.x.size());
      a->forward(p.x.data(), p.mask.data(), p.b, p.n, y.data(), true);
      a->zero_grad();
      a->backward(g.data(), dx.data());

      const RefParams P = params_f64(*a);
      const std::vector<double> x64 = to_f64(p.x);
      auto loss = [&](const RefParams& params, const std::vector<double>& x) {
        const auto yr =
            reference_attention(a->name(), a->resolved_params(), p.D, p.h, p.b, p.n, params, x, p.mask, drop);
        double L = 0;
        for (std::size_t i = 0; i < yr.size(); ++i) L += yr[i] * g[i];
        return L;
      };
      const double eps = 1e-6;
      // Every element of a tensor: central difference vs analytic; tolerance relative to the
      // tensor's largest gradient (fp32 analytic against an exact float64 derivative).
      auto check_tensor = [&](const std::string& what, const float* analytic, std::size_t count, auto perturb) {
        std::vector<double> numeric(count);
        double scale = 0;
        for (std::size_t i = 0; i < count; ++i) {
          numeric[i] = (perturb(i, eps) - perturb(i, -eps)) / (2 * eps);
          scale = std::max(scale, std::fabs(numeric[i]));
        }
        double worst = 0;
        for (std::size_t i = 0; i < count; ++i) worst = std::max(worst, std::fabs(numeric[i] - analytic[i]));
        INFO(fmt::format("{}: max |numeric - analytic| = {:.3e}, largest gradient {:.3e}", what, worst, scale));
        CHECK(worst <= 1e-4 * scale + 1e-6);
      };
      check_tensor("dx", dx.data(), dx.size(), [&](std::size_t i, double e) {
        auto xs = x64;
        xs[i] += e;
        return loss(P, xs);
      });
      // Padded inputs get no gradient except through nothing: real outputs ignore them.
      for (std::int64_t t = 0; t < p.n; ++t)
        if (!p.mask[p.n + t])
          for (std::int64_t c = 0; c < p.D; ++c) CHECK(dx[(p.n + t) * p.D + c] == Approx(0.0).margin(1e-6));
      for (auto& prm : a->params()) {
        check_tensor("d" + prm.name, prm.grad.data(), static_cast<std::size_t>(prm.value.numel()),
                     [&](std::size_t i, double e) {
                       auto ps = P;
                       ps[prm.name][i] += e;
                       return loss(ps, x64);
                     });
      }
    }
}

TEST_CASE("flash equals full forward and backward across several tiles", "[attention][equivalence]") {
  // With attention dropout too: both draw the mask of each (row, key) from the same stream.
  for (const ProbDropout& drop : kDropouts) {
    INFO("attention dropout " << drop.p);
    const Problem p = make_problem(2, 300, 16, 2, 37, 5);  // 300 > one 256-key tile and several 64-row tiles
    auto full = make("full", p.D, p.h, p.n, 9);
    auto flash = make("flash", p.D, p.h, p.n, 9);
    full->set_prob_dropout(drop);
    flash->set_prob_dropout(drop);
    const auto yf = run_forward(*full, p, true), yl = run_forward(*flash, p, true);
    CHECK(max_rel_diff(yl, yf) <= 1e-5);
    check_same_backward(*flash, *full, p);
  }
}

TEST_CASE("sliding with R >= n equals full", "[attention][equivalence]") {
  for (const ProbDropout& drop : kDropouts) {
    INFO("attention dropout " << drop.p);
    const Problem p = make_problem(2, 20, 8, 2, 6, 8);
    auto full = make("full", p.D, p.h, p.n, 4);
    auto sliding = make("sliding:R=20", p.D, p.h, p.n, 4);
    full->set_prob_dropout(drop);
    sliding->set_prob_dropout(drop);
    CHECK(max_rel_diff(run_forward(*sliding, p), run_forward(*full, p)) <= 1e-5);
  }
}

TEST_CASE("linformer with k = n and E = I equals full", "[attention][equivalence]") {
  const Problem p = make_problem(2, 16, 8, 2, 0, 8);  // no padding: linformer's projected keys are never masked
  auto full = make("full", p.D, p.h, p.n, 4);
  auto lin = make("linformer:k=16", p.D, p.h, p.n, 4);
  Tensor& E = lin->param("e").value;
  E.zero();
  for (std::int64_t i = 0; i < 16; ++i) E[i * 16 + i] = 1.0f;
  CHECK(max_rel_diff(run_forward(*lin, p), run_forward(*full, p)) <= 1e-5);
}

namespace {

// Full attention in float64 with K and V replaced by their LayerNorm LN_L (ls's parameters), written
// out here; causal: query t's keys are u <= t.
std::vector<double> full_on_normalised_kv(Attention& ls, const Problem& p, bool causal) {
  const RefParams P = params_f64(ls);
  const std::int64_t D = p.D, d = D / p.h, n = p.n;
  auto lin = [&](const char* w, const char* bias, std::int64_t bi, std::int64_t t, std::int64_t o) {
    double s = P.at(bias)[o];
    for (std::int64_t i = 0; i < D; ++i) s += p.x[(bi * n + t) * D + i] * P.at(w)[o * D + i];
    return s;
  };
  auto ln_row = [&](std::vector<double> r) {
    double mu = 0, var = 0;
    for (double v : r) mu += v / D;
    for (double v : r) var += (v - mu) * (v - mu) / D;
    for (std::int64_t o = 0; o < D; ++o)
      r[o] = (r[o] - mu) / std::sqrt(var + 1e-5) * P.at("ln_l_weight")[o] + P.at("ln_l_bias")[o];
    return r;
  };
  std::vector<double> expect(p.x.size());
  for (std::int64_t bi = 0; bi < p.b; ++bi) {
    std::vector<std::vector<double>> K(n, std::vector<double>(D)), V = K, Q = K;
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t o = 0; o < D; ++o) {
        Q[t][o] = lin("wq", "bq", bi, t, o) / std::sqrt(double(d));
        K[t][o] = lin("wk", "bk", bi, t, o);
        V[t][o] = lin("wv", "bv", bi, t, o);
      }
      K[t] = ln_row(K[t]);
      V[t] = ln_row(V[t]);
    }
    for (std::int64_t t = 0; t < n; ++t) {
      std::vector<double> C(D, 0.0);
      auto key = [&](std::int64_t u) { return p.mask[bi * n + u] && !(causal && u > t); };
      if (p.mask[bi * n + t])
        for (std::int64_t hh = 0; hh < p.h; ++hh) {
          std::vector<double> s(n, -1e300);
          double mx = -1e300, sum = 0;
          for (std::int64_t u = 0; u < n; ++u)
            if (key(u)) {
              s[u] = 0;
              for (std::int64_t c = 0; c < d; ++c) s[u] += Q[t][hh * d + c] * K[u][hh * d + c];
              mx = std::max(mx, s[u]);
            }
          for (std::int64_t u = 0; u < n; ++u) sum += key(u) ? std::exp(s[u] - mx) : 0.0;
          for (std::int64_t u = 0; u < n; ++u)
            if (key(u))
              for (std::int64_t c = 0; c < d; ++c) C[hh * d + c] += std::exp(s[u] - mx) / sum * V[u][hh * d + c];
        }
      for (std::int64_t o = 0; o < D; ++o) {
        double s = P.at("bo")[o];
        for (std::int64_t i = 0; i < D; ++i) s += C[i] * P.at("wo")[o * D + i];
        expect[(bi * n + t) * D + o] = s;
      }
    }
  }
  return expect;
}

std::unique_ptr<Attention> make_causal(const std::string& spec, std::int64_t D, std::int64_t h, std::int64_t n_max,
                                       std::uint64_t seed) {
  VariantSpec s = VariantSpec::parse(spec);
  s.causal = true;
  auto a = make_attention(s, D, h, n_max);
  randomize(*a, seed);
  return a;
}

// Every causal form, with the ls keys' corners (chunks of 4 with 2 vectors, the authors' r = 1, window
// only, compressed vectors only).
const std::vector<std::string> kCausalSpecs = {"full", "flash", "sliding:R=5", "lsra:K=3,Hc=2", "ls:w=8,l=4,r=2",
                                               "ls:w=6,l=4,r=1", "ls:w=8,l=4,r=0", "ls:w=0,l=4,r=2",
                                               "performer:features=16"};

}  // namespace

TEST_CASE("ls with r = 0 and w = n equals full attention on LN_L(K) and LN_L(V)", "[attention][equivalence][ls]") {
  const Problem p = make_problem(2, 12, 8, 2, 4, 13);
  auto ls = make("ls:w=12,r=0", p.D, p.h, p.n, 6);
  CHECK(compare_to_reference(run_forward(*ls, p).data(), full_on_normalised_kv(*ls, p, false)).max_rel < 2e-6);
}

TEST_CASE("causal ls with r = 0 and w >= n equals causal full attention on LN_L(Kp) and LN_L(Vp)",
          "[attention][equivalence][ls][causal]") {
  const Problem p = make_problem(2, 24, 8, 2, 5, 13);
  auto ls = make_causal("ls:w=24,l=4,r=0", p.D, p.h, p.n, 6);
  CHECK(compare_to_reference(run_forward(*ls, p).data(), full_on_normalised_kv(*ls, p, true)).max_rel < 2e-6);
}

TEST_CASE("every causal form matches its float64 reference, forward and gradient", "[attention][causal][gradient]") {
  // check_against_reference: the output, and a directional derivative of the input and of every parameter
  // against central differences of the causal float64 reference, with padding present.
  for (const auto& spec : kCausalSpecs) {
    INFO(spec);
    VariantSpec s = VariantSpec::parse(spec);
    s.causal = true;
    const ReferenceCheck c = check_against_reference(s, 16, 2, true, 3);
    INFO(c.message);
    CHECK(c.ok);
  }
}

TEST_CASE("a causal output never depends on the future: perturbing inputs after t leaves outputs up to t bit for bit",
          "[attention][causal]") {
  for (const auto& spec : kCausalSpecs) {
    INFO(spec);
    const Problem p = make_problem(2, 300, 16, 2, 7, 21);  // several flash tiles, padding at the end of one example
    auto a = make_causal(spec, p.D, p.h, p.n, 4);
    const auto y = run_forward(*a, p);
    for (const std::int64_t t0 : {0, 37, 128, 255}) {
      INFO("perturbed after " << t0);
      Problem q = p;
      Rng rng(t0 + 1);
      for (std::int64_t bi = 0; bi < p.b; ++bi)
        for (std::int64_t t = t0 + 1; t < p.n; ++t)
          for (std::int64_t c = 0; c < p.D; ++c) q.x[(bi * p.n + t) * p.D + c] += static_cast<float>(3 * rng.normal());
      const auto y2 = run_forward(*a, q);
      bool same = true, changed = false;
      for (std::int64_t bi = 0; bi < p.b; ++bi)
        for (std::int64_t t = 0; t < p.n; ++t)
          for (std::int64_t c = 0; c < p.D; ++c) {
            const std::size_t i = static_cast<std::size_t>((bi * p.n + t) * p.D + c);
            if (t <= t0) same = same && std::memcmp(&y[i], &y2[i], sizeof(float)) == 0;
            else changed = changed || (p.mask[bi * p.n + t] && y[i] != y2[i]);
          }
      CHECK(same);
      CHECK(changed);  // the perturbation reached the module
    }
  }
}

TEST_CASE("causal flash equals causal full, and causal sliding with R >= n equals causal full",
          "[attention][equivalence][causal]") {
  const Problem p = make_problem(2, 300, 16, 2, 37, 5);
  auto full = make_causal("full", p.D, p.h, p.n, 9);
  auto flash = make_causal("flash", p.D, p.h, p.n, 9);
  auto sliding = make_causal("sliding:R=300", p.D, p.h, p.n, 9);
  const auto yf = run_forward(*full, p, true), yl = run_forward(*flash, p, true);
  CHECK(max_rel_diff(yl, yf) <= 1e-5);
  CHECK(max_rel_diff(run_forward(*sliding, p), yf) <= 1e-5);
  check_same_backward(*flash, *full, p);
  // And causal differs from bidirectional (the mask is applied at all).
  CHECK(max_rel_diff(yf, run_forward(*make("full", p.D, p.h, p.n, 9), p)) > 1e-2);
}

TEST_CASE("causal: variants without a causal form refuse, causal keys need it, and its flops follow the spec",
          "[attention][causal][spec]") {
  VariantSpec lin = VariantSpec::parse("linformer");
  lin.causal = true;
  CHECK_THROWS_WITH(make_attention(lin, 16, 2, 64), Catch::Contains("linformer has no causal form"));
  VariantSpec nys = VariantSpec::parse("nystromformer");
  nys.causal = true;
  CHECK_THROWS_WITH(make_attention(nys, 16, 2, 64), Catch::Contains("nystromformer has no causal form"));
  CHECK_THROWS_WITH(make_attention(VariantSpec::parse("ls:l=4"), 16, 2, 64), Catch::Contains("add --causal"));
  // The causal ls keys: the authors' enwik8 defaults, and l only where causal.
  CHECK(make_attention(VariantSpec::parse("ls"), 16, 2, 64)->resolved_params() ==
        std::map<std::string, std::string>{{"r", "32"}, {"w", "8"}});
  CHECK(make_causal("ls", 16, 2, 64, 1)->resolved_params() ==
        std::map<std::string, std::string>{{"l", "16"}, {"r", "1"}, {"w", "512"}});
  CHECK(make_causal("ls:l=16", 16, 2, 64, 1)->padded_length(40) == 48);
  // Cost: causal full 2 b h n (n + 1) d; flash what it computes (at least that, at most the square).
  const double n = 1000, b = 2, h = 2, d = 8;
  const double causal_full = make_causal("full", 16, 2, 1000, 1)->forward_flops(2, 1000) - 8 * b * n * 16 * 16;
  CHECK(causal_full == Approx(2 * b * h * n * (n + 1) * d));
  const double flash = make_causal("flash", 16, 2, 1000, 1)->forward_flops(2, 1000) - 8 * b * n * 16 * 16;
  CHECK(flash >= causal_full);
  CHECK(flash < 4 * b * h * n * n * d * 0.75);
  // sliding: 4 b h d sum_t min(R + 1, t + 1)
  double keys = 0;
  for (int t = 0; t < 1000; ++t) keys += std::min(6, t + 1);
  CHECK(make_causal("sliding:R=5", 16, 2, 1000, 1)->forward_flops(2, 1000) - 8 * b * n * 16 * 16 ==
        Approx(4 * b * h * d * keys));
}

TEST_CASE("ls with Wp = 0 and bp = 0 has r identical landmarks LN_G(mean of LN_L over real tokens)",
          "[attention][equivalence][ls]") {
  // Landmarks only (w = 0): with identical landmarks every real query's probabilities are uniform,
  // so its context is the one value landmark LN_G(mean_t LN_L(V)_t) and y = that Wo^T + bo.
  const Problem p = make_problem(2, 10, 8, 2, 3, 17);
  auto ls = make("ls:w=0,r=4", p.D, p.h, p.n, 2);
  ls->param("wp").value.zero();
  ls->param("bp").value.zero();
  const auto y = run_forward(*ls, p);
  const RefParams P = params_f64(*ls);
  const std::int64_t D = p.D, n = p.n;
  for (std::int64_t bi = 0; bi < p.b; ++bi) {
    std::vector<double> mean(D, 0.0);
    std::int64_t real = 0;
    for (std::int64_t t = 0; t < n; ++t) {
      if (!p.mask[bi * n + t]) continue;
      ++real;
      std::vector<double> v(D);
      double mu = 0, var = 0;
      for (std::int64_t o = 0; o < D; ++o) {
        v[o] = P.at("bv")[o];
        for (std::int64_t i = 0; i < D; ++i) v[o] += p.x[(bi * n + t) * D + i] * P.at("wv")[o * D + i];
        mu += v[o] / D;
      }
      for (double e : v) var += (e - mu) * (e - mu) / D;
      for (std::int64_t o = 0; o < D; ++o)
        mean[o] += (v[o] - mu) / std::sqrt(var + 1e-5) * P.at("ln_l_weight")[o] + P.at("ln_l_bias")[o];
    }
    double mu = 0, var = 0;
    for (auto& e : mean) mu += (e /= real) / D;
    for (double e : mean) var += (e - mu) * (e - mu) / D;
    std::vector<double> land(D);
    for (std::int64_t o = 0; o < D; ++o)
      land[o] = (mean[o] - mu) / std::sqrt(var + 1e-5) * P.at("ln_g_weight")[o] + P.at("ln_g_bias")[o];
    for (std::int64_t t = 0; t < n; ++t) {
      if (!p.mask[bi * n + t]) continue;
      for (std::int64_t o = 0; o < D; ++o) {
        double s = P.at("bo")[o];
        for (std::int64_t i = 0; i < D; ++i) s += land[i] * P.at("wo")[o * D + i];
        CHECK(y[(bi * n + t) * D + o] == Approx(s).epsilon(1e-5).margin(1e-5));
      }
    }
  }
}

TEST_CASE("performer approaches full attention as its feature count grows", "[attention][equivalence]") {
  // FAVOR+ estimates the softmax kernel without bias; the error of the estimate falls as 1 / sqrt(m).
  // Measured as ||y - y_full|| / ||y_full - bo|| over the real rows, averaged over four draws.
  const Problem p = make_problem(2, 64, 16, 2, 9, 12);
  auto full = make("full", p.D, p.h, p.n, 6);
  const auto yf = run_forward(*full, p);
  auto rel_error = [&](const std::vector<float>& y) {
    double num = 0, den = 0;
    for (std::int64_t r = 0; r < p.b * p.n; ++r)
      if (p.mask[r])
        for (std::int64_t c = 0; c < p.D; ++c) {
          const double bo = full->param("bo").value[c];
          num += std::pow(y[r * p.D + c] - yf[r * p.D + c], 2);
          den += std::pow(yf[r * p.D + c] - bo, 2);
        }
    return std::sqrt(num / den);
  };
  std::vector<double> err;
  for (const std::int64_t m : {64, 1024, 16384}) {
    double sum = 0;
    for (const int seed : {0, 1, 2, 3}) {
      auto perf = make(fmt::format("performer:features={},seed={}", m, seed), p.D, p.h, p.n, 6);
      sum += rel_error(run_forward(*perf, p));
    }
    err.push_back(sum / 4);
  }
  INFO(fmt::format("relative error at m = 64 / 1024 / 16384: {:.4f} / {:.4f} / {:.4f}", err[0], err[1], err[2]));
  // Measured here: 0.25 / 0.14 / 0.033; between 1,024 and 16,384 features the 1 / sqrt(m) regime
  // (16x the features, 4x less error) holds; below it the ratio normalisation damps the error less.
  CHECK(err[1] < err[0]);
  CHECK(err[2] < err[1] / 2.5);
  CHECK(err[2] < 0.05);
}

TEST_CASE("nystromformer with one landmark per token equals full attention up to the pseudo-inverse's error",
          "[attention][equivalence]") {
  // m = n: the landmarks are Q and K themselves, so K1 = K2 = K3 = softmax(Q K^T) = P and
  // C = P Z P V; with Z = P^-1 that is P V. Z is a Newton-Schulz iterate, so C approaches full
  // attention as the steps add up: in float64 to rounding, in fp32 to the floor that P's condition
  // number sets on the inverse.
  const Problem p = make_problem(2, 16, 8, 2, 5, 14);
  auto full = make("full", p.D, p.h, p.n, 3);
  const auto yf = run_forward(*full, p);
  const RefParams P = params_f64(*full);
  const auto x64 = to_f64(p.x);
  const auto ref_full = reference_attention("full", {}, p.D, p.h, p.b, p.n, P, x64, p.mask);
  std::vector<double> err, err64;
  for (const int iters : {1, 3, 6, 12, 24}) {
    auto nys = make(fmt::format("nystromformer:m=16,iters={}", iters), p.D, p.h, p.n, 3);
    err.push_back(max_rel_diff(run_forward(*nys, p), yf));
    const auto ref = reference_attention("nystromformer", nys->resolved_params(), p.D, p.h, p.b, p.n, P, x64, p.mask);
    std::vector<float> ref32(ref.begin(), ref.end());
    err64.push_back(compare_to_reference(ref32.data(), ref_full).max_rel);
  }
  INFO(fmt::format("fp32 max relative deviation at 1 / 3 / 6 / 12 / 24 steps: {:.2e} / {:.2e} / {:.2e} / {:.2e} / "
                   "{:.2e}; float64: {:.2e} / {:.2e} / {:.2e} / {:.2e} / {:.2e}",
                   err[0], err[1], err[2], err[3], err[4], err64[0], err64[1], err64[2], err64[3], err64[4]));
  CHECK(err64[0] > 1e-2);  // one step is far from the inverse
  CHECK(err64[2] < err64[1]);
  CHECK(err64[3] < err64[2]);
  CHECK(err64[4] < 1e-6);  // the float64 iteration converges to P^-1: full attention (to fp32 output rounding)
  CHECK(err[1] < err[0]);
  CHECK(err[3] < err[2]);
  CHECK(err[4] < 2e-3);  // fp32: measured 3.8e-1 / 1.0e-1 / 1.3e-2 / 3.5e-4 / 5.5e-4 here
}

TEST_CASE("nystromformer handles padding inside the sequence and whole empty segments", "[attention][padding]") {
  // Holes in the mask: a partially padded segment, an entirely padded one (a padded landmark, left
  // out of all three kernels), and an example with no real token at all (context 0, y = bo).
  Problem p = make_problem(3, 12, 8, 2, 0, 51);
  for (const std::int64_t t : {1, 4, 5})  // example 0, segments of 3 at m = 4: [3, 6) has one real token
    p.mask[t] = 0;
  for (std::int64_t t = 6; t < 9; ++t) p.mask[12 + t] = 0;  // example 1: segment [6, 9) all padding
  for (std::int64_t t = 0; t < 12; ++t) p.mask[24 + t] = 0;  // example 2: nothing real
  for (const std::string spec : {"nystromformer:m=4", "nystromformer:m=4,conv=3"}) {
    INFO(spec);
    auto a = make(spec, p.D, p.h, p.n, 8);
    const auto y = run_forward(*a, p);
    const auto ref = reference_attention(a->name(), a->resolved_params(), p.D, p.h, p.b, p.n, params_f64(*a),
                                         to_f64(p.x), p.mask);
    CHECK(compare_to_reference(y.data(), ref).max_rel < 2e-6);
    for (std::int64_t c = 0; c < p.D; ++c) CHECK(y[(24 + 3) * p.D + c] == a->param("bo").value[c]);
  }
}

TEST_CASE("appending padded tokens does not change the outputs of real tokens", "[attention][padding]") {
  for (const auto& spec : kSpecs) {
    INFO(spec);
    // nystromformer's landmarks are an even split of the whole length, so appending tokens moves them
    // unless every token is its own landmark; with fewer landmarks only the padded tokens' contents
    // change (extra = 0: same length, different garbage in the padded slots).
    const auto parsed = VariantSpec::parse(spec);
    const bool split_by_length = parsed.name == "nystromformer" && std::stoll(parsed.params.at("m")) < 24;
    const std::int64_t n = 12, extra = split_by_length ? 0 : 12, D = 8, h = 2;
    const Problem small = make_problem(2, n, D, h, 3, 31);
    Problem big = make_problem(2, n + extra, D, h, 0, 32);  // garbage in the padded slots
    for (std::int64_t bi = 0; bi < 2; ++bi)
      for (std::int64_t t = 0; t < n + extra; ++t) {
        const bool real = t < n && small.mask[bi * n + t];
        big.mask[bi * (n + extra) + t] = real;
        if (real)
          for (std::int64_t c = 0; c < D; ++c) big.x[(bi * (n + extra) + t) * D + c] = small.x[(bi * n + t) * D + c];
      }
    // Same parameters in both (linformer: E sized for the longer input in both).
    auto a = make(spec, D, h, n + extra, 7);
    const auto ys = run_forward(*a, small);
    const auto yb = run_forward(*a, big);
    double worst = 0;
    for (std::int64_t bi = 0; bi < 2; ++bi)
      for (std::int64_t t = 0; t < n; ++t)
        if (small.mask[bi * n + t])
          for (std::int64_t c = 0; c < D; ++c)
            worst = std::max(worst, static_cast<double>(std::fabs(ys[(bi * n + t) * D + c] -
                                                                   yb[(bi * (n + extra) + t) * D + c])));
    CHECK(worst <= 1e-5);
    // Padded query rows (the second example's last) output exactly bo (lsra: its attention half's
    // a_bo; the convolution half is not defined there).
    const bool lsra = a->name() == "lsra";
    for (std::int64_t c = 0; c < (lsra ? D / 2 : D); ++c)
      CHECK(yb[(2 * (n + extra) - 1) * D + c] == a->param(lsra ? "a_bo" : "bo").value[c]);
  }
}

TEST_CASE("ls window columns outside the sequence or masked get probability exactly 0", "[attention][ls]") {
  const std::int64_t w = 4, r = 2, e = 2, n = 16, h = 2;
  const Problem p = make_problem(2, n, 8, h, 3, 41);
  auto a = make("ls:w=4,r=2", 8, h, n, 1);
  run_forward(*a, p);
  const Tensor& P = *a->saved_probabilities();
  const std::int64_t W = r + w + 2 * e;
  REQUIRE(P.shape() == Shape{2, h, n, W});
  int zeros_checked = 0;
  for (std::int64_t bi = 0; bi < 2; ++bi)
    for (std::int64_t hh = 0; hh < h; ++hh)
      for (std::int64_t t = 0; t < n; ++t) {
        const float* row = P.data() + ((bi * h + hh) * n + t) * W;
        double sum = 0;
        for (std::int64_t j = 0; j < W; ++j) sum += row[j];
        CHECK(sum == Approx(1.0).epsilon(1e-5));
        for (std::int64_t j = 0; j < r; ++j) CHECK(row[j] > 0.0f);  // landmarks are never masked
        const std::int64_t start = (t / w) * w - e;
        for (std::int64_t o = 0; o < w + 2 * e; ++o) {
          const std::int64_t u = start + o;
          if (u < 0 || u >= n || !p.mask[bi * n + u]) {
            CHECK(row[r + o] == 0.0f);
            ++zeros_checked;
          } else {
            CHECK(row[r + o] > 0.0f);
          }
        }
      }
  CHECK(zeros_checked > 0);
}

TEST_CASE("nothing but full keeps an n x n buffer: memory is linear in n", "[attention][memory]") {
  auto& mt = MemoryTracker::instance();
  auto peak_of = [&](const std::string& spec, std::int64_t n) {
    auto a = make(spec, 16, 2, n, 1);
    const Problem p = make_problem(2, n, 16, 2, 0, 1);
    std::vector<float> y(p.x.size()), dx(p.x.size());
    const std::int64_t base = mt.stats(Device::cpu).live, scratch = matmul_scratchpad_bytes();
    mt.reset_peak(Device::cpu);
    a->forward(p.x.data(), p.mask.data(), p.b, n, y.data(), true);
    a->backward(y.data(), dx.data());
    // The analytic model is the module's own buffer plan: it must match what was counted, less
    // the growth of oneDNN's shared scratchpad (which belongs to the matmul layer).
    const std::int64_t used = mt.stats(Device::cpu).peak - base - (matmul_scratchpad_bytes() - scratch);
    const double analytic = static_cast<double>(a->analytic_bytes(2, n, true));
    CHECK(used >= analytic);
    CHECK(used <= analytic * 1.01 + 4096);
    return static_cast<double>(used);
  };
  for (const std::string spec :
       {"flash", "sliding:R=16", "ls:w=8,r=8", "linformer:k=32", "performer:features=32", "nystromformer:m=16,conv=3"}) {
    INFO(spec);
    CHECK(peak_of(spec, 2048) / peak_of(spec, 1024) < 2.1);
  }
  CHECK(peak_of("full", 2048) / peak_of("full", 1024) > 3.0);
  CHECK(peak_of("lsra:K=3,Hc=4", 2048) / peak_of("lsra:K=3,Hc=4", 1024) > 3.0);  // its attention half is full
}

TEST_CASE("after the first call nothing is allocated per call", "[attention][memory]") {
  for (const auto& spec : kSpecs) {
    INFO(spec);
    auto a = make(spec, 8, 2, 12, 1);
    const Problem p = make_problem(2, 12, 8, 2, 3, 1);
    std::vector<float> y(p.x.size()), dx(p.x.size());
    auto step = [&] {
      a->forward(p.x.data(), p.mask.data(), 2, 12, y.data(), true);
      a->backward(y.data(), dx.data());
    };
    step();
    MemoryTracker::instance().reset_peak(Device::cpu);
    step();
    step();
    CHECK(MemoryTracker::instance().stats(Device::cpu).allocations == 0);
  }
}

TEST_CASE("impossible variant specs are usage errors that say what is valid", "[attention][spec]") {
  auto msg = [](const std::string& spec, std::int64_t D = 8, std::int64_t h = 2) {
    try {
      make_attention(VariantSpec::parse(spec), D, h, 64);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(msg("nope"), Catch::Contains("unknown variant 'nope'") && Catch::Contains("linformer"));
  CHECK_THAT(msg("ls:q=3"), Catch::Contains("unknown key 'q'") && Catch::Contains("valid keys: w, r"));
  CHECK_THAT(msg("ls:w=0,r=0"), Catch::Contains("w=0 and r=0"));
  CHECK_THAT(msg("ls:w=-1"), Catch::Contains("w=-1 must be >= 0"));
  CHECK_THAT(msg("linformer:k=0"), Catch::Contains("k=0 must be >= 1"));
  CHECK_THAT(msg("linformer:share=both"), Catch::Contains("not one of kv, separate"));
  CHECK_THAT(msg("sliding:R=abc"), Catch::Contains("R=abc is not an integer"));
  CHECK_THAT(msg("full:x"), Catch::Contains("not key=value"));
  CHECK_THAT(msg("full", 10, 3), Catch::Contains("multiple of --heads"));
  CHECK(msg("ls:w=8,r=32") == "no error");
  // linformer: a sequence longer than n_max is an error, not a truncation.
  auto lin = make_attention(VariantSpec::parse("linformer:k=4,n_max=8"), 8, 2, 8);
  const Problem p = make_problem(1, 12, 8, 2, 0, 1);
  std::vector<float> y(p.x.size());
  CHECK_THROWS_WITH(lin->forward(p.x.data(), nullptr, 1, 12, y.data(), false),
                    Catch::Contains("sequence length 12 exceeds n_max 8"));
  // ls: the harness must pad to a multiple of w.
  auto ls = make_attention(VariantSpec::parse("ls:w=8,r=2"), 8, 2, 12);
  CHECK(ls->padded_length(12) == 16);
  CHECK_THROWS_AS(ls->forward(p.x.data(), nullptr, 1, 12, y.data(), false), UsageError);
  CHECK(VariantSpec::parse("ls:w=8,r=32").str() == "ls:r=32,w=8");
}

TEST_CASE("the float64 reference check of the bench accepts every variant and mode", "[attention][bench]") {
  // (The same check gates `lsbench attention bench`; tested here on a wider model.)
  for (const std::string spec :
       {"full", "flash", "linformer:k=8", "sliding:R=3", "ls:w=4,r=3", "performer:features=64", "lsra:K=7,Hc=4",
        "nystromformer:m=8,conv=5"}) {
    INFO(spec);
    const ReferenceCheck c = check_against_reference(VariantSpec::parse(spec), 32, 4, true, 5);
    INFO(c.message);
    CHECK(c.ok);
  }
}
