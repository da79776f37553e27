#include "nn/encoder.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "nn/errors.hpp"
#include "nn/ops.hpp"
#include "nn/random.hpp"

namespace lsb {
namespace {

float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678f)); }
float gelu_grad(float x) {
  return 0.5f * (1.0f + std::erf(x * 0.70710678f)) + x * 0.39894228f * std::exp(-0.5f * x * x);
}

Param make_param(const std::string& name, Shape shape) {
  Param p;
  p.name = name;
  p.value = Tensor::zeros(shape, MemCategory::parameters, name.c_str());
  p.grad = Tensor::zeros(shape, MemCategory::gradients, name.c_str());
  return p;
}

}  // namespace

// What one block keeps for its backward. Shapes for rows = sequences * N, N the internal length.
struct Encoder::Layer {
  std::unique_ptr<Attention> attn;
  Param *ln1_w = nullptr, *ln1_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;  // resolved once, after
  Param *fc1_w = nullptr, *fc1_b = nullptr, *fc2_w = nullptr, *fc2_b = nullptr;  // own_ is complete
  Tensor x_in, h1, ln1_stats, x_mid, h2, ln2_stats, m, g, drop1, drop2;  // (rows, D) / (2, rows) / (rows, Dmlp)
};

struct Encoder::State {
  std::int64_t b = 0, seqs = 0, n = 0, N = 0;  // examples, sequences (2b with two towers)
  std::vector<std::int32_t> ids;      // (b, N) token ids of the internal sequence (-1: the cls token)
  std::vector<std::uint8_t> mask;     // (b, N)
  std::vector<int> labels;            // (b)
  Tensor x_final, xf, lnf_stats, pooled, features, hpre, hrelu, logits, probs;  // pooled (seqs, D); features (b, 4D)
  bool dropped = false;               // dropout masks were applied in the last forward
  Tensor work_d, work_d2, work_da, work_mlp;    // (rows, D) x 3, (rows, Dmlp): transient
  Tensor dlogits, dh, dpooled, dfeatures;       // (b, C), (b, Dmlp), (seqs, D), (b, 4D): transient
};

Encoder::Encoder(const EncoderConfig& cfg) : cfg_(cfg), st_(std::make_unique<State>()) {
  if (cfg.vocab <= 0 || cfg.classes <= 1 || cfg.max_len <= 0 || cfg.layers <= 0 || cfg.mlp_dim <= 0)
    throw UsageError(fmt::format("encoder: vocab {}, classes {}, max_len {}, layers {}, mlp_dim {} must be positive "
                                 "(classes at least 2)",
                                 cfg.vocab, cfg.classes, cfg.max_len, cfg.layers, cfg.mlp_dim));
  if (cfg.pooling != "mean" && cfg.pooling != "cls")
    throw UsageError(fmt::format("--pooling {}: expected mean or cls", cfg.pooling));
  if (!(cfg.dropout >= 0.0f && cfg.dropout < 1.0f))
    throw UsageError(fmt::format("--dropout {}: expected a value in [0, 1)", cfg.dropout));
  const VariantSpec spec = VariantSpec::parse(cfg.attention);
  const std::int64_t D = cfg.dim, F = cfg.mlp_dim;
  // The attention's own padding rule decides the longest internal sequence.
  const std::int64_t n_cls = cfg.max_len + (cfg.pooling == "cls" ? 1 : 0);
  const std::int64_t N_max = make_attention(spec, D, cfg.heads, n_cls)->padded_length(n_cls);
  own_.push_back(make_param("tok_emb", {cfg.vocab, D}));
  own_.push_back(make_param("pos_emb", {N_max, D}));
  if (cfg.pooling == "cls") own_.push_back(make_param("cls", {D}));
  for (std::int64_t l = 0; l < cfg.layers; ++l) {
    const std::string pre = fmt::format("l{}.", l);
    for (const char* ln : {"ln1", "ln2"}) {
      own_.push_back(make_param(pre + ln + ".weight", {D}));
      own_.push_back(make_param(pre + ln + ".bias", {D}));
    }
    own_.push_back(make_param(pre + "fc1.weight", {F, D}));
    own_.push_back(make_param(pre + "fc1.bias", {F}));
    own_.push_back(make_param(pre + "fc2.weight", {D, F}));
    own_.push_back(make_param(pre + "fc2.bias", {D}));
    auto layer = std::make_unique<Layer>();
    VariantSpec layer_spec = spec;
    if (spec.name == "lsra" && !spec.params.count("K")) {
      // Lite Transformer's kernel-size schedule: layer l uses entry l (../shared/spec/attention.md).
      static constexpr std::int64_t kSchedule[] = {3, 7, 15, 31, 31, 31};
      layer_spec.params["K"] = std::to_string(kSchedule[std::min<std::int64_t>(l, 5)]);
    }
    layer->attn = make_attention(layer_spec, D, cfg.heads, N_max);
    layers_.push_back(std::move(layer));
  }
  own_.push_back(make_param("lnf.weight", {D}));
  own_.push_back(make_param("lnf.bias", {D}));
  own_.push_back(make_param("head.fc1.weight", {F, cfg.pair ? 4 * D : D}));
  own_.push_back(make_param("head.fc1.bias", {F}));
  own_.push_back(make_param("head.fc2.weight", {cfg.classes, F}));
  own_.push_back(make_param("head.fc2.bias", {cfg.classes}));
  // own_ is complete: its addresses are stable from here on.
  top_ = {&p("tok_emb"), &p("pos_emb"), cfg.pooling == "cls" ? &p("cls") : nullptr, &p("lnf.weight"),
          &p("lnf.bias"), &p("head.fc1.weight"), &p("head.fc1.bias"), &p("head.fc2.weight"), &p("head.fc2.bias")};
  for (std::int64_t l = 0; l < cfg.layers; ++l) {
    Layer& L = *layers_[l];
    const std::string pre = fmt::format("l{}.", l);
    L.ln1_w = &p(pre + "ln1.weight");
    L.ln1_b = &p(pre + "ln1.bias");
    L.ln2_w = &p(pre + "ln2.weight");
    L.ln2_b = &p(pre + "ln2.bias");
    L.fc1_w = &p(pre + "fc1.weight");
    L.fc1_b = &p(pre + "fc1.bias");
    L.fc2_w = &p(pre + "fc2.weight");
    L.fc2_b = &p(pre + "fc2.bias");
  }
}

