#include "model/encoder.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "nn/cuda/device.hpp"
#include "nn/device_ops.hpp"
#include "nn/errors.hpp"
#include "nn/profile.hpp"
#include "nn/random.hpp"

namespace lsb {
namespace ops = device_ops;
namespace {

Param make_param(const std::string& name, Shape shape, Device dev) {
  Param p;
  p.name = name;
  p.value = Tensor::zeros(shape, MemCategory::parameters, name.c_str(), dev);
  p.grad = Tensor::zeros(shape, MemCategory::gradients, name.c_str(), dev);
  return p;
}

// Bytes a host array takes as a device copy (a float tensor, so rounded up to 4).
std::int64_t upload_bytes(std::int64_t bytes) { return (bytes + 3) / 4 * 4; }

// The host array on `dev`: the host pointer itself on the CPU, else a copy kept in `keep`.
template <typename T>
const T* on_device(Device dev, const std::vector<T>& host, Tensor& keep, const char* what) {
  if (dev == Device::cpu) return host.data();
  const std::int64_t bytes = static_cast<std::int64_t>(host.size() * sizeof(T));
  ensure(keep, {upload_bytes(bytes) / 4}, MemCategory::data, what, dev);
  cuda::copy(keep.data(), host.data(), static_cast<std::size_t>(bytes));
  return reinterpret_cast<const T*>(keep.data());
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
  // Host side of the batch, built and checked on the host whatever the device.
  std::vector<std::int32_t> ids;      // (seqs, N) token ids of the internal sequence (-1: the cls token)
  std::vector<std::uint8_t> mask;     // (seqs, N)
  std::vector<int> labels;            // (b); a language model's (seqs * N): next tokens, -1 unscored
  std::int64_t scored = 0;            // a language model: the positions with a label
  bool logits_copied = false;         // CUDA: logits_host holds the last forward's logits
  std::vector<std::int32_t> rows_by_id;  // backward: the rows grouped by id, for the embedding gradient
  std::vector<std::int64_t> id_starts;   // backward: (vocab + 2) where each group starts
  std::vector<double> loss;              // (b) per-example cross-entropy
  std::vector<float> logits_host;        // the device's logits, copied back when asked for (CUDA only)
  // The same arrays on the device: the host vectors themselves on the CPU, else copies in these tensors.
  const std::int32_t* ids_on = nullptr;
  const std::uint8_t* mask_on = nullptr;
  const int* labels_on = nullptr;
  Tensor ids_dev, mask_dev, labels_dev, rows_by_id_dev, id_starts_dev, loss_dev;
  Tensor x_final, xf, lnf_stats, pooled, counts, features, hpre, hrelu, logits, probs;  // pooled (seqs, D); counts (seqs)
  // logits, probs: (b, C), or a language model's (rows, vocab)
  bool dropped = false;               // dropout masks were applied in the last forward
  Tensor work_d, work_d2, work_da, work_mlp;    // (rows, D) x 3, (rows, Dmlp): transient
  Tensor dlogits, dh, dpooled, dfeatures;       // (b, C) or (rows, vocab), (b, Dmlp), (seqs, D), (b, 4D): transient
};

Encoder::Encoder(const EncoderConfig& cfg) : cfg_(cfg), st_(std::make_unique<State>()) {
  const bool lm = cfg.language_model;
  if (cfg.vocab <= 0 || (!lm && cfg.classes <= 1) || cfg.max_len <= 0 || cfg.layers <= 0 || cfg.mlp_dim <= 0)
    throw UsageError(fmt::format("encoder: vocab {}, classes {}, max_len {}, layers {}, mlp_dim {} must be positive "
                                 "(classes at least 2)",
                                 cfg.vocab, cfg.classes, cfg.max_len, cfg.layers, cfg.mlp_dim));
  if (cfg.device == Device::cuda) cuda::require_device();  // before anything is allocated there
  if (lm && (!cfg.attention.causal || cfg.pair))
    throw UsageError(fmt::format("a language model needs causal attention ({} is not causal here) and one tower",
                                 cfg.attention.text));
  if (lm) cfg_.pooling = "none";  // every position goes to the output layer
  else if (cfg.pooling != "mean" && cfg.pooling != "mean-all" && cfg.pooling != "cls")
    throw UsageError(fmt::format("--pooling {}: expected mean, mean-all or cls", cfg.pooling));
  if (!(cfg.dropout >= 0.0f && cfg.dropout < 1.0f))
    throw UsageError(fmt::format("--dropout {}: expected a value in [0, 1)", cfg.dropout));
  const VariantSpec& spec = cfg.attention;
  const std::int64_t D = cfg.dim, F = cfg.mlp_dim;
  // The attention's own padding rule decides the longest internal sequence.
  const std::int64_t n_cls = cfg.max_len + (cfg_.pooling == "cls" ? 1 : 0);
  const std::int64_t N_max = make_attention(spec, D, cfg.heads, n_cls)->padded_length(n_cls);
  own_.push_back(make_param("tok_emb", {cfg.vocab, D}, cfg.device));
  own_.push_back(make_param("pos_emb", {N_max, D}, cfg.device));
  if (cfg_.pooling == "cls") own_.push_back(make_param("cls", {D}, cfg.device));
  for (std::int64_t l = 0; l < cfg.layers; ++l) {
    const std::string pre = fmt::format("l{}.", l);
    for (const char* ln : {"ln1", "ln2"}) {
      own_.push_back(make_param(pre + ln + ".weight", {D}, cfg.device));
      own_.push_back(make_param(pre + ln + ".bias", {D}, cfg.device));
    }
    own_.push_back(make_param(pre + "fc1.weight", {F, D}, cfg.device));
    own_.push_back(make_param(pre + "fc1.bias", {F}, cfg.device));
    own_.push_back(make_param(pre + "fc2.weight", {D, F}, cfg.device));
    own_.push_back(make_param(pre + "fc2.bias", {D}, cfg.device));
    auto layer = std::make_unique<Layer>();
    const VariantInfo& info = variant_info(spec.name);
    const VariantSpec layer_spec = info.layer_spec ? info.layer_spec(spec, l) : spec;  // lsra: per-layer K
    layer->attn = make_attention(layer_spec, D, cfg.heads, N_max, cfg.device);
    layers_.push_back(std::move(layer));
  }
  set_attention_dropout(cfg.attention_dropout);  // refused here, before training, where it cannot apply
  own_.push_back(make_param("lnf.weight", {D}, cfg.device));
  own_.push_back(make_param("lnf.bias", {D}, cfg.device));
  if (lm) {
    if (!cfg.tie_embeddings) own_.push_back(make_param("out.weight", {cfg.vocab, D}, cfg.device));
    own_.push_back(make_param("out.bias", {cfg.vocab}, cfg.device));
  } else {
    own_.push_back(make_param("head.fc1.weight", {F, cfg.pair ? 4 * D : D}, cfg.device));
    own_.push_back(make_param("head.fc1.bias", {F}, cfg.device));
    own_.push_back(make_param("head.fc2.weight", {cfg.classes, F}, cfg.device));
    own_.push_back(make_param("head.fc2.bias", {cfg.classes}, cfg.device));
  }
  // own_ is complete: its addresses are stable from here on.
  auto find = [&](const std::string& name) -> Param* {
    for (auto& q : own_)
      if (q.name == name) return &q;
    return nullptr;
  };
  top_ = {find("tok_emb"),         find("pos_emb"),        find("cls"),
          find("lnf.weight"),      find("lnf.bias"),       find("head.fc1.weight"),
          find("head.fc1.bias"),   find("head.fc2.weight"), find("head.fc2.bias"),
          cfg.tie_embeddings ? find("tok_emb") : find("out.weight"), find("out.bias")};
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
  const std::int64_t rows = seqs * internal_length(n), V = cfg_.vocab;
  const bool lm = cfg_.language_model;
  std::int64_t floats = 0;
  for (const auto& p : own_) floats += 2 * p.value.numel();  // values and gradients
  // Workspaces (rows, D) x 3 and (rows, Dmlp); the first layer's input; the final LN and its stats;
  // a classifier's pooled rows, head hidden layers, logits and probabilities; a language model's logits
  // and probabilities at every position.
  floats += 3 * rows * D + rows * F + rows * D + rows * D + 2 * rows;
  floats += lm ? 2 * rows * V : seqs * D + 2 * b * F + 2 * b * C;
  if (cfg_.pair) floats += b * 4 * D;  // the head's features
  if (!lm && cfg_.pooling != "cls") floats += seqs;  // real-token counts (mean) or divisors (mean-all)
  for (const auto& L : layers_) {
    // h1, x_mid, h2 and the next layer's input (rows, D); two LN stats (2, rows); m, g (rows, Dmlp);
    // dropout masks (rows, D) x 2 when they are drawn.
    floats += 4 * rows * D + 4 * rows + 2 * rows * F + (train && cfg_.dropout > 0.0f ? 2 * rows * D : 0);
    floats += 2 * L->attn->parameter_count();
  }
  if (train && lm) floats += rows * V;  // dlogits
  else if (train) floats += b * C + b * F + seqs * D + (cfg_.pair ? b * 4 * D : 0);  // dlogits, dh, dpooled, dfeatures
  std::int64_t bytes = floats * static_cast<std::int64_t>(sizeof(float));
  if (cfg_.device == Device::cuda) {  // the batch's host arrays copied over: ids, mask, labels, the
    // per-example (per-position) losses; with a backward, the embedding gradient's grouping of rows by id
    const std::int64_t labelled = lm ? rows : b;
    bytes += upload_bytes(4 * rows) + upload_bytes(rows) + upload_bytes(4 * labelled) + upload_bytes(8 * labelled);
    if (train) bytes += upload_bytes(4 * rows) + upload_bytes(8 * (cfg_.vocab + 2));
  }
  for (const auto& L : layers_) bytes += L->attn->analytic_bytes(seqs, internal_length(n), train);
  return bytes;
}

void Encoder::set_attention_dropout(float p) {
  for (auto& layer : layers_) {
    layer->attn->set_prob_dropout({p, 0});  // the module's own check: the range, and whether it can
    layer->attn->set_prob_dropout({});      // forward() sets each step's own mask
  }
  cfg_.attention_dropout = p;
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
    // Drawn on the host: into the parameter itself on the CPU, else into a copy sent over below.
    Tensor v = q.value.device() == Device::cpu ? q.value
                                               : Tensor(q.value.shape(), MemCategory::workspace, "encoder initial values");
    const bool is_ln = q.name.find("ln") != std::string::npos;
    if (q.name == "out.bias" && cfg_.tie_embeddings) {  // Linear's bias rule with the tied weight (vocab, D)
      const double bound = 1.0 / std::sqrt(static_cast<double>(cfg_.dim));
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(rng.uniform(-bound, bound));
    } else if (q.name == "tok_emb" || q.name == "pos_emb" || q.name == "cls") {
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(0.02 * rng.normal());
    } else if (is_ln) {
      v.fill(q.name.find("weight") != std::string::npos ? 1.0f : 0.0f);
    } else {  // Linear weight (out, in) and bias: U(-1/sqrt(in), 1/sqrt(in))
      const std::string w = q.name.substr(0, q.name.rfind('.')) + ".weight";
      const double bound = 1.0 / std::sqrt(static_cast<double>(p(w).value.dim(1)));
      for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
    if (q.value.device() != Device::cpu) copy_elements(v, q.value);
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

const float* Encoder::logits() const {
  State& s = *st_;
  if (cfg_.device == Device::cpu) return s.logits.data();
  if (!s.logits_copied) {  // a language model's are copied when asked for (rows x vocab floats)
    s.logits_host.resize(static_cast<std::size_t>(s.logits.numel()));
    cuda::copy(s.logits_host.data(), s.logits.data(), sizeof(float) * s.logits_host.size());
    s.logits_copied = true;
  }
  return s.logits_host.data();
}

std::int64_t Encoder::scored_tokens() const { return st_->scored; }

double Encoder::forward(const std::int32_t* tokens, const std::uint8_t* mask, const int* labels, std::int64_t b,
                       std::int64_t n, bool train, std::uint64_t dropout_seed) {
  State& s = *st_;
  const Device dev = cfg_.device;
  const std::int64_t D = cfg_.dim, F = cfg_.mlp_dim, C = cfg_.classes;
  const bool cls = cfg_.pooling == "cls";
  if (n > cfg_.max_len) throw UsageError(fmt::format("encoder: sequence of {} tokens exceeds max_len {}", n, cfg_.max_len));
  const std::int64_t seqs = cfg_.pair ? 2 * b : b, N = internal_length(n), rows = seqs * N;
  s.b = b;
  s.seqs = seqs;
  s.n = n;
  s.N = N;
  const bool lm = cfg_.language_model;
  // Internal sequence: [cls] tokens..., padded with masked tokens up to N. Checked on the host.
  s.ids.assign(rows, 0);
  s.mask.assign(rows, 0);
  s.logits_copied = false;
  if (lm) {  // next tokens (b, n) into (b, N), -1 where nothing is scored (padding)
    s.labels.assign(rows, -1);
    s.scored = 0;
    for (std::int64_t bi = 0; bi < b; ++bi)
      for (std::int64_t t = 0; t < n; ++t) {
        const int y = labels[bi * n + t];
        if (y < -1 || y >= cfg_.vocab)
          throw InputError(fmt::format("encoder: next token {} at ({}, {}) is outside the vocabulary 0..{}", y, bi, t,
                                       cfg_.vocab - 1));
        s.labels[bi * N + t] = mask[bi * n + t] ? y : -1;
        s.scored += s.labels[bi * N + t] >= 0;
      }
    if (s.scored == 0) throw InputError("encoder: a language-model batch with no scored position");
  } else {
    s.labels.assign(labels, labels + b);
    for (std::int64_t bi = 0; bi < b; ++bi)
      if (labels[bi] < 0 || labels[bi] >= C)
        throw InputError(fmt::format("encoder: label {} of example {} is outside 0..{}", labels[bi], bi, C - 1));
  }
  for (std::int64_t bi = 0; bi < seqs; ++bi) {
    std::int64_t real = 0;
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
      real += s.mask[bi * N + t];
    }
    if (real == 0) throw InputError(fmt::format("encoder: example {} has no real token", bi));
  }
  s.ids_on = on_device(dev, s.ids, s.ids_dev, "encoder token ids");
  s.mask_on = on_device(dev, s.mask, s.mask_dev, "encoder mask");
  s.labels_on = on_device(dev, s.labels, s.labels_dev, "encoder labels");
  ensure(s.work_d, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace", dev);
  ensure(s.work_d2, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace", dev);
  ensure(s.work_da, {rows, D}, MemCategory::workspace, "encoder (rows, D) workspace", dev);
  ensure(s.work_mlp, {rows, F}, MemCategory::workspace, "encoder (rows, Dmlp) workspace", dev);

  // Embeddings into the first layer's input.
  Tensor& x0 = layers_.front()->x_in;
  ensure(x0, {rows, D}, MemCategory::activations, "encoder residual stream", dev);
  ops::embedding_forward(dev, s.ids_on, top_.tok_emb->value.data(), top_.pos_emb->value.data(),
                         cls ? top_.cls->value.data() : nullptr, rows, N, D, x0.data());

  const float keep = 1.0f - cfg_.dropout;
  const bool drop = train && cfg_.dropout > 0.0f;
  s.dropped = drop;
  auto dropout = [&](Tensor& mask_t, float* v, std::uint64_t seed) {
    ensure(mask_t, {rows, D}, MemCategory::activations, "encoder dropout mask", dev);
    ops::dropout_forward(dev, seed, keep, v, mask_t.data(), rows * D);
  };
  for (std::int64_t l = 0; l < cfg_.layers; ++l) {
    Layer& L = *layers_[l];
    ensure(L.h1, {rows, D}, MemCategory::activations, "encoder LN1 output", dev);
    ensure(L.ln1_stats, {2, rows}, MemCategory::activations, "encoder LN1 stats", dev);
    ensure(L.x_mid, {rows, D}, MemCategory::activations, "encoder residual stream", dev);
    ensure(L.h2, {rows, D}, MemCategory::activations, "encoder LN2 output", dev);
    ensure(L.ln2_stats, {2, rows}, MemCategory::activations, "encoder LN2 stats", dev);
    ensure(L.m, {rows, F}, MemCategory::activations, "encoder MLP pre-activation", dev);
    ensure(L.g, {rows, F}, MemCategory::activations, "encoder MLP GELU output", dev);
    ops::layernorm_forward(dev, L.x_in.data(), rows, D, L.ln1_w->value.data(), L.ln1_b->value.data(), L.h1.data(),
                           L.ln1_stats.data(), L.ln1_stats.data() + rows);
    // Attention dropout: a stream per (step, layer), apart from the block-output masks' streams.
    L.attn->set_prob_dropout({train ? cfg_.attention_dropout : 0.0f, counter_random(dropout_seed, 1000000 + l)});
    {
      LSB_PROFILE("attention layer forward");  // what the projections and the core leave
      L.attn->forward(L.h1.data(), s.mask_on, seqs, N, s.work_d.data(), true);
    }
    if (drop) dropout(L.drop1, s.work_d.data(), dropout_seed * 1000003 + 2 * l);
    ops::add(dev, L.x_in.data(), s.work_d.data(), rows * D, L.x_mid.data());
    ops::layernorm_forward(dev, L.x_mid.data(), rows, D, L.ln2_w->value.data(), L.ln2_b->value.data(), L.h2.data(),
                           L.ln2_stats.data(), L.ln2_stats.data() + rows);
    ops::linear_forward(dev, L.h2.data(), rows, D, L.fc1_w->value.data(), L.fc1_b->value.data(), F, L.m.data());
    ops::gelu_forward(dev, L.m.data(), rows * F, L.g.data());
    ops::linear_forward(dev, L.g.data(), rows, F, L.fc2_w->value.data(), L.fc2_b->value.data(), D, s.work_d.data());
    if (drop) dropout(L.drop2, s.work_d.data(), dropout_seed * 1000003 + 2 * l + 1);
    Tensor& next = l + 1 < cfg_.layers ? layers_[l + 1]->x_in : s.x_final;
    ensure(next, {rows, D}, MemCategory::activations, "encoder residual stream", dev);
    ops::add(dev, L.x_mid.data(), s.work_d.data(), rows * D, next.data());
  }

  ensure(s.xf, {rows, D}, MemCategory::activations, "encoder final LN output", dev);
  ensure(s.lnf_stats, {2, rows}, MemCategory::activations, "encoder final LN stats", dev);
  ops::layernorm_forward(dev, s.x_final.data(), rows, D, top_.lnf_w->value.data(), top_.lnf_b->value.data(),
                         s.xf.data(), s.lnf_stats.data(), s.lnf_stats.data() + rows);
  if (lm) return language_model_loss(rows);
  // Pooling: the mean over real tokens; mean-all, the reference code's: the sum over real tokens
  // divided by the n given (its final LayerNorm output is masked, then averaged over every position);
  // or (cls pooling) the cls row alone.
  ensure(s.pooled, {seqs, D}, MemCategory::activations, "encoder pooled", dev);
  if (cls) {
    ops::cls_pool_forward(dev, s.xf.data(), seqs, N, D, s.pooled.data());
  } else {
    ensure(s.counts, {seqs}, MemCategory::activations, "encoder real-token counts", dev);
    ops::mean_pool_forward(dev, s.xf.data(), s.mask_on, seqs, N, D, s.pooled.data(), s.counts.data(),
                           cfg_.pooling == "mean-all" ? static_cast<float>(n) : 0.0f);
  }
  ensure(s.hpre, {b, F}, MemCategory::activations, "encoder head hidden", dev);
  ensure(s.hrelu, {b, F}, MemCategory::activations, "encoder head ReLU", dev);
  ensure(s.logits, {b, C}, MemCategory::activations, "encoder logits", dev);
  ensure(s.probs, {b, C}, MemCategory::activations, "encoder probabilities", dev);
  // Two towers: u = pooled[i], v = pooled[b + i]; the head sees [u, v, u*v, u-v].
  const std::int64_t Din = cfg_.pair ? 4 * D : D;
  if (cfg_.pair) {
    ensure(s.features, {b, 4 * D}, MemCategory::activations, "encoder two-tower features", dev);
    ops::pair_features_forward(dev, s.pooled.data(), b, D, s.features.data());
  }
  ops::linear_forward(dev, cfg_.pair ? s.features.data() : s.pooled.data(), b, Din, top_.head1_w->value.data(),
                      top_.head1_b->value.data(), F, s.hpre.data());
  ops::relu_forward(dev, s.hpre.data(), b * F, s.hrelu.data());
  ops::linear_forward(dev, s.hrelu.data(), b, F, top_.head2_w->value.data(), top_.head2_b->value.data(), C,
                      s.logits.data());
  s.loss.resize(static_cast<std::size_t>(b));
  if (dev == Device::cpu) {
    ops::softmax_cross_entropy(dev, s.logits.data(), s.labels_on, b, C, s.probs.data(), s.loss.data());
  } else {
    ensure(s.loss_dev, {upload_bytes(8 * b) / 4}, MemCategory::data, "encoder per-example losses", dev);
    auto* loss_on = reinterpret_cast<double*>(s.loss_dev.data());
    ops::softmax_cross_entropy(dev, s.logits.data(), s.labels_on, b, C, s.probs.data(), loss_on);
    cuda::copy(s.loss.data(), loss_on, sizeof(double) * static_cast<std::size_t>(b));
  }
  double loss = 0;
  for (const double l : s.loss) loss += l;
  return loss / b;
}

// A language model's output layer at every position and the mean cross-entropy over the scored ones.
double Encoder::language_model_loss(std::int64_t rows) {
  State& s = *st_;
  const Device dev = cfg_.device;
  const std::int64_t D = cfg_.dim, V = cfg_.vocab;
  ensure(s.logits, {rows, V}, MemCategory::activations, "language model logits", dev);
  ensure(s.probs, {rows, V}, MemCategory::activations, "language model probabilities", dev);
  ops::linear_forward(dev, s.xf.data(), rows, D, top_.out_w->value.data(), top_.out_b->value.data(), V,
                      s.logits.data());
  s.loss.resize(static_cast<std::size_t>(rows));
  if (dev == Device::cpu) {
    ops::softmax_cross_entropy(dev, s.logits.data(), s.labels_on, rows, V, s.probs.data(), s.loss.data());
  } else {
    ensure(s.loss_dev, {upload_bytes(8 * rows) / 4}, MemCategory::data, "language model per-position losses", dev);
    auto* loss_on = reinterpret_cast<double*>(s.loss_dev.data());
    ops::softmax_cross_entropy(dev, s.logits.data(), s.labels_on, rows, V, s.probs.data(), loss_on);
    cuda::copy(s.loss.data(), loss_on, sizeof(double) * static_cast<std::size_t>(rows));
  }
  double loss = 0;  // unscored positions contribute 0
  for (const double l : s.loss) loss += l;
  return loss / static_cast<double>(s.scored);
}

void Encoder::backward() {
  State& s = *st_;
  const Device dev = cfg_.device;
  const std::int64_t rows = s.seqs * s.N, D = cfg_.dim;
  Tensor& dxf = s.work_d2;
  Tensor& dx = s.work_d;
  if (cfg_.language_model) {
    // d loss / d logits = (softmax - onehot) / scored at scored positions; the output layer into d xf.
    const std::int64_t V = cfg_.vocab;
    ensure(s.dlogits, {rows, V}, MemCategory::workspace, "language model dlogits", dev);
    ops::cross_entropy_backward(dev, s.probs.data(), s.labels_on, rows, V, static_cast<float>(s.scored),
                                s.dlogits.data());
    ops::linear_backward(dev, s.dlogits.data(), s.xf.data(), rows, D, top_.out_w->value.data(), V,
                         top_.out_w->grad.data(), top_.out_b->grad.data(), dxf.data(), false);
  } else {
    classifier_head_backward();
  }
  ops::layernorm_backward(dev, dxf.data(), s.x_final.data(), rows, D, top_.lnf_w->value.data(), s.lnf_stats.data(),
                          s.lnf_stats.data() + rows, dx.data(), top_.lnf_w->grad.data(), top_.lnf_b->grad.data(),
                          false);
  blocks_backward();
}

// The classifier's head and pooling backward, from the loss into d xf (work_d2).
void Encoder::classifier_head_backward() {
  State& s = *st_;
  const Device dev = cfg_.device;
  const std::int64_t b = s.b, seqs = s.seqs, N = s.N, D = cfg_.dim, F = cfg_.mlp_dim, C = cfg_.classes,
                     Din = cfg_.pair ? 4 * D : D;
  const bool cls = cfg_.pooling == "cls";
  ensure(s.dlogits, {b, C}, MemCategory::workspace, "encoder dlogits", dev);
  ensure(s.dh, {b, F}, MemCategory::workspace, "encoder head gradient", dev);
  ensure(s.dpooled, {seqs, D}, MemCategory::workspace, "encoder pooled gradient", dev);
  if (cfg_.pair) ensure(s.dfeatures, {b, 4 * D}, MemCategory::workspace, "encoder two-tower features gradient", dev);
  Tensor &dlogits = s.dlogits, &dh = s.dh, &dpooled = s.dpooled;
  // d loss / d logits = (softmax - onehot) / b.
  ops::cross_entropy_backward(dev, s.probs.data(), s.labels_on, b, C, static_cast<float>(b), dlogits.data());
  ops::linear_backward(dev, dlogits.data(), s.hrelu.data(), b, F, top_.head2_w->value.data(), C,
                       top_.head2_w->grad.data(), top_.head2_b->grad.data(), dh.data(), false);
  ops::relu_backward(dev, s.hpre.data(), b * F, dh.data());
  ops::linear_backward(dev, dh.data(), cfg_.pair ? s.features.data() : s.pooled.data(), b, Din,
                       top_.head1_w->value.data(), F, top_.head1_w->grad.data(), top_.head1_b->grad.data(),
                       cfg_.pair ? s.dfeatures.data() : dpooled.data(), false);
  if (cfg_.pair) ops::pair_features_backward(dev, s.pooled.data(), s.dfeatures.data(), b, D, dpooled.data());
  // Pooling backward into d xf (work_d2).
  if (cls)
    ops::cls_pool_backward(dev, dpooled.data(), seqs, N, D, s.work_d2.data());
  else
    ops::mean_pool_backward(dev, dpooled.data(), s.mask_on, s.counts.data(), seqs, N, D, s.work_d2.data());
}

// From d (last block's output) in dx (work_d) through every block and the embeddings.
void Encoder::blocks_backward() {
  State& s = *st_;
  const Device dev = cfg_.device;
  const std::int64_t seqs = s.seqs, N = s.N, rows = seqs * N, D = cfg_.dim, F = cfg_.mlp_dim;
  const bool cls = cfg_.pooling == "cls";
  Tensor& dxf = s.work_d2;
  Tensor& dx = s.work_d;
  const bool drop = s.dropped;
  Tensor& dmlp = s.work_mlp;
  // d (block output) through a dropout mask, or as it is, into `out`.
  auto through_dropout = [&](const Tensor& mask_t, float* out) {
    if (drop)
      ops::multiply_into(dev, dx.data(), mask_t.data(), rows * D, out);
    else
      ops::copy(dev, dx.data(), rows * D, out);
  };
  for (std::int64_t l = cfg_.layers - 1; l >= 0; --l) {
    Layer& L = *layers_[l];
    // x_next = x_mid + drop2(fc2(GELU(fc1(LN2(x_mid))))): dx is d x_next.
    float* dout = dxf.data();  // reused as (rows, D) scratch
    through_dropout(L.drop2, dout);
    ops::linear_backward(dev, dout, L.g.data(), rows, F, L.fc2_w->value.data(), D, L.fc2_w->grad.data(),
                         L.fc2_b->grad.data(), dmlp.data(), false);
    ops::gelu_backward(dev, L.m.data(), rows * F, dmlp.data());
    ops::linear_backward(dev, dmlp.data(), L.h2.data(), rows, D, L.fc1_w->value.data(), F, L.fc1_w->grad.data(),
                         L.fc1_b->grad.data(), dout, false);
    ops::layernorm_backward(dev, dout, L.x_mid.data(), rows, D, L.ln2_w->value.data(), L.ln2_stats.data(),
                            L.ln2_stats.data() + rows, dx.data(), L.ln2_w->grad.data(), L.ln2_b->grad.data(), true);
    // x_mid = x_in + drop1(Attn(LN1(x_in))): dx is now d x_mid.
    Tensor& da = s.work_da;
    through_dropout(L.drop1, da.data());
    {
      LSB_PROFILE("attention layer backward");
      L.attn->backward(da.data(), dout);
    }
    ops::layernorm_backward(dev, dout, L.x_in.data(), rows, D, L.ln1_w->value.data(), L.ln1_stats.data(),
                            L.ln1_stats.data() + rows, dx.data(), L.ln1_w->grad.data(), L.ln1_b->grad.data(), true);
  }
  // Embeddings: summed by token id (the rows grouped by id on the host) and by position.
  ops::make_rows_by_id(s.ids.data(), rows, cfg_.vocab, s.rows_by_id, s.id_starts);
  const std::int32_t* rows_by_id = on_device(dev, s.rows_by_id, s.rows_by_id_dev, "encoder rows by token id");
  const std::int64_t* id_starts = on_device(dev, s.id_starts, s.id_starts_dev, "encoder token id group starts");
  ops::embedding_backward(dev, dx.data(), rows_by_id, id_starts, cfg_.vocab, rows, N, D,
                          top_.tok_emb->grad.data(), top_.pos_emb->grad.data(), cls ? top_.cls->grad.data() : nullptr);
}

}  // namespace lsb
