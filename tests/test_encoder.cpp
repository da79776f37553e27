// The whole encoder against finite differences: every parameter tensor (embeddings, blocks, every
// attention variant's own, head), with padding, for mean, mean-all and cls pooling, with and without dropout.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "nn/device_ops.hpp"
#include "model/encoder.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"
#include "nn/random.hpp"

using namespace lsb;

namespace {

struct Batch {
  std::int64_t b = 3, n = 5;
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> mask;
  std::vector<int> labels{0, 2, 1};
};

Batch make_batch(std::int64_t vocab) {
  Batch x;
  Rng rng(5);
  for (std::int64_t i = 0; i < x.b * x.n; ++i) x.tokens.push_back(static_cast<std::int32_t>(rng.below(vocab)));
  x.mask.assign(x.b * x.n, 1);
  x.mask[1 * x.n + 3] = x.mask[1 * x.n + 4] = 0;  // example 1 ends in two padded tokens
  return x;
}

// Every parameter tensor's gradient against central differences along a random direction.
void check_directional_derivatives(Encoder& enc, const std::function<double()>& loss, Rng& rng) {
  for (auto& [name, prm] : enc.parameters()) {
    // Directional derivative along a random direction of this tensor.
    std::vector<float> v(prm->value.numel());
    double analytic = 0;
    for (std::size_t i = 0; i < v.size(); ++i) analytic += prm->grad[i] * (v[i] = static_cast<float>(rng.normal()));
    auto shifted = [&](float e) {
      for (std::size_t i = 0; i < v.size(); ++i) prm->value[i] += e * v[i];
      const double L = loss();
      for (std::size_t i = 0; i < v.size(); ++i) prm->value[i] -= e * v[i];
      return L;
    };
    auto numeric = [&](float eps) { return (shifted(eps) - shifted(-eps)) / (2 * eps); };
    // Three steps: a large one may cross a ReLU kink of the head (the model is not smooth
    // there; seen at 1e-3 and 1e-4 for the position embeddings with cls pooling), a small one
    // sees more fp32 rounding. The absolute terms are each step's noise floor (fp32 rounding
    // inside the network moves the loss by about 1e-7, i.e. 5e-5 / step); above them the
    // relative terms hold, and a wrong gradient fails at every step.
    const double n3 = numeric(1e-3f), n4 = numeric(1e-4f), n5 = numeric(1e-5f);
    INFO(fmt::format("{}: analytic {:.6e}, numeric {:.6e} / {:.6e} / {:.6e} (steps 1e-3 / 1e-4 / 1e-5)", name,
                     analytic, n3, n4, n5));
    CHECK((std::fabs(analytic - n3) <= 3e-3 * std::fabs(n3) + 1e-4 ||
           std::fabs(analytic - n4) <= 1e-2 * std::fabs(n4) + 5e-4 ||
           std::fabs(analytic - n5) <= 1e-2 * std::fabs(n5) + 5e-3));
  }
}

}  // namespace

