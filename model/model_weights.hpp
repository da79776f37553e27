// The encoder's parameters as a folder of .npy files, one per tensor, named as the PyTorch LRA code
// (the Nystromformer LRA code, reused by the Transformer-LS authors) names them in its state_dict,
// arrays exactly as PyTorch holds them (Linear weight (out, in), float32, C order). So a model
// trained here opens in PyTorch and the other way round (README "Moving models between lsbench and
// PyTorch"; docs/interop/).
//
//   lsbench                  PyTorch state_dict name
//   tok_emb                  model.embeddings.word_embeddings.weight        (vocab, D)
//   pos_emb                  model.embeddings.position_embeddings.weight    (positions, D)
//   cls                      model.embeddings.cls_token                     (D)      lsbench's own
//   l{i}.ln1.*, l{i}.ln2.*   model.transformer_{i}.norm1.*, .norm2.*
//   l{i}.fc1.*, l{i}.fc2.*   model.transformer_{i}.mlpblock.0.*, .mlpblock.3.*
//   lnf.*                    model.norm.*
//   head.fc1.*, head.fc2.*   seq_classifer.mlpblock.0.*, .mlpblock.2.*  (sic)
//   out.weight, out.bias     lm_head.weight, lm_head.bias  (a language model's output layer; no weight when tied)
//   l{i}.attn.NAME           model.transformer_{i}.mha.<see torch_attention_name>
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/encoder.hpp"

namespace lsb {

// The state_dict name of encoder parameter `name` ("l0.attn.wq", "tok_emb", ...) for a model whose
// attention is the variant `variant` (its name only: "ls", "full", ...).
std::string torch_name(const std::string& name, const std::string& variant);
// The shape PyTorch holds that parameter in (lsbench's own shape but for nystromformer's conv,
// which torch keeps as a Conv2d weight (h, 1, K, 1)).
Shape torch_shape(const std::string& name, const std::string& variant, const Shape& shape);

// The model sizes a weight folder implies (InputError, exit 3, naming the array when one that
// decides a size is missing or not of the expected rank).
struct WeightFolderShape {
  std::int64_t vocab = 0, positions = 0, classes = 0, dim = 0, mlp_dim = 0, layers = 0;
  bool pair = false;  // the head's first Linear takes 4 D: two towers
  bool cls = false;   // a cls token array is present
  bool language_model = false;  // lm_head.bias instead of the classifier's head
  bool tied = false;            // a language model without lm_head.weight: the output layer is tok_emb
};
WeightFolderShape read_weight_folder_shape(const std::string& dir);

// Writes every parameter of `enc` as DIR/NAME.npy (creating DIR). Each file is written atomically.
void save_weights(Encoder& enc, const std::string& dir);
// Writes the gradient of every parameter of `enc` as DIR/NAME.npy under the same names.
void save_gradients(Encoder& enc, const std::string& dir);
// Reads every parameter of `enc` from DIR. A missing array, an array of another shape or dtype, one
// holding NaN or Inf, or an .npy file in DIR that names no parameter of this model is an InputError
// naming the array (exit 3); nothing is silently left at its initial value.
void load_weights(Encoder& enc, const std::string& dir);
// A 64-bit FNV-1a digest of the encoder's parameter values (hex), for report configs: two runs that
// start from the same arrays have the same digest.
std::string parameter_digest(Encoder& enc);

}  // namespace lsb
