// AdamW against a float64 transcription of torch.optim.AdamW, the schedule, clipping, and the
// encoder plus optimiser learning a small task end to end.
#include <catch2/catch.hpp>

#include <cmath>

#include "model/encoder.hpp"
#include "nn/optim.hpp"
#include "nn/random.hpp"

using namespace lsb;

TEST_CASE("AdamW follows torch.optim.AdamW with decoupled weight decay", "[optim]") {
  Param p{"w", Tensor::zeros({3}, MemCategory::parameters, "w"), Tensor::zeros({3}, MemCategory::gradients, "w")};
  const double p0[3] = {0.5, -1.0, 2.0};
  for (int i = 0; i < 3; ++i) p.value[i] = static_cast<float>(p0[i]);
  AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  AdamW opt({{"w", &p}}, cfg);
  double ref[3] = {p0[0], p0[1], p0[2]}, m[3] = {}, v[3] = {};
  const double grads[2][3] = {{0.3, -0.2, 0.0}, {-0.1, 0.4, 1.0}};
  const double lrs[2] = {0.01, 0.02};
  for (int t = 1; t <= 2; ++t) {
    for (int i = 0; i < 3; ++i) p.grad[i] = static_cast<float>(grads[t - 1][i]);
    opt.step(lrs[t - 1]);
    for (int i = 0; i < 3; ++i) {  // torch: p *= 1 - lr wd; then the Adam step with bias correction
      const double g = grads[t - 1][i], lr = lrs[t - 1];
      ref[i] *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
      ref[i] -= lr * mh / (std::sqrt(vh) + 1e-6);
      CHECK(p.value[i] == Approx(ref[i]).epsilon(1e-6));
    }
  }
  CHECK(opt.steps() == 2);
}

TEST_CASE("warm-up then linear decay, and global-norm clipping", "[optim]") {
  CHECK(warmup_linear_lr(1e-3, 1, 10, 110) == Approx(1e-4));
  CHECK(warmup_linear_lr(1e-3, 10, 10, 110) == Approx(1e-3));
  CHECK(warmup_linear_lr(1e-3, 60, 10, 110) == Approx(5e-4));
  CHECK(warmup_linear_lr(1e-3, 110, 10, 110) == 0.0);
  CHECK(warmup_linear_lr(1e-3, 200, 10, 110) == 0.0);
  Param a{"a", Tensor::zeros({2}, MemCategory::parameters, "a"), Tensor::zeros({2}, MemCategory::gradients, "a")};
  Param b{"b", Tensor::zeros({1}, MemCategory::parameters, "b"), Tensor::zeros({1}, MemCategory::gradients, "b")};
  a.grad[0] = 3;
  a.grad[1] = 0;
  b.grad[0] = 4;
  const std::vector<std::pair<std::string, Param*>> ps = {{"a", &a}, {"b", &b}};
  CHECK(clip_grad_norm(ps, 10.0) == Approx(5.0));
  CHECK(a.grad[0] == 3.0f);  // under the limit: untouched
  CHECK(clip_grad_norm(ps, 1.0) == Approx(5.0));
  CHECK(a.grad[0] == Approx(0.6));
  CHECK(b.grad[0] == Approx(0.8));
}

TEST_CASE("the encoder with AdamW learns whether a token occurs in the sequence", "[optim][encoder]") {
  // Balanced by construction: label 1 iff token 3 occurs; chance is 50% and loss ln 2 = 0.69.
  for (const std::string attention : {"full", "ls:w=4,r=2"}) {
    INFO(attention);
    Encoder enc({.vocab = 4, .classes = 2, .max_len = 8, .dim = 16, .heads = 2, .layers = 1, .mlp_dim = 32,
                 .attention = VariantSpec::parse(attention)});
    enc.init_params(1);
    AdamW opt(enc.parameters(), AdamWConfig{});
    Rng rng(2);
    const std::int64_t b = 32, n = 8;
    auto batch = [&](std::vector<std::int32_t>& tok, std::vector<int>& lab) {
      tok.assign(b * n, 0);
      lab.assign(b, 0);
      for (std::int64_t i = 0; i < b; ++i) {
        lab[i] = static_cast<int>(i % 2);
        for (std::int64_t t = 0; t < n; ++t) tok[i * n + t] = static_cast<std::int32_t>(rng.below(3));  // 0..2
        if (lab[i]) tok[i * n + rng.below(n)] = 3;
      }
    };
    std::vector<std::int32_t> tok;
    std::vector<int> lab;
    std::vector<std::uint8_t> mask(b * n, 1);
    const int steps = 200;
    for (int s = 1; s <= steps; ++s) {
      batch(tok, lab);
      enc.zero_grad();
      enc.forward(tok.data(), mask.data(), lab.data(), b, n, true, s);
      enc.backward();
      clip_grad_norm(enc.parameters(), 1.0);
      opt.step(warmup_linear_lr(3e-3, s, 20, steps));
    }
    batch(tok, lab);  // a fresh batch
    const double loss = enc.forward(tok.data(), mask.data(), lab.data(), b, n, false, 0);
    int correct = 0;
    for (std::int64_t i = 0; i < b; ++i) correct += (enc.logits()[2 * i + 1] > enc.logits()[2 * i]) == (lab[i] == 1);
    CHECK(loss < 0.2);
    CHECK(correct >= 30);  // of 32: by luck at chance, probability below 1e-7
  }
}