TEST_CASE("encoder gradients agree with finite differences for every variant and pooling", "[encoder][gradient]") {
  struct Case {
    std::string attention, pooling;
    float dropout, attention_dropout = 0.0f;
  };
  const std::vector<Case> cases = {{"full", "mean", 0.0f},          {"full", "cls", 0.0f},
                                   {"flash", "mean", 0.0f},         {"linformer:k=3", "mean", 0.0f},
                                   {"sliding:R=1", "cls", 0.0f},    {"ls:w=2,r=2", "mean", 0.0f}, {"flash", "cls", 0.0f},
                                   {"ls:w=2,r=2", "cls", 0.0f},     {"full", "mean", 0.2f},
                                   {"performer:features=8", "mean", 0.0f}, {"lsra:Hc=2", "cls", 0.0f},
                                   {"nystromformer:m=2,conv=3", "mean", 0.0f},
                                   // the reference code's pooling (sum over real tokens / n)
                                   {"full", "mean-all", 0.0f},      {"ls:w=2,r=2", "mean-all", 0.2f},
                                   // dropout on the attention probabilities as well
                                   {"flash", "mean", 0.2f, 0.3f},   {"ls:w=2,r=2", "cls", 0.0f, 0.3f},
                                   {"linformer:k=3", "mean", 0.0f, 0.3f}, {"lsra:Hc=2", "mean", 0.2f, 0.3f}};
  for (const auto& c : cases) {
    INFO(c.attention << " pooling " << c.pooling << " dropout " << c.dropout << " attention dropout "
                     << c.attention_dropout);
    const EncoderConfig cfg{.vocab = 7, .classes = 3, .max_len = 6, .dim = 8, .heads = 2, .layers = 2,
                            .mlp_dim = 12, .pooling = c.pooling, .dropout = c.dropout,
                            .attention_dropout = c.attention_dropout, .attention = VariantSpec::parse(c.attention)};
    Encoder enc(cfg);
    enc.init_params(3);
    Rng rng(11);
    for (auto& [name, prm] : enc.parameters())  // perturb LayerNorms away from the identity
      if (name.find("ln") != std::string::npos)
        for (std::int64_t i = 0; i < prm->value.numel(); ++i) prm->value[i] += static_cast<float>(0.2 * rng.normal());
    const Batch x = make_batch(cfg.vocab);
    const bool train = c.dropout > 0 || c.attention_dropout > 0;  // same seed every call: the same masks
    auto loss = [&] { return (enc.forward(x.tokens.data(), x.mask.data(), x.labels.data(), x.b, x.n, train, 42)); };
    enc.zero_grad();
    const double L0 = loss();
    CHECK(std::isfinite(L0));
    enc.backward();
    CHECK(loss() == L0);  // deterministic, dropout included
    check_directional_derivatives(enc, loss, rng);
  }
}

TEST_CASE("two towers: gradients through the shared encoder and the [u, v, u*v, u-v] head", "[encoder][gradient]") {
  for (const std::string attention : {"full", "ls:w=2,r=2"}) {
    INFO(attention);
    const EncoderConfig cfg{.vocab = 7, .classes = 2, .max_len = 6, .dim = 8, .heads = 2, .layers = 2, .mlp_dim = 12,
                            .pooling = "mean", .dropout = 0.0f, .attention = VariantSpec::parse(attention), .pair = true};
    Encoder enc(cfg);
    enc.init_params(4);
    for (const auto& [name, prm] : enc.parameters())
      if (name == "head.fc1.weight") CHECK(prm->value.shape() == Shape{12, 4 * 8});  // [u, v, u*v, u-v]
    Rng rng(12);
    // 3 examples: 6 sequences, the first documents then the second ones; one of each padded.
    const std::int64_t b = 3, n = 5;
    std::vector<std::int32_t> tokens;
    for (std::int64_t i = 0; i < 2 * b * n; ++i) tokens.push_back(static_cast<std::int32_t>(rng.below(cfg.vocab)));
    std::vector<std::uint8_t> mask(2 * b * n, 1);
    mask[1 * n + 4] = mask[4 * n + 3] = mask[4 * n + 4] = 0;
    const std::vector<int> labels{1, 0, 1};
    auto loss = [&] { return enc.forward(tokens.data(), mask.data(), labels.data(), b, n, false, 0); };
    enc.zero_grad();
    const double L0 = loss();
    enc.backward();
    CHECK(std::isfinite(L0));
    check_directional_derivatives(enc, loss, rng);
    // The head sees both documents: swapping the towers changes the logits (u - v flips sign)...
    std::vector<float> logits(enc.logits(), enc.logits() + b * 2);
    std::vector<std::int32_t> swapped(tokens.begin() + b * n, tokens.end());
    swapped.insert(swapped.end(), tokens.begin(), tokens.begin() + b * n);
    std::vector<std::uint8_t> swapped_mask(mask.begin() + b * n, mask.end());
    swapped_mask.insert(swapped_mask.end(), mask.begin(), mask.begin() + b * n);
    enc.forward(swapped.data(), swapped_mask.data(), labels.data(), b, n, false, 0);
    CHECK(std::vector<float>(enc.logits(), enc.logits() + b * 2) != logits);
    // ... and each example's logits depend on its own pair only (a batch of one gives the same).
    std::vector<std::int32_t> one(tokens.begin() + n, tokens.begin() + 2 * n);
    one.insert(one.end(), tokens.begin() + (b + 1) * n, tokens.begin() + (b + 2) * n);
    std::vector<std::uint8_t> one_mask(mask.begin() + n, mask.begin() + 2 * n);
    one_mask.insert(one_mask.end(), mask.begin() + (b + 1) * n, mask.begin() + (b + 2) * n);
    const int label = 0;
    enc.forward(one.data(), one_mask.data(), &label, 1, n, false, 0);
    CHECK(enc.logits()[0] == Approx(logits[2]).epsilon(1e-3));
    CHECK(enc.logits()[1] == Approx(logits[3]).epsilon(1e-3));
  }
}