Encoder::~Encoder() = default;

std::int64_t Encoder::analytic_bytes(std::int64_t b, std::int64_t n, bool train) const {
  const std::int64_t D = cfg_.dim, F = cfg_.mlp_dim, C = cfg_.classes, seqs = cfg_.pair ? 2 * b : b;
  const std::int64_t rows = seqs * internal_length(n);
  std::int64_t floats = 0;
  for (const auto& p : own_) floats += 2 * p.value.numel();  // values and gradients
  // Workspaces (rows, D) x 3 and (rows, Dmlp); the first layer's input; the final LN, its stats,
  // the pooled rows, the head's two hidden layers, logits and probabilities.
  floats += 3 * rows * D + rows * F + rows * D + rows * D + 2 * rows + seqs * D + 2 * b * F + 2 * b * C;
  if (cfg_.pair) floats += b * 4 * D;  // the head's features
  for (const auto& L : layers_) {
    // h1, x_mid, h2 and the next layer's input (rows, D); two LN stats (2, rows); m, g (rows, Dmlp);
    // dropout masks (rows, D) x 2 when they are drawn.
    floats += 4 * rows * D + 4 * rows + 2 * rows * F + (train && cfg_.dropout > 0.0f ? 2 * rows * D : 0);
    floats += 2 * L->attn->parameter_count();
  }
  if (train) floats += b * C + b * F + seqs * D + (cfg_.pair ? b * 4 * D : 0);  // dlogits, dh, dpooled, dfeatures
  std::int64_t bytes = floats * static_cast<std::int64_t>(sizeof(float));
  for (const auto& L : layers_) bytes += L->attn->analytic_bytes(seqs, internal_length(n), train);
  return bytes;
}

const Attention& Encoder::attention(std::int64_t layer) const { return *layers_.at(layer)->attn; }

Param& Encoder::p(const std::string& name) {
  for (auto& q : own_)
    if (q.name == name) return q;
  throw std::out_of_range("encoder has no parameter " + name);
}

std::int64_t Encoder::internal_length(std::int64_t n) const {
  return layers_.front()->attn->padded_length(n + (cfg_.pooling == "cls" ? 1 : 0));
}

