// The variant registry: every record is whole and consistent with its module, and a variant registered
// from outside the built-in list (here: this test's own) is picked up by `info`, `attention bench`, the
// float64 reference check, sweep and the encoder with no edit anywhere else (docs/VARIANTS.md, "Adding
// a variant").
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "bench/attention_bench.hpp"
#include "bench/sweep.hpp"
#include "helpers.hpp"
#include "model/encoder.hpp"
#include "nn/errors.hpp"
#include "nn/parse.hpp"
#include "reports/plot.hpp"
#include "reports/report.hpp"

using namespace lsb;

namespace {

// "uniform": every query's context is the mean of the real values (all scores equal), times `gain`
// (key, default 1). "uniform_skewed" computes the same but claims a reference without the gain's
// effect on the last channel: a variant that disagrees with its reference.
class UniformAttention final : public ProjectedAttention {
 public:
  UniformAttention(const std::string& name, const std::map<std::string, std::string>& keys, std::int64_t dim,
                   std::int64_t heads, double gain)
      : ProjectedAttention(name, keys, dim, heads), gain_(static_cast<float>(gain)) {}

 protected:
  // C[b, t] = gain * mean of V[b, u] over the real u, for every t.
  void core_forward(bool) override {
    const std::int64_t D = dim_;
    for (std::int64_t bi = 0; bi < b_; ++bi) {
      std::vector<double> mean(D, 0.0);
      std::int64_t real = 0;
      for (std::int64_t u = 0; u < n_; ++u)
        if (mask_[bi * n_ + u]) {
          ++real;
          for (std::int64_t c = 0; c < D; ++c) mean[c] += V_.data()[(bi * n_ + u) * D + c];
        }
      for (std::int64_t t = 0; t < n_; ++t)
        for (std::int64_t c = 0; c < D; ++c)
          C_.data()[(bi * n_ + t) * D + c] = real ? static_cast<float>(gain_ * mean[c] / real) : 0.0f;
    }
  }
  // dV[b, u] = gain * sum_t dC[b, t] / real for the real u; dQ = dK = 0.
  void core_backward() override {
    const std::int64_t D = dim_;
    dQ_.zero();
    dK_.zero();
    dV_.zero();
    for (std::int64_t bi = 0; bi < b_; ++bi) {
      std::vector<double> sum(D, 0.0);
      std::int64_t real = 0;
      for (std::int64_t t = 0; t < n_; ++t) {
        real += mask_[bi * n_ + t] != 0;
        for (std::int64_t c = 0; c < D; ++c) sum[c] += dC_.data()[(bi * n_ + t) * D + c];
      }
      for (std::int64_t u = 0; u < n_; ++u)
        if (mask_[bi * n_ + u])
          for (std::int64_t c = 0; c < D; ++c) dV_.data()[(bi * n_ + u) * D + c] = static_cast<float>(gain_ * sum[c] / real);
    }
  }
  double core_flops(std::int64_t b, std::int64_t n) const override { return 2.0 * b * n * dim_; }
  std::int64_t core_floats(std::int64_t, std::int64_t, bool) const override { return 0; }

 private:
  float gain_;
};

void reference_uniform(const ref::CoreInput& in, ref::Mat& C, bool skewed) {
  const double gain = std::stod(in.keys.at("gain"));
  std::int64_t real = 0;
  for (std::int64_t u = 0; u < in.n; ++u) real += in.m[u] != 0;
  for (std::int64_t t = 0; t < in.n; ++t)
    for (std::int64_t c = 0; c < in.D; ++c) {
      double s = 0;
      for (std::int64_t u = 0; u < in.n; ++u)
        if (in.m[u]) s += in.V[u * in.D + c];
      const double g = skewed && c == in.D - 1 ? 1.0 : gain;
      C[t * in.D + c] = real ? g * s / real : 0.0;
    }
}

VariantInfo uniform_record(bool skewed) {
  VariantInfo v;
  v.name = skewed ? "uniform_skewed" : "uniform";
  v.summary = "test only: every query attends to every real key with equal weight";
  v.keys = {{"gain", skewed ? "1.5" : "1", "a factor on the context"}};
  v.make_cpu = skewed ? +[](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<UniformAttention>("uniform_skewed", keys.resolved(), dim, heads,
                                              std::stod(keys.resolved().at("gain")));
  }
                      : +[](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    keys.get_int("gain", 0);  // an integer here, so that a bad value is the registry's usage error
    return std::make_unique<UniformAttention>("uniform", keys.resolved(), dim, heads,
                                              std::stod(keys.resolved().at("gain")));
  };
  v.reference_core = skewed ? +[](const ref::CoreInput& in, ref::Mat& C) { reference_uniform(in, C, true); }
                            : +[](const ref::CoreInput& in, ref::Mat& C) { reference_uniform(in, C, false); };
  return v;
}

// Registers for the scope of one test case, so that no other test sees these variants.
struct ScopedVariant {
  std::string name;
  explicit ScopedVariant(VariantInfo v) : name(v.name) { register_variant(std::move(v)); }
  ~ScopedVariant() { unregister_variant(name); }
};

}  // namespace