TEST_CASE("lsra layers take their kernel size from the schedule unless the spec sets it", "[encoder]") {
  EncoderConfig cfg{.vocab = 7, .classes = 2, .max_len = 6, .dim = 8, .heads = 2, .layers = 3, .mlp_dim = 12,
                    .pooling = "mean", .dropout = 0.0f, .attention = VariantSpec::parse("lsra:Hc=2")};
  const Encoder scheduled(cfg);
  CHECK(scheduled.attention(0).resolved_params().at("K") == "3");
  CHECK(scheduled.attention(1).resolved_params().at("K") == "7");
  CHECK(scheduled.attention(2).resolved_params().at("K") == "15");
  cfg.attention = VariantSpec::parse("lsra:K=5,Hc=2");
  const Encoder fixed(cfg);
  CHECK(fixed.attention(2).resolved_params().at("K") == "5");
}

TEST_CASE("dropout masks are a counter-based stream: the keep rate, the scale, one mask per seed", "[encoder]") {
  const std::int64_t n = 200000;
  std::vector<float> v(n, 2.0f), mask(n), v2(n, 2.0f), mask2(n), v3(n, 2.0f), mask3(n);
  device_ops::dropout_forward(Device::cpu, 5, 0.9f, v.data(), mask.data(), n);
  device_ops::dropout_forward(Device::cpu, 5, 0.9f, v2.data(), mask2.data(), n);
  device_ops::dropout_forward(Device::cpu, 6, 0.9f, v3.data(), mask3.data(), n);
  std::int64_t kept = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    REQUIRE((mask[i] == 0.0f || mask[i] == 1.0f / 0.9f));
    REQUIRE(v[i] == 2.0f * mask[i]);
    kept += mask[i] != 0.0f;
    // Element i depends on (seed, i) only: the same whatever else is drawn, or in which order.
    REQUIRE(mask[i] == dropout_factor(5, static_cast<std::uint64_t>(i), 0.9f));
  }
  CHECK(mask2 == mask);
  CHECK(mask3 != mask);
  // Binomial(n, 0.9): standard deviation 134; 5 of them either side.
  CHECK(std::abs(kept - 180000) < 5 * 134);
}

TEST_CASE("attention dropout acts in training only, with a mask per step, and is refused where there are no "
          "probabilities", "[encoder]") {
  EncoderConfig cfg{.vocab = 7, .classes = 3, .max_len = 6, .dim = 8, .heads = 2, .layers = 2, .mlp_dim = 12,
                    .attention_dropout = 0.3f, .attention = VariantSpec::parse("ls:w=2,r=2")};
  Encoder enc(cfg);
  enc.init_params(3);
  const Batch x = make_batch(cfg.vocab);
  auto loss = [&](bool train, std::uint64_t seed) {
    return enc.forward(x.tokens.data(), x.mask.data(), x.labels.data(), x.b, x.n, train, seed);
  };
  const double eval = loss(false, 1);
  CHECK(loss(false, 2) == eval);  // no dropout when evaluating
  const double step1 = loss(true, 1);
  CHECK(step1 != eval);
  CHECK(loss(true, 1) == step1);
  CHECK(loss(true, 2) != step1);
  cfg.attention = VariantSpec::parse("performer:features=8");
  CHECK_THROWS_WITH(Encoder(cfg), Catch::Contains("does not drop attention probabilities"));
  cfg.attention_dropout = 0.0f;
  CHECK_NOTHROW(Encoder(cfg));
}