void Encoder::init_params(std::uint64_t seed) {
  Rng rng(seed);
  for (auto& q : own_) {
    Tensor& v = q.value;
    const bool is_ln = q.name.find("ln") != std::string::npos;
    if (q.name == "tok_emb" || q.name == "pos_emb" || q.name == "cls") {
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(0.02 * rng.normal());
    } else if (is_ln) {
      v.fill(q.name.find("weight") != std::string::npos ? 1.0f : 0.0f);
    } else {  // Linear weight (out, in) and bias: U(-1/sqrt(in), 1/sqrt(in))
      const std::string w = q.name.substr(0, q.name.rfind('.')) + ".weight";
      const double bound = 1.0 / std::sqrt(static_cast<double>(p(w).value.dim(1)));
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
  }
  for (std::size_t l = 0; l < layers_.size(); ++l) layers_[l]->attn->init_params(seed + 1000 + l);
}

std::vector<std::pair<std::string, Param*>> Encoder::parameters() {
  std::vector<std::pair<std::string, Param*>> out;
  for (auto& q : own_) out.emplace_back(q.name, &q);
  for (std::size_t l = 0; l < layers_.size(); ++l)
    for (auto& q : layers_[l]->attn->params()) out.emplace_back(fmt::format("l{}.attn.{}", l, q.name), &q);
  return out;
}

void Encoder::zero_grad() {
  for (auto& [name, q] : parameters()) q->grad.zero();
}

const float* Encoder::logits() const { return st_->logits.data(); }

double Encoder::forward(const std::int32_t* tokens, const std::uint8_t* mask, const int* labels, std::int64_t b,
                       std::int64_t n, bool train, std::uint64_t dropout_seed) {
  State& s = *st_;
  const std::int64_t D = cfg_.dim, F = cfg_.mlp_dim, C = cfg_.classes;
  const bool cls = cfg_.pooling == "cls";
  if (n > cfg_.max_len) throw UsageError(fmt::format("encoder: sequence of {} tokens exceeds max_len {}", n, cfg_.max_len));
  const std::int64_t seqs = cfg_.pair ? 2 * b : b, N = internal_length(n), rows = seqs * N;
  s.b = b;
  s.seqs = seqs;
  s.n = n;
  s.N = N;
  // Internal sequence: [cls] tokens..., padded with masked tokens up to N.
  s.ids.assign(rows, 0);
  s.mask.assign(rows, 0);
  s.labels.assign(labels, labels + b);
  for (std::int64_t bi = 0; bi < b; ++bi)
    if (labels[bi] < 0 || labels[bi] >= C)
      throw InputError(fmt::format("encoder: label {} of example {} is outside 0..{}", labels[bi], bi, C - 1));
  for (std::int64_t bi = 0; bi < seqs; ++bi) {
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t src = t - (cls ? 1 : 0);
      if (cls && t == 0) {
        s.ids[bi * N] = -1;
        s.mask[bi * N] = 1;
      } else if (src < n) {
        const std::int32_t id = tokens[bi * n + src];
        if (id < 0 || id >= cfg_.vocab)
          throw InputError(fmt::format("encoder: token {} at ({}, {}) is outside the vocabulary 0..{}", id, bi, src,
                                       cfg_.vocab - 1));
        s.ids[bi * N + t] = id;
        s.mask[bi * N + t] = mask[bi * n + src];
      }
    }
  }
  ensure(s.work_d, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace");
  ensure(s.work_d2, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace");
  ensure(s.work_da, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace");
  ensure(s.work_mlp, {rows, F}, MemCategory::workspace, "encoder (rows, Dmlp) workspace");

  // Embeddings into the first layer's input.
  Tensor* x = &layers_.front()->x_in;
  ensure(*x, {rows, D}, MemCategory::activations, "encoder residual stream");
  const float* tok = top_.tok_emb->value.data();
  const float* pos = top_.pos_emb->value.data();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int32_t id = s.ids[r];
    const float* e = id < 0 ? top_.cls->value.data() : tok + id * D;
    const float* pe = pos + (r % N) * D;
    for (std::int64_t c = 0; c < D; ++c) (*x)[r * D + c] = e[c] + pe[c];
  }

  const float keep = 1.0f - cfg_.dropout;
  const bool drop = train && cfg_.dropout > 0.0f;
  s.dropped = drop;
  auto dropout = [&](Tensor& mask_t, float* v, std::uint64_t seed) {
    ensure(mask_t, {rows, D}, MemCategory::activations, "encoder dropout mask");
    Rng rng(seed);
    for (std::int64_t i = 0; i < rows * D; ++i) {
      mask_t[i] = rng.uniform() < keep ? 1.0f / keep : 0.0f;
      v[i] *= mask_t[i];
    }
  };
  for (std::int64_t l = 0; l < cfg_.layers; ++l) {
    Layer& L = *layers_[l];
    ensure(L.h1, {rows, D}, MemCategory::activations, "encoder LN1 output");
    ensure(L.ln1_stats, {2, rows}, MemCategory::activations, "encoder LN1 stats");
    ensure(L.x_mid, {rows, D}, MemCategory::activations, "encoder residual stream");
    ensure(L.h2, {rows, D}, MemCategory::activations, "encoder LN2 output");
    ensure(L.ln2_stats, {2, rows}, MemCategory::activations, "encoder LN2 stats");
    ensure(L.m, {rows, F}, MemCategory::activations, "encoder MLP pre-activation");
    ensure(L.g, {rows, F}, MemCategory::activations, "encoder MLP GELU output");
    layernorm_forward(L.x_in.data(), rows, D, L.ln1_w->value.data(), L.ln1_b->value.data(),
                      L.h1.data(), L.ln1_stats.data(), L.ln1_stats.data() + rows);
    L.attn->forward(L.h1.data(), s.mask.data(), seqs, N, s.work_d.data(), true);
    if (drop) dropout(L.drop1, s.work_d.data(), dropout_seed * 1000003 + 2 * l);
    for (std::int64_t i = 0; i < rows * D; ++i) L.x_mid[i] = L.x_in[i] + s.work_d[i];
    layernorm_forward(L.x_mid.data(), rows, D, L.ln2_w->value.data(), L.ln2_b->value.data(),
                      L.h2.data(), L.ln2_stats.data(), L.ln2_stats.data() + rows);
    linear_forward(L.h2.data(), rows, D, L.fc1_w->value.data(), L.fc1_b->value.data(), F,
                   L.m.data());
    for (std::int64_t i = 0; i < rows * F; ++i) L.g[i] = gelu(L.m[i]);
    linear_forward(L.g.data(), rows, F, L.fc2_w->value.data(), L.fc2_b->value.data(), D,
                   s.work_d.data());
    if (drop) dropout(L.drop2, s.work_d.data(), dropout_seed * 1000003 + 2 * l + 1);
    Tensor& next = l + 1 < cfg_.layers ? layers_[l + 1]->x_in : s.x_final;
    ensure(next, {rows, D}, MemCategory::activations, "encoder residual stream");
    for (std::int64_t i = 0; i < rows * D; ++i) next[i] = L.x_mid[i] + s.work_d[i];
  }

  ensure(s.xf, {rows, D}, MemCategory::activations, "encoder final LN output");
  ensure(s.lnf_stats, {2, rows}, MemCategory::activations, "encoder final LN stats");
  layernorm_forward(s.x_final.data(), rows, D, top_.lnf_w->value.data(), top_.lnf_b->value.data(), s.xf.data(),
                    s.lnf_stats.data(), s.lnf_stats.data() + rows);
  // Pooling: the mean over real tokens, or (cls pooling) the cls row alone.
  ensure(s.pooled, {seqs, D}, MemCategory::activations, "encoder pooled");
  s.pooled.zero();
  for (std::int64_t bi = 0; bi < seqs; ++bi) {
    if (cls) {
      std::memcpy(s.pooled.data() + bi * D, s.xf.data() + bi * N * D, sizeof(float) * D);
      continue;
    }
    std::int64_t count = 0;
    for (std::int64_t t = 0; t < N; ++t)
      if (s.mask[bi * N + t]) {
        ++count;
        for (std::int64_t c = 0; c < D; ++c) s.pooled[bi * D + c] += s.xf[(bi * N + t) * D + c];
      }
    if (count == 0) throw InputError(fmt::format("encoder: example {} has no real token", bi));
    for (std::int64_t c = 0; c < D; ++c) s.pooled[bi * D + c] /= static_cast<float>(count);
  }
  ensure(s.hpre, {b, F}, MemCategory::activations, "encoder head hidden");
  ensure(s.hrelu, {b, F}, MemCategory::activations, "encoder head ReLU");
  ensure(s.logits, {b, C}, MemCategory::activations, "encoder logits");
  ensure(s.probs, {b, C}, MemCategory::activations, "encoder probabilities");
  // Two towers: u = pooled[i], v = pooled[b + i]; the head sees [u, v, u*v, u-v].
  const std::int64_t Din = cfg_.pair ? 4 * D : D;
  if (cfg_.pair) {
    ensure(s.features, {b, 4 * D}, MemCategory::activations, "encoder two-tower features");
    for (std::int64_t i = 0; i < b; ++i) {
      const float* u = s.pooled.data() + i * D;
      const float* v = s.pooled.data() + (b + i) * D;
      float* f = s.features.data() + i * 4 * D;
      for (std::int64_t c = 0; c < D; ++c) {
        f[c] = u[c];
        f[D + c] = v[c];
        f[2 * D + c] = u[c] * v[c];
        f[3 * D + c] = u[c] - v[c];
      }
    }
  }
  linear_forward(cfg_.pair ? s.features.data() : s.pooled.data(), b, Din, top_.head1_w->value.data(),
                 top_.head1_b->value.data(), F, s.hpre.data());
  for (std::int64_t i = 0; i < b * F; ++i) s.hrelu[i] = std::max(s.hpre[i], 0.0f);
  linear_forward(s.hrelu.data(), b, F, top_.head2_w->value.data(), top_.head2_b->value.data(), C,
                 s.logits.data());
  double loss = 0;
  for (std::int64_t bi = 0; bi < b; ++bi) {
    const float* z = s.logits.data() + bi * C;
    float mx = z[0];
    for (std::int64_t k = 1; k < C; ++k) mx = std::max(mx, z[k]);
    double sum = 0;
    for (std::int64_t k = 0; k < C; ++k) sum += std::exp(static_cast<double>(z[k] - mx));
    for (std::int64_t k = 0; k < C; ++k) s.probs[bi * C + k] = static_cast<float>(std::exp(double(z[k] - mx)) / sum);
    loss += std::log(sum) + mx - z[labels[bi]];
  }
  return loss / b;
}

void Encoder::backward() {
  State& s = *st_;
  const std::int64_t b = s.b, seqs = s.seqs, N = s.N, rows = seqs * N, D = cfg_.dim, F = cfg_.mlp_dim,
                     C = cfg_.classes, Din = cfg_.pair ? 4 * D : D;
  const bool cls = cfg_.pooling == "cls";
  // d loss / d logits = (softmax - onehot) / b.
  ensure(s.dlogits, {b, C}, MemCategory::workspace, "encoder dlogits");
  ensure(s.dh, {b, F}, MemCategory::workspace, "encoder head gradient");
  ensure(s.dpooled, {seqs, D}, MemCategory::workspace, "encoder pooled gradient");
  if (cfg_.pair) ensure(s.dfeatures, {b, 4 * D}, MemCategory::workspace, "encoder two-tower features gradient");
  Tensor &dlogits = s.dlogits, &dh = s.dh, &dpooled = s.dpooled;
  std::memcpy(dlogits.data(), s.probs.data(), sizeof(float) * b * C);
  for (std::int64_t bi = 0; bi < b; ++bi) {
    dlogits[bi * C + s.labels[bi]] -= 1.0f;
    for (std::int64_t k = 0; k < C; ++k) dlogits[bi * C + k] /= static_cast<float>(b);
  }
  linear_backward(dlogits.data(), s.hrelu.data(), b, F, top_.head2_w->value.data(), C,
                  top_.head2_w->grad.data(), top_.head2_b->grad.data(), dh.data(), false);
  for (std::int64_t i = 0; i < b * F; ++i)
    if (s.hpre[i] <= 0.0f) dh[i] = 0.0f;
  linear_backward(dh.data(), cfg_.pair ? s.features.data() : s.pooled.data(), b, Din, top_.head1_w->value.data(), F,
                  top_.head1_w->grad.data(), top_.head1_b->grad.data(),
                  cfg_.pair ? s.dfeatures.data() : dpooled.data(), false);
  if (cfg_.pair)  // d[u, v, u*v, u-v] -> du = dA + v dC + dD, dv = dB + u dC - dD
    for (std::int64_t i = 0; i < b; ++i) {
      const float* u = s.pooled.data() + i * D;
      const float* v = s.pooled.data() + (b + i) * D;
      const float* df = s.dfeatures.data() + i * 4 * D;
      for (std::int64_t c = 0; c < D; ++c) {
        dpooled[i * D + c] = df[c] + v[c] * df[2 * D + c] + df[3 * D + c];
        dpooled[(b + i) * D + c] = df[D + c] + u[c] * df[2 * D + c] - df[3 * D + c];
      }
    }
  // Pooling backward into d xf (work_d2), then the final LayerNorm into dx (work_d).
  Tensor& dxf = s.work_d2;
  Tensor& dx = s.work_d;
  dxf.zero();
  for (std::int64_t bi = 0; bi < seqs; ++bi) {
    if (cls) {
      std::memcpy(dxf.data() + bi * N * D, dpooled.data() + bi * D, sizeof(float) * D);
      continue;
    }
    std::int64_t count = 0;
    for (std::int64_t t = 0; t < N; ++t) count += s.mask[bi * N + t];
    for (std::int64_t t = 0; t < N; ++t)
      if (s.mask[bi * N + t])
        for (std::int64_t c = 0; c < D; ++c) dxf[(bi * N + t) * D + c] = dpooled[bi * D + c] / static_cast<float>(count);
  }
  layernorm_backward(dxf.data(), s.x_final.data(), rows, D, top_.lnf_w->value.data(), s.lnf_stats.data(),
                     s.lnf_stats.data() + rows, dx.data(), top_.lnf_w->grad.data(), top_.lnf_b->grad.data(),
                     false);
  const bool drop = s.dropped;
  Tensor& dmlp = s.work_mlp;
  for (std::int64_t l = cfg_.layers - 1; l >= 0; --l) {
    Layer& L = *layers_[l];
    // x_next = x_mid + drop2(fc2(GELU(fc1(LN2(x_mid))))): dx is d x_next.
    float* dout = dxf.data();  // reused as (rows, D) scratch
    for (std::int64_t i = 0; i < rows * D; ++i) dout[i] = drop ? dx[i] * L.drop2[i] : dx[i];
    linear_backward(dout, L.g.data(), rows, F, L.fc2_w->value.data(), D, L.fc2_w->grad.data(),
                    L.fc2_b->grad.data(), dmlp.data(), false);
    for (std::int64_t i = 0; i < rows * F; ++i) dmlp[i] *= gelu_grad(L.m[i]);
    linear_backward(dmlp.data(), L.h2.data(), rows, D, L.fc1_w->value.data(), F,
                    L.fc1_w->grad.data(), L.fc1_b->grad.data(), dout, false);
    layernorm_backward(dout, L.x_mid.data(), rows, D, L.ln2_w->value.data(), L.ln2_stats.data(),
                       L.ln2_stats.data() + rows, dx.data(), L.ln2_w->grad.data(),
                       L.ln2_b->grad.data(), true);
    // x_mid = x_in + drop1(Attn(LN1(x_in))): dx is now d x_mid.
    Tensor& da = s.work_da;
    for (std::int64_t i = 0; i < rows * D; ++i) da[i] = drop ? dx[i] * L.drop1[i] : dx[i];
    L.attn->backward(da.data(), dout);
    layernorm_backward(dout, L.x_in.data(), rows, D, L.ln1_w->value.data(), L.ln1_stats.data(),
                       L.ln1_stats.data() + rows, dx.data(), L.ln1_w->grad.data(),
                       L.ln1_b->grad.data(), true);
  }
  // Embeddings: scatter-add by token id and position.
  float* dtok = top_.tok_emb->grad.data();
  float* dpos = top_.pos_emb->grad.data();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int32_t id = s.ids[r];
    float* de = id < 0 ? top_.cls->grad.data() : dtok + id * D;
    float* dp = dpos + (r % N) * D;
    for (std::int64_t c = 0; c < D; ++c) {
      de[c] += dx[r * D + c];
      dp[c] += dx[r * D + c];
    }
  }
}

}  // namespace lsb
