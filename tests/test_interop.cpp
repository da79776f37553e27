// The whole model and training loop against golden files computed by an independent float64
// implementation (tests/golden/interop/make_golden.py: PyTorch autograd on docs/interop/lra_reference.py,
// the reference LRA code's structure and state_dict names, not lsbench's code): logits, loss, every
// gradient and 3 AdamW steps under the reference's OneCycle schedule, for full and ls, loaded through
// the PyTorch names. Plus the weight folder's round trip and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "model/encoder.hpp"
#include "nn/errors.hpp"
#include "model/model_weights.hpp"
#include "nn/npy.hpp"
#include "nn/optim.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(LSBENCH_GOLDEN_DIR) / "interop";

std::vector<double> load_f64(const fs::path& path) {
  const NpyArray a = read_npy(path.string());
  REQUIRE(a.descr == "<f8");
  std::vector<double> v(a.bytes.size() / 8);
  std::memcpy(v.data(), a.bytes.data(), a.bytes.size());
  return v;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (const double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// The largest difference relative to the reference's largest magnitude (so tiny elements of a
// tensor are held to the tensor's scale, not to their own), or to `floor` when that is larger.
double scaled_error(const float* got, const std::vector<double>& want, double floor = 1e-30) {
  double err = 0;
  for (std::size_t i = 0; i < want.size(); ++i) err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
  return err / std::max(max_abs(want), floor);
}

struct GoldenBatch {
  std::vector<std::int32_t> ids;
  std::vector<std::uint8_t> mask;
  std::vector<int> labels;
  std::int64_t b = 0, n = 0;
};

GoldenBatch load_batch(const fs::path& dir) {
  GoldenBatch g;
  Shape shape;
  for (const auto v : load_npy_ints((dir / "ids.npy").string(), shape, "ids")) g.ids.push_back(static_cast<std::int32_t>(v));
  g.b = shape.at(0), g.n = shape.at(1);
  g.mask = load_npy_mask((dir / "mask.npy").string(), {g.b, g.n});
  for (const auto v : load_npy_ints((dir / "labels.npy").string(), shape, "labels")) g.labels.push_back(static_cast<int>(v));
  return g;
}

EncoderConfig golden_config(const std::string& variant) {
  const WeightFolderShape w = read_weight_folder_shape((kGolden / "full" / "weights").string());
  return {.vocab = w.vocab, .classes = w.classes, .max_len = w.positions, .dim = w.dim, .heads = 2,
          .layers = w.layers, .mlp_dim = w.mlp_dim, .pooling = "mean-all", .attention = VariantSpec::parse(variant)};
}

}  // namespace

TEST_CASE("the encoder equals the float64 reference model: logits, loss, gradients and 3 OneCycle AdamW steps", "[interop]") {
  for (const auto& [folder, variant] : {std::pair{"full", "full"}, std::pair{"ls", "ls:w=4,r=3"}}) {
    INFO(variant);
    const fs::path dir = kGolden / folder;
    Encoder enc(golden_config(variant));
    load_weights(enc, (dir / "weights").string());
    const GoldenBatch g = load_batch(dir);
    REQUIRE(g.b == 4);
    enc.zero_grad();
    const double loss = enc.forward(g.ids.data(), g.mask.data(), g.labels.data(), g.b, g.n, false, 0);
    const double want_loss = load_f64(dir / "loss.npy").at(0);
    CHECK(std::fabs(loss - want_loss) <= 1e-5 * std::fabs(want_loss));
    CHECK(scaled_error(enc.logits(), load_f64(dir / "logits.npy")) <= 1e-5);
    enc.backward();
    // Some gradients are 0 in exact arithmetic: the key bias (a softmax does not see a score added to
    // every key) and ls's projection bias (nor a constant added along the sequence). They are held to a
    // hundredth of the largest gradient of the model instead of to their own magnitude (about 1e-17).
    const std::string name = enc.attention(0).name();
    std::map<std::string, std::vector<double>> want;
    double largest = 0;
    for (auto& [pname, p] : enc.parameters()) {
      const std::string torch = torch_name(pname, name);
      want[torch] = load_f64(dir / "grads" / (torch + ".npy"));
      REQUIRE(static_cast<std::int64_t>(want[torch].size()) == p->grad.numel());
      largest = std::max(largest, max_abs(want[torch]));
    }
    for (auto& [pname, p] : enc.parameters()) {
      const std::string torch = torch_name(pname, name);
      INFO(torch);
      CHECK(scaled_error(p->grad.data(), want[torch], 1e-2 * largest) <= 1e-5);
    }
    // 3 steps on the same batch: OneCycle, peak 3e-3, warm-up 3 of 10 steps, weight decay 0.01.
    const auto want_losses = load_f64(dir / "train_losses.npy");
    AdamW opt(enc.parameters(), {.weight_decay = 0.01});
    for (int step = 1; step <= 4; ++step) {
      enc.zero_grad();
      const double l = enc.forward(g.ids.data(), g.mask.data(), g.labels.data(), g.b, g.n, true, 0);
      INFO(fmt::format("loss before step {}: {:.9f}, reference {:.9f}", step, l, want_losses.at(step - 1)));
      CHECK(std::fabs(l - want_losses.at(step - 1)) <= 1e-5 * std::fabs(want_losses.at(step - 1)));
      if (step == 4) break;
      enc.backward();
      const ScheduleStep s = schedule_at("onecycle", 3e-3, step, 3, 10, 0.9);
      opt.step(s.lr, s.beta1);
    }
  }
}

TEST_CASE("OneCycle follows torch's OneCycleLR: start at peak/25, peak at the warm-up's end, beta1 cycled", "[interop][optim]") {
  // torch: OneCycleLR(max_lr=1e-4, pct_start=1000/5000, anneal_strategy='linear', total_steps=5000);
  // scheduler index k = step - 1; phase 1 ends at index 999, phase 2 at 4999.
  auto at = [](std::int64_t step) { return schedule_at("onecycle", 1e-4, step, 1000, 5000, 0.9); };
  CHECK(at(1).lr == Approx(4e-6).epsilon(1e-12));
  CHECK(at(1).beta1 == Approx(0.95));
  CHECK(at(1000).lr == Approx(1e-4).epsilon(1e-12));
  CHECK(at(1000).beta1 == Approx(0.85));
  CHECK(at(500).lr == Approx(4e-6 + (1e-4 - 4e-6) * 499.0 / 999.0).epsilon(1e-12));
  CHECK(at(5000).lr == Approx(4e-6 / 1e4).epsilon(1e-9));
  CHECK(at(5000).beta1 == Approx(0.95));
  CHECK(at(3000).lr == Approx(1e-4 + (4e-10 - 1e-4) * 2000.0 / 4000.0).epsilon(1e-12));
  CHECK(schedule_at("linear", 1e-4, 500, 1000, 5000, 0.9).beta1 == 0.9);
  CHECK_THROWS_AS(check_schedule("onecycle", 1, 10), UsageError);
  CHECK_THROWS_AS(check_schedule("onecycle", 10, 10), UsageError);
  CHECK_THROWS_WITH(check_schedule("cosine", 1, 10), Catch::Contains("--schedule cosine: unknown"));
}

TEST_CASE("a weight folder round-trips under the PyTorch names, and a bad one is refused naming the array", "[interop]") {
  const fs::path tmp = fs::temp_directory_path() / "lsbench_interop_test";
  fs::remove_all(tmp);
  for (const char* variant : {"full", "ls:w=4,r=3", "nystromformer:m=4,conv=3", "lsra", "linformer:k=4"}) {
    INFO(variant);
    EncoderConfig cfg = golden_config(variant);
    cfg.pooling = "cls";
    Encoder a(cfg), b(cfg);
    a.init_params(1);
    b.init_params(2);
    const fs::path dir = tmp / "rt";
    fs::remove_all(dir);
    save_weights(a, dir.string());
    const WeightFolderShape s = read_weight_folder_shape(dir.string());
    CHECK(s.vocab == cfg.vocab);
    CHECK(s.classes == cfg.classes);
    CHECK(s.layers == cfg.layers);
    CHECK(s.cls);
    CHECK_FALSE(s.pair);
    CHECK(parameter_digest(a) != parameter_digest(b));
    load_weights(b, dir.string());
    CHECK(parameter_digest(a) == parameter_digest(b));
  }
  const fs::path dir = tmp / "bad";
  Encoder enc(golden_config("full"));
  enc.init_params(3);
  auto fresh = [&] {
    fs::remove_all(dir);
    save_weights(enc, dir.string());
  };
  const std::string w_q = "model.transformer_1.mha.W_q.weight";
  fresh();
  fs::remove(dir / (w_q + ".npy"));
  CHECK_THROWS_WITH(load_weights(enc, dir.string()), Catch::Contains("missing array '" + w_q + "'"));
  fresh();
  std::vector<float> wrong(16 * 15, 0.1f);
  write_npy_f32((dir / (w_q + ".npy")).string(), {16, 15}, wrong.data());
  CHECK_THROWS_WITH(load_weights(enc, dir.string()), Catch::Contains(w_q) && Catch::Contains("shape"));
  fresh();
  std::vector<float> nan(16 * 16, 0.1f);
  nan[17] = std::nanf("");
  write_npy_f32((dir / (w_q + ".npy")).string(), {16, 16}, nan.data());
  CHECK_THROWS_WITH(load_weights(enc, dir.string()), Catch::Contains(w_q) && Catch::Contains("nan"));
  fresh();
  {  // float64 instead of float32
    std::ofstream f(dir / (w_q + ".npy"), std::ios::binary);
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (16, 16), }";
    header.resize(117, ' ');
    header += '\n';
    f.write("\x93NUMPY\x01\x00", 8);
    const std::uint16_t len = static_cast<std::uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&len), 2);
    f << header;
    const std::vector<double> v(256, 0.5);
    f.write(reinterpret_cast<const char*>(v.data()), 256 * 8);
  }
  CHECK_THROWS_WITH(load_weights(enc, dir.string()), Catch::Contains(w_q) && Catch::Contains("float32"));
  fresh();
  write_npy_f32((dir / "model.transformer_7.extra.npy").string(), {2}, wrong.data());
  CHECK_THROWS_WITH(load_weights(enc, dir.string()), Catch::Contains("model.transformer_7.extra") &&
                                                         Catch::Contains("not a parameter"));
  CHECK_THROWS_AS(load_weights(enc, (tmp / "nowhere").string()), InputError);
  CHECK_THROWS_WITH(read_weight_folder_shape((tmp / "nowhere").string()), Catch::Contains("does not exist"));
  fs::remove_all(tmp);
}