TEST_CASE("encoder rejects bad tokens labels and lengths naming them", "[encoder]") {
  EncoderConfig cfg{.vocab = 5, .classes = 2, .max_len = 4, .dim = 8, .mlp_dim = 8};
  Encoder enc(cfg);
  enc.init_params(1);
  std::vector<std::int32_t> tok{1, 2, 9, 0};
  std::vector<std::uint8_t> mask(4, 1);
  std::vector<int> lab{1};
  CHECK_THROWS_WITH(enc.forward(tok.data(), mask.data(), lab.data(), 1, 4, false, 0),
                    Catch::Contains("token 9 at (0, 2) is outside the vocabulary 0..4"));
  tok[2] = 3;
  lab[0] = 2;
  CHECK_THROWS_WITH(enc.forward(tok.data(), mask.data(), lab.data(), 1, 4, false, 0), Catch::Contains("label 2"));
  lab[0] = 1;
  std::vector<std::int32_t> longer(5, 1);
  std::vector<std::uint8_t> mask5(5, 1);
  CHECK_THROWS_WITH(enc.forward(longer.data(), mask5.data(), lab.data(), 1, 5, false, 0),
                    Catch::Contains("exceeds max_len 4"));
  cfg.pooling = "max";
  CHECK_THROWS_WITH(Encoder(cfg), Catch::Contains("--pooling max"));
}

TEST_CASE("the encoder's analytic memory model equals what the allocator counts", "[encoder][memory]") {
  auto& mt = MemoryTracker::instance();
  const std::int64_t b = 2, n = 13;
  std::vector<std::int32_t> tokens(b * n, 3);
  std::vector<std::uint8_t> mask(b * n, 1);
  std::vector<int> labels{0, 2};
  std::vector<std::int32_t> tokens2(2 * b * n, 3);  // two towers: 2b sequences
  std::vector<std::uint8_t> mask2(2 * b * n, 1);
  for (const std::string spec : {"full", "flash", "ls:w=4,r=3", "linformer:k=5", "sliding:R=2"})
    for (const std::string pooling : {"mean", "cls", "mean-pair"})
      for (const bool train : {false, true}) {
        INFO(spec << " " << pooling << (train ? " train" : " inference"));
        const bool pair = pooling == "mean-pair";
        const EncoderConfig cfg{.vocab = 11, .classes = 3, .max_len = 16, .dim = 8, .heads = 2, .layers = 2,
                                .mlp_dim = 12, .pooling = pair ? "mean" : pooling, .dropout = 0.1f, .attention = VariantSpec::parse(spec),
                                .pair = pair};
        const auto* tok = pair ? tokens2.data() : tokens.data();
        const auto* msk = pair ? mask2.data() : mask.data();
        {  // a first model lets process-wide buffers (oneDNN's scratchpad) reach their size
          Encoder warm(cfg);
          warm.forward(tok, msk, labels.data(), b, n, train, 7);
        }
        const auto live0 = mt.stats(Device::cpu).live;
        const auto scratch0 = matmul_scratchpad_bytes();
        Encoder enc(cfg);
        enc.init_params(1);
        enc.forward(tok, msk, labels.data(), b, n, train, 7);
        if (train) enc.backward();
        // oneDNN's scratchpad is shared by the whole process and not the encoder's.
        const auto counted = mt.stats(Device::cpu).live - live0 - (matmul_scratchpad_bytes() - scratch0);
        CHECK(counted == enc.analytic_bytes(b, n, train));
      }
}

