#include "model/model_weights.hpp"

#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "nn/errors.hpp"
#include "nn/npy.hpp"

namespace lsb {
namespace fs = std::filesystem;
namespace {

// Attention parameter -> its name under model.transformer_{i}.mha. Every ProjectedAttention's
// Q/K/V/O are the reference code's W_q, W_k, W_v and ff, unless the variant's record says otherwise
// (its torch_names); parameters without a counterpart in the reference code (linformer's E there is
// (h, k, n) and shared by every layer; lsra's two branches) keep lsbench's own name under `attn.`.
std::string torch_attention_name(const std::string& p, const std::string& variant) {
  if (const VariantInfo* v = find_variant(variant))
    if (auto it = v->torch_names.find(p); it != v->torch_names.end()) return it->second;
  static const std::map<std::string, std::string> common = {
      {"wq", "W_q.weight"}, {"bq", "W_q.bias"}, {"wk", "W_k.weight"}, {"bk", "W_k.bias"},
      {"wv", "W_v.weight"}, {"bv", "W_v.bias"}, {"wo", "ff.weight"},  {"bo", "ff.bias"}};
  if (auto it = common.find(p); it != common.end()) return it->second;
  return "attn." + p;
}

std::string path_of(const std::string& dir, const std::string& torch) { return (fs::path(dir) / (torch + ".npy")).string(); }

// The array `torch` of the folder, whose rank must be `rank` (a size is read from it).
Shape array_shape(const std::string& dir, const std::string& torch, std::size_t rank) {
  const std::string path = path_of(dir, torch);
  if (!fs::exists(path)) throw InputError(fmt::format("{}: missing array '{}'", path, torch));
  const NpyArray a = read_npy(path);
  if (a.shape.size() != rank)
    throw InputError(fmt::format("{}: array '{}' must have {} dimensions, found shape {}", path, torch, rank,
                                 shape_str(a.shape)));
  return a.shape;
}

}  // namespace

std::string torch_name(const std::string& name, const std::string& variant) {
  if (name == "tok_emb") return "model.embeddings.word_embeddings.weight";
  if (name == "pos_emb") return "model.embeddings.position_embeddings.weight";
  if (name == "cls") return "model.embeddings.cls_token";
  if (name.rfind("lnf.", 0) == 0) return "model.norm." + name.substr(4);
  if (name.rfind("head.fc1.", 0) == 0) return "seq_classifer.mlpblock.0." + name.substr(9);
  if (name.rfind("head.fc2.", 0) == 0) return "seq_classifer.mlpblock.2." + name.substr(9);
  if (name.rfind("out.", 0) == 0) return "lm_head." + name.substr(4);
  // l{i}.REST
  const auto dot = name.find('.');
  if (name.size() < 3 || name[0] != 'l' || dot == std::string::npos)
    throw std::logic_error("torch_name: unknown encoder parameter " + name);
  const std::string block = fmt::format("model.transformer_{}.", name.substr(1, dot - 1));
  const std::string rest = name.substr(dot + 1);
  static const std::map<std::string, std::string> own = {{"ln1", "norm1"}, {"ln2", "norm2"},
                                                         {"fc1", "mlpblock.0"}, {"fc2", "mlpblock.3"}};
  const auto dot2 = rest.find('.');
  const std::string head = rest.substr(0, dot2), tail = rest.substr(dot2 + 1);
  if (auto it = own.find(head); it != own.end()) return block + it->second + "." + tail;
  if (head == "attn") return block + "mha." + torch_attention_name(tail, variant);
  throw std::logic_error("torch_name: unknown encoder parameter " + name);
}

Shape torch_shape(const std::string& name, const std::string& variant, const Shape& shape) {
  const VariantInfo* v = find_variant(variant);
  const auto attn = name.find(".attn.");
  if (!v || !v->torch_shape || attn == std::string::npos) return shape;
  return v->torch_shape(name.substr(attn + 6), shape);
}

WeightFolderShape read_weight_folder_shape(const std::string& dir) {
  if (!fs::is_directory(dir)) throw InputError(fmt::format("{}: the weights folder does not exist or is not a directory", dir));
  WeightFolderShape s;
  const Shape tok = array_shape(dir, torch_name("tok_emb", ""), 2);
  s.vocab = tok[0], s.dim = tok[1];
  s.positions = array_shape(dir, torch_name("pos_emb", ""), 2)[0];
  s.language_model = fs::exists(path_of(dir, torch_name("out.bias", "")));
  if (s.language_model) {
    s.tied = !fs::exists(path_of(dir, torch_name("out.weight", "")));
    s.mlp_dim = array_shape(dir, torch_name("l0.fc1.weight", ""), 2)[0];
  } else {
    const Shape head1 = array_shape(dir, torch_name("head.fc1.weight", ""), 2);
    s.mlp_dim = head1[0];
    s.pair = head1[1] == 4 * s.dim;
    s.classes = array_shape(dir, torch_name("head.fc2.weight", ""), 2)[0];
  }
  s.cls = fs::exists(path_of(dir, torch_name("cls", "")));
  while (fs::exists(path_of(dir, torch_name(fmt::format("l{}.ln1.weight", s.layers), "")))) ++s.layers;
  if (s.layers == 0)
    throw InputError(fmt::format("{}: missing array '{}' (no encoder block)", path_of(dir, torch_name("l0.ln1.weight", "")),
                                 torch_name("l0.ln1.weight", "")));
  return s;
}

namespace {
// Every parameter's value (or gradient) as DIR/NAME.npy.
void write_folder(Encoder& enc, const std::string& dir, bool gradients) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw InputError(fmt::format("{}: cannot create the folder: {}", dir, ec ? ec.message() : "not a directory"));
  const std::string variant = enc.attention(0).name();
  for (const auto& [name, p] : enc.parameters()) {
    Tensor host(p->value.shape(), MemCategory::workspace, "weights export copy");  // on the host
    copy_elements(gradients ? p->grad : p->value, host);
    write_npy_f32(path_of(dir, torch_name(name, variant)), torch_shape(name, variant, host.shape()), host.data());
  }
}
}  // namespace