TEST_CASE("every built-in variant's record is whole and agrees with its module", "[registry]") {
  std::set<std::string> names;
  int baselines = 0, headlines = 0;
  for (const auto& v : variants()) {
    INFO(v.name);
    CHECK(names.insert(v.name).second);
    CHECK_FALSE(v.summary.empty());
    CHECK((v.reference_core != nullptr) != (v.reference_module != nullptr));  // exactly one reference
    baselines += v.baseline;
    headlines += v.headline;
    if (!v.cuda_only.empty()) {
      // A GPU-only variant (a vendor's kernels): refused on the CPU with its reason, in no default list.
      CHECK_THROWS_WITH(make_attention(VariantSpec::parse(v.spec()), 16, 2, 64),
                        Catch::Contains(v.cuda_only) && Catch::Contains("--device cuda"));
      CHECK_FALSE((v.baseline || v.headline || v.in_default_sweep || v.in_lra_defaults || v.prob_dropout));
#if LSBENCH_HAVE_CUDA
      CHECK(v.make_cuda != nullptr);
#endif
      continue;
    }
    auto a = make_attention(VariantSpec::parse(v.spec()), 16, 2, 64);
    CHECK(a->name() == v.name);
    // The record's dropout flag is what the module does: p > 0 changes its output, or is refused.
    if (v.prob_dropout) {
      std::vector<float> x(2 * 16 * 64), y0(x.size()), y1(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
      const std::int64_t n = a->padded_length(16);
      REQUIRE(n == 16);
      a->init_params(5);
      a->forward(x.data(), nullptr, 2, n, y0.data(), false);
      a->set_prob_dropout(ProbDropout{0.5f, 3});
      a->forward(x.data(), nullptr, 2, n, y1.data(), false);
      CHECK(y0 != y1);
    } else {
      CHECK_THROWS_AS(a->set_prob_dropout(ProbDropout{0.5f, 3}), UsageError);
    }
    // Every key resolved, the causal form's only where causal.
    std::size_t bidirectional_keys = 0;
    for (const auto& k : v.keys) {
      CHECK(a->resolved_params().count(k.name) == (k.causal_only ? 0u : 1u));
      bidirectional_keys += !k.causal_only;
    }
    CHECK(a->resolved_params().size() == bidirectional_keys);
    // The record's causal flag is what make_attention does: a causal module with every key, or a refusal.
    VariantSpec causal = VariantSpec::parse(v.spec());
    causal.causal = true;
    if (v.causal) {
      const auto c = make_attention(causal, 16, 2, 64);
      CHECK(c->causal());
      CHECK(c->resolved_params().size() == v.keys.size());
    } else {
      CHECK_THROWS_WITH(make_attention(causal, 16, 2, 64), Catch::Contains(v.no_causal_reason));
      CHECK_FALSE(v.no_causal_reason.empty());
    }
#if LSBENCH_HAVE_CUDA
    CHECK(v.make_cuda != nullptr);  // every variant has its CUDA twin today
#endif
  }
  CHECK(baselines == 1);
  CHECK(headlines == 1);
  CHECK(variant_names().front() == baseline_variant().name);  // CMakeLists.txt's order
  // The defaults lists hold specs that parse and build.
  for (const auto& s : default_sweep_variants()) CHECK_NOTHROW(make_attention(VariantSpec::parse(s), 16, 2, 64));
  for (const auto& s : default_lra_variants()) CHECK_NOTHROW(make_attention(VariantSpec::parse(s), 16, 2, 64));
}

TEST_CASE("the registry refuses a second record of a name, and unknown names list the variants", "[registry]") {
  ScopedVariant u(uniform_record(false));
  CHECK_THROWS_AS(register_variant(uniform_record(false)), std::logic_error);
  VariantInfo taken = uniform_record(false);
  taken.name = baseline_variant().name;
  CHECK_THROWS_AS(register_variant(taken), std::logic_error);
  CHECK_THROWS_AS(unregister_variant(baseline_variant().name), std::logic_error);  // built-in ones stay
  VariantInfo no_factory = uniform_record(false);
  no_factory.name = "no_factory";
  no_factory.make_cpu = nullptr;
  CHECK_THROWS_AS(register_variant(no_factory), std::logic_error);
  CHECK_THROWS_WITH(variant_info("nope"), Catch::Contains("unknown variant 'nope'") && Catch::Contains("uniform"));
  CHECK_THROWS_WITH(make_attention(VariantSpec::parse("uniform:gain=x"), 16, 2, 64),
                    Catch::Contains("gain=x is not an integer"));
  CHECK_THROWS_WITH(make_attention(VariantSpec::parse("uniform:k=1"), 16, 2, 64),
                    Catch::Contains("unknown key 'k'") && Catch::Contains("gain"));
}

TEST_CASE("a key that defaults to the length is resolved to n_max, and left out of labels where it equals n",
          "[registry]") {
  VariantInfo v = uniform_record(false);
  v.keys.push_back({"span", kLengthDefault, "the longest sequence"});
  ScopedVariant u(v);
  const VariantInfo& info = variant_info("uniform");
  CHECK(info.is_length_key("span"));
  CHECK_FALSE(info.is_length_key("gain"));
  CHECK(make_attention(VariantSpec::parse("uniform"), 16, 2, 96)->resolved_params().at("span") == "96");
  CHECK(make_attention(VariantSpec::parse("uniform:span=40"), 16, 2, 96)->resolved_params().at("span") == "40");
  nlohmann::json config = {{"variant", "uniform"}, {"variant_params", {{"gain", 1}, {"span", 512}}}, {"n", 512}};
  CHECK(variant_label(config) == "uniform:gain=1");
  config["n"] = 256;
  CHECK(variant_label(config) == "uniform:gain=1,span=512");
}

TEST_CASE("parse_int reads a whole integer or nothing", "[registry]") {
  CHECK(parse_int("42") == 42);
  CHECK(parse_int("-7") == -7);
  CHECK(parse_int(" 8") == 8);  // as strtoll (and std::stoll) read it
  for (const char* bad : {"", " ", "x", "8x", "1.5", "99999999999999999999"}) CHECK_FALSE(parse_int(bad).has_value());
}

TEST_CASE("a variant registered from outside is picked up by info, bench, the reference check, sweep and the encoder",
          "[registry][sweep]") {
  ScopedVariant uniform(uniform_record(false));
  ScopedVariant skewed(uniform_record(true));

  // info and --help print variants_help().
  CHECK_THAT(variants_help(), Catch::Contains("uniform") && Catch::Contains("gain=1 (a factor on the context)"));

  // The reference check: the honest one passes forward and gradient, the skewed one is caught.
  const ReferenceCheck good = check_against_reference(VariantSpec::parse("uniform:gain=2"), 16, 2, true, 1);
  INFO(good.message);
  CHECK(good.ok);
  CHECK(good.forward_rel_error < 1e-5);
  CHECK(good.grad_rel_error < 1e-4);
  const ReferenceCheck bad = check_against_reference(VariantSpec::parse("uniform_skewed"), 16, 2, false, 1);
  CHECK_FALSE(bad.ok);
  CHECK(bad.forward_rel_error > 1e-2);

  const auto dir = test::fresh_dir("registry_plugin");
  TimingPolicy quick;
  quick.warmup = 0, quick.min_reps = 1, quick.min_time_s = 0;

  // attention bench: checked, then timed, into a report; the skewed one is refused (exit 5, not timed).
  AttentionBenchOptions b;
  b.variants = VariantSpec::parse_all({"uniform"}), b.lengths = {64}, b.batch = 2, b.dim = 16, b.heads = 2, b.mode = "fwdbwd";
  b.timing = quick, b.json_path = (dir / "bench.json").string();
  REQUIRE(run_attention_bench(b) == 0);
  const auto bench = read_report(b.json_path);
  REQUIRE(bench["results"].size() == 1);
  CHECK(bench["results"][0]["status"] == "ok");
  b.variants = VariantSpec::parse_all({"uniform_skewed"}), b.json_path = (dir / "bench_skewed.json").string();
  CHECK(run_attention_bench(b) == 5);

  // sweep: the attention module and a whole training step of the encoder around it.
  SweepOptions s;
  s.variants = VariantSpec::parse_all({"uniform"}), s.lengths = {64}, s.batches = {2}, s.dims = {16}, s.heads = {2}, s.layers = {1};
  s.modes = {"attn-fwdbwd", "train-step"}, s.task = "listops", s.timing = quick, s.progress = false;
  s.out = (dir / "sweep.json").string();
  REQUIRE(run_sweep(s) == 0);
  const auto sweep = read_report(s.out);
  REQUIRE(sweep["results"].size() == 2);
  for (const auto& r : sweep["results"]) {
    INFO(r.dump());
    CHECK(r["status"] == "ok");
    CHECK(r["config"]["variant"].get<std::string>().rfind("uniform", 0) == 0);
  }
}
