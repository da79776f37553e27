// The classifier of ../shared/spec/lra.md ("Models"), the same for every attention variant:
//   x = tok_emb[token] + pos_emb[t]                                  (b, n, D)
//   L pre-LN blocks: x += drop(Attn(LN1(x))); x += drop(fc2(GELU(fc1(LN2(x)))))
//   (Attn with its own dropout on the attention probabilities where the variant has them)
//   final LN, pooling (mean over real tokens; mean-all: the reference code's sum over real tokens / n;
//   or a learned cls token prepended), head
//   fc(D -> Dmlp), ReLU, fc(Dmlp -> classes); cross-entropy averaged over the batch.
// Two towers (Retrieval, `pair`): each example is two sequences through the one encoder, pooled to
// u and v; the head sees [u, v, u*v, u-v] (fc(4D -> Dmlp)).
// A language model (`language_model`, ../shared/spec/lm.md) is the same body with causal attention and no
// pooling: final LN, then an output layer to the vocabulary at every position (its weight tied to tok_emb
// or its own "out.weight"), cross-entropy of each position's next token averaged over the scored ones.
// Forward and exact backward; gradients accumulate (+=) into each Param's grad.
// One body for both devices: every step goes through nn/device_ops.hpp, so a CUDA encoder runs the CPU
// encoder's formulas in the same order. Batches arrive on the host (tokens, mask, labels), are checked
// there and copied over; logits() and the loss come back to the host.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attention_impls/registry.hpp"

namespace lsb {

struct EncoderConfig {
  std::int64_t vocab = 0, classes = 0, max_len = 0;  // max_len: longest token sequence (before cls)
  std::int64_t dim = 64, heads = 2, layers = 2, mlp_dim = 128;
  std::string pooling = "mean";  // mean (real tokens) | mean-all (every position, pads as 0) | cls
  float dropout = 0.0f;          // on block outputs
  float attention_dropout = 0.0f;  // on attention probabilities: a UsageError where the variant has none
  VariantSpec attention = VariantSpec::parse(baseline_variant().spec());  // parsed where it was read
  bool pair = false;  // two towers: tokens hold 2b sequences, the b first documents then the b second ones
  // A decoder: the attention must be causal; classes and pooling are not used.
  bool language_model = false;
  bool tie_embeddings = false;  // language model: the output layer's weight is tok_emb
  Device device = Device::cpu;  // where parameters, activations and every step live
};

class Encoder {
 public:
  explicit Encoder(const EncoderConfig& cfg);
  ~Encoder();

  // N(0, 0.02) embeddings; Linear and LayerNorm as PyTorch initialises them.
  void init_params(std::uint64_t seed);
  // The internal sequence length for n tokens: + 1 for cls, padded as the attention needs.
  std::int64_t internal_length(std::int64_t n) const;

  // tokens (b, n) in [0, vocab) ((2b, n) with two towers), mask alike, 1 = real; labels (b) for b
  // examples; a language model's labels are (b, n): the next token of every position, -1 where it is not
  // scored. Returns the mean cross-entropy (a language model's: over the scored positions) and keeps
  // what backward needs. train: dropout on, masks drawn from dropout_seed.
  double forward(const std::int32_t* tokens, const std::uint8_t* mask, const int* labels, std::int64_t b,
                std::int64_t n, bool train, std::uint64_t dropout_seed);
  // Gradients of the last forward's loss, accumulated into every parameter's grad.
  void backward();
  // The last forward's logits, on the host: (b, classes); a language model's (b, N, vocab), N the
  // internal length (internal_length(n)).
  const float* logits() const;
  std::int64_t scored_tokens() const;  // a language model's last forward: the positions scored

  // Every parameter with a unique name: the encoder's own ("tok_emb", "l0.fc1.weight", ...), then
  // each layer's attention parameters ("l0.attn.wq", ...).
  std::vector<std::pair<std::string, Param*>> parameters();
  void zero_grad();
  // The attention module of block `layer` (its name and resolved parameters describe the run).
  const Attention& attention(std::int64_t layer) const;
  const EncoderConfig& config() const { return cfg_; }
  // Dropout on the attention probabilities of training forwards from now on (EncoderConfig's
  // attention_dropout at construction); a UsageError where the variant or device cannot apply it.
  void set_attention_dropout(float p);
  // The analytic memory model: bytes the encoder holds after a forward (train: and a backward) of b
  // examples of n tokens (2b sequences with two towers): every parameter and its gradient, the activations and workspaces of its
  // buffer plan, each attention layer's own plan (oneDNN's shared scratchpad and the optimiser's
  // moments are not the encoder's and not counted).
  std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool train) const;

 private:
  struct Layer;
  EncoderConfig cfg_;
  std::vector<Param> own_;
  std::vector<std::unique_ptr<Layer>> layers_;
  struct State;
  std::unique_ptr<State> st_;
  Param& p(const std::string& name);  // by name: construction and init only
  double language_model_loss(std::int64_t rows);  // forward's end for a language model
  void classifier_head_backward();                // backward's start for a classifier: into d xf
  void blocks_backward();                         // from d (last block output) to the embeddings
  struct {
    Param *tok_emb, *pos_emb, *cls, *lnf_w, *lnf_b, *head1_w, *head1_b, *head2_w, *head2_b;
    Param *out_w, *out_b;  // a language model's output layer (out_w is tok_emb when tied)
  } top_{};  // the encoder's own parameters outside the blocks, resolved once
};

}  // namespace lsb