void save_weights(Encoder& enc, const std::string& dir) { write_folder(enc, dir, false); }
void save_gradients(Encoder& enc, const std::string& dir) { write_folder(enc, dir, true); }

void load_weights(Encoder& enc, const std::string& dir) {
  if (!fs::is_directory(dir)) throw InputError(fmt::format("{}: the weights folder does not exist or is not a directory", dir));
  const std::string variant = enc.attention(0).name();
  std::set<std::string> expected;
  for (const auto& [name, p] : enc.parameters()) {
    const std::string torch = torch_name(name, variant), path = path_of(dir, torch);
    expected.insert(torch);
    if (!fs::exists(path))
      throw InputError(fmt::format("{}: missing array '{}' of shape {} ({} with {})", path, torch,
                                   shape_str(torch_shape(name, variant, p->value.shape())), name, enc.attention(0).spec_string()));
    const std::vector<float> w = load_npy_f32(path, torch_shape(name, variant, p->value.shape()), "array '" + torch + "'");
    Tensor host(p->value.shape(), MemCategory::workspace, "weights import copy");
    std::copy(w.begin(), w.end(), host.data());
    copy_elements(host, p->value);
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path f = entry.path();
    if (f.extension() != ".npy") continue;
    if (!expected.count(f.stem().string()))
      throw InputError(fmt::format("{}: array '{}' is not a parameter of this model (attention {}); remove it or "
                                   "check --variant",
                                   f.string(), f.stem().string(), enc.attention(0).spec_string()));
  }
}

std::string parameter_digest(Encoder& enc) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const auto& [name, p] : enc.parameters()) {
    Tensor host(p->value.shape(), MemCategory::workspace, "weights digest copy");
    copy_elements(p->value, host);
    const auto* bytes = reinterpret_cast<const unsigned char*>(host.data());
    for (std::int64_t i = 0; i < host.bytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

}  // namespace lsb