TEST_CASE("language model gradients agree with finite differences for every causal variant, tied or not",
          "[encoder][gradient][lm]") {
  struct Case {
    std::string attention;
    bool tied;
    float dropout;
  };
  const std::vector<Case> cases = {{"full", false, 0.0f},          {"full", true, 0.0f},
                                   {"flash", false, 0.2f},         {"ls:w=2,l=2,r=1", false, 0.0f},
                                   {"ls:w=2,l=2,r=1", true, 0.0f}, {"sliding:R=1", false, 0.0f},
                                   {"lsra:Hc=2", true, 0.0f},      {"performer:features=8", false, 0.0f}};
  for (const auto& c : cases) {
    INFO(c.attention << (c.tied ? " tied" : " own output layer") << " dropout " << c.dropout);
    VariantSpec spec = VariantSpec::parse(c.attention);
    spec.causal = true;
    const EncoderConfig cfg{.vocab = 7, .classes = 0, .max_len = 6, .dim = 8, .heads = 2, .layers = 2, .mlp_dim = 12,
                            .dropout = c.dropout, .attention = spec, .language_model = true, .tie_embeddings = c.tied};
    Encoder enc(cfg);
    enc.init_params(3);
    Rng rng(11);
    for (auto& [name, prm] : enc.parameters())
      if (name.find("ln") != std::string::npos)
        for (std::int64_t i = 0; i < prm->value.numel(); ++i) prm->value[i] += static_cast<float>(0.2 * rng.normal());
    bool has_out_weight = false, has_out_bias = false, has_head = false;
    for (const auto& [name, prm] : enc.parameters()) {
      has_out_weight |= name == "out.weight", has_out_bias |= name == "out.bias";
      has_head |= name.rfind("head.", 0) == 0;
    }
    CHECK(has_out_weight == !c.tied);
    CHECK(has_out_bias);
    CHECK_FALSE(has_head);  // no classifier in a decoder
    // Two windows of 5; the next tokens as labels, position 4 of the second and position 0 of the first
    // unscored (-1): their logits must not reach the loss.
    const std::int64_t b = 2, n = 5;
    std::vector<std::int32_t> tokens;
    for (std::int64_t i = 0; i < b * n; ++i) tokens.push_back(static_cast<std::int32_t>(rng.below(cfg.vocab)));
    std::vector<int> labels;
    for (std::int64_t i = 0; i < b * n; ++i) labels.push_back(static_cast<int>(rng.below(cfg.vocab)));
    labels[0] = -1, labels[n + 4] = -1;
    const std::vector<std::uint8_t> mask(b * n, 1);
    auto loss = [&] { return enc.forward(tokens.data(), mask.data(), labels.data(), b, n, c.dropout > 0, 42); };
    enc.zero_grad();
    const double L0 = loss();
    CHECK(std::isfinite(L0));
    CHECK(enc.scored_tokens() == b * n - 2);
    enc.backward();
    CHECK(loss() == L0);
    check_directional_derivatives(enc, loss, rng);
  }
}

TEST_CASE("a language model's logits at position t ignore every later token", "[encoder][lm][causal]") {
  for (const std::string attention : {"full", "flash", "ls:w=2,l=2,r=1", "sliding:R=1", "lsra:Hc=2",
                                      "performer:features=8"}) {
    INFO(attention);
    VariantSpec spec = VariantSpec::parse(attention);
    spec.causal = true;
    Encoder enc({.vocab = 11, .classes = 0, .max_len = 9, .dim = 8, .heads = 2, .layers = 2, .mlp_dim = 12,
                 .attention = spec, .language_model = true});
    enc.init_params(7);
    const std::int64_t n = 9, t = 4, V = 11;
    std::vector<std::int32_t> tokens = {1, 5, 2, 9, 3, 4, 10, 0, 6};
    const std::vector<std::uint8_t> mask(n, 1);
    const std::vector<int> labels(n, 0);
    enc.forward(tokens.data(), mask.data(), labels.data(), 1, n, false, 0);
    const std::vector<float> before(enc.logits(), enc.logits() + (t + 1) * V);
    for (std::int64_t u = t + 1; u < n; ++u) tokens[u] = static_cast<std::int32_t>((tokens[u] + 3) % V);
    enc.forward(tokens.data(), mask.data(), labels.data(), 1, n, false, 0);
    const std::vector<float> after(enc.logits(), enc.logits() + (t + 1) * V);
    CHECK(before == after);  // bit for bit
    const std::vector<float> later_before(before.end() - V, before.end());
    tokens[t] = static_cast<std::int32_t>((tokens[t] + 1) % V);  // and the mask is not vacuous
    enc.forward(tokens.data(), mask.data(), labels.data(), 1, n, false, 0);
    CHECK(std::vector<float>(enc.logits() + t * V, enc.logits() + (t + 1) * V) != later_before);
  }
}
