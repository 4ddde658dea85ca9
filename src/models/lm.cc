// Byte-level QRNN + FFF language model: forward over a segment with carried state, backward.
#include "fff/models/lm.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "fff/engine/cmm.h"
#include "fff/layers/linear.h"

namespace fff {

LmMixer parse_lm_mixer(const std::string& name) {
  if (name == "ff") return LmMixer::dense;
  if (name == "fff") return LmMixer::leaf_fff;
  if (name == "neuron-fff") return LmMixer::neuron_fff;
  throw Error("unknown channel mixer '" + name + "' (expected ff, fff or neuron-fff)");
}

const char* lm_mixer_name(LmMixer m) {
  switch (m) {
    case LmMixer::dense:
      return "ff";
    case LmMixer::leaf_fff:
      return "fff";
    case LmMixer::neuron_fff:
      return "neuron-fff";
  }
  return "?";
}

int64_t LmConfig::leaf_depth() const {
  int64_t d = 0;
  while ((leaf_width << (d + 1)) <= width) ++d;
  return d;
}

double LmConfig::ff_inference_flops() const {
  double per_block = 0.0;
  switch (mixer) {
    case LmMixer::dense:
      per_block = dense_ff_flops_per_row({dim, width, dim, Activation::gelu});
      break;
    case LmMixer::leaf_fff:
      per_block =
          leaf_fff_inference_flops_per_row({dim, dim, leaf_depth(), leaf_width, Activation::gelu});
      break;
    case LmMixer::neuron_fff:
      per_block = neuron_fff_flops_per_row({dim, dim, trees, depth, Activation::gelu, true});
      break;
  }
  return per_block * static_cast<double>(layers);
}

namespace {

// The parameters of a block's channel mixer.
std::vector<Param*> ff_params(LmBlock& b, LmMixer mixer) {
  switch (mixer) {
    case LmMixer::dense:
      return b.dense.params();
    case LmMixer::leaf_fff:
      return b.leaf.params();
    case LmMixer::neuron_fff:
      return b.neuron.params();
  }
  return {};
}

}  // namespace

std::vector<Param*> LmModel::params() {
  std::vector<Param*> ps = embed.params();
  for (auto& b : blocks) {
    for (Param* p : b.ln1.params()) ps.push_back(p);
    for (Param* p : b.qrnn.params()) ps.push_back(p);
    for (Param* p : b.ln2.params()) ps.push_back(p);
    for (Param* p : ff_params(b, cfg.mixer)) ps.push_back(p);
  }
  for (Param* p : ln_out.params()) ps.push_back(p);
  ps.push_back(&out_w);
  ps.push_back(&out_b);
  return ps;
}

LmModel make_lm(const LmConfig& cfg, Rng& rng) {
  if (cfg.dim <= 0 || cfg.layers <= 0 || cfg.window <= 0)
    throw Error("language model needs positive dim, layers and window");
  if (cfg.mixer == LmMixer::leaf_fff && (cfg.leaf_width <= 0 || cfg.width < cfg.leaf_width))
    throw Error("fff mixer needs 0 < leaf width <= width");
  LmModel m;
  m.cfg = cfg;
  m.embed = make_embedding(LmConfig::kVocab, cfg.dim, rng);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string pre = "block" + std::to_string(l);
    LmBlock b;
    b.ln1 = make_layer_norm(cfg.dim, pre + ".ln1");
    b.ln2 = make_layer_norm(cfg.dim, pre + ".ln2");
    QrnnConfig qc;
    qc.in = qc.channels = cfg.dim;
    qc.window = cfg.window;
    qc.scan = cfg.scan;
    b.qrnn = make_qrnn(qc, rng);
    switch (cfg.mixer) {
      case LmMixer::dense:
        b.dense = make_dense_ff({cfg.dim, cfg.width, cfg.dim, Activation::gelu}, rng);
        break;
      case LmMixer::leaf_fff:
        b.leaf = make_leaf_fff(
            {cfg.dim, cfg.dim, cfg.leaf_depth(), cfg.leaf_width, Activation::gelu}, rng);
        break;
      case LmMixer::neuron_fff:
        b.neuron =
            make_neuron_fff({cfg.dim, cfg.dim, cfg.trees, cfg.depth, Activation::gelu, true}, rng);
        break;
    }
    // Names unique across blocks, for model files.
    for (Param* p : b.qrnn.params()) p->name = pre + ".qrnn." + p->name;
    for (Param* p : ff_params(b, cfg.mixer)) p->name = pre + ".ff." + p->name;
    m.blocks.push_back(std::move(b));
  }
  m.ln_out = make_layer_norm(cfg.dim, "ln_out");
  m.out_w = Param("out.w", {cfg.dim, LmConfig::kVocab});
  m.out_b = Param("out.b", {LmConfig::kVocab});
  fill_uniform(m.out_w.value, 1.0f / std::sqrt(static_cast<float>(cfg.dim)), rng);
  return m;
}

void LmState::reset(const LmModel& m, int64_t B) {
  batch = B;
  const int64_t d = m.cfg.dim, k = m.cfg.window;
  h.assign(m.blocks.size(), Tensor({B, d}));
  history.assign(m.blocks.size(), Tensor({std::max<int64_t>(k - 1, 0), B, d}));
}

namespace {

void ensure(Tensor& t, std::vector<int64_t> shape) {
  if (t.shape != shape) t = Tensor(std::move(shape));
}

void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

double lm_forward(Context& ctx, LmModel& m, const int32_t* tokens, int64_t T, int64_t B,
                  LmState& state, bool train, float* logits, LmContext& cache, bool hardened) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t d = c.dim, N = T * B, k = c.window;
  if (state.batch != B || state.h.size() != m.blocks.size()) state.reset(m, B);
  cache.T = T;
  cache.B = B;
  cache.blocks.resize(m.blocks.size());
  Tensor x({N, d});
  embedding_forward(m.embed, tokens, N, x.ptr());
  double entropy = 0.0;
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    LmBlock& b = m.blocks[l];
    LmBlockContext& bc = cache.blocks[l];
    ensure(bc.u1, {N, d});
    ensure(bc.q, {N, d});
    ensure(bc.u2, {N, d});
    ensure(bc.f, {N, d});
    layer_norm_forward(ctx, b.ln1, x.ptr(), N, bc.u1.ptr(), bc.ln1);
    bc.h0 = state.h[l];
    bc.history = state.history[l];
    qrnn_forward(ctx, b.qrnn, bc.u1.ptr(), T, B, k > 1 ? bc.history.ptr() : nullptr, bc.h0.ptr(),
                 bc.q.ptr(), bc.qrnn);
    // Carry the state: the last step's h and the last k - 1 QRNN inputs.
    std::copy(bc.qrnn.h.data.end() - B * d, bc.qrnn.h.data.end(), state.h[l].data.begin());
    // Row r of the new history is row T + r of [old history; u1] (rows of B * d floats).
    for (int64_t r = 0; r + 1 < k; ++r) {
      const int64_t src = T + r;
      const float* row =
          src < k - 1 ? bc.history.ptr() + src * B * d : bc.u1.ptr() + (src - (k - 1)) * B * d;
      std::copy_n(row, B * d, state.history[l].ptr() + r * B * d);
    }
    add_into(x.ptr(), bc.q.ptr(), N * d);
    layer_norm_forward(ctx, b.ln2, x.ptr(), N, bc.u2.ptr(), bc.ln2);
    switch (c.mixer) {
      case LmMixer::dense:
        dense_ff_forward(ctx, b.dense, bc.u2.ptr(), N, bc.f.ptr(), &bc.dense);
        break;
      case LmMixer::leaf_fff:
        if (train)
          entropy += leaf_fff_forward_train(ctx, b.leaf, bc.u2.ptr(), N, bc.f.ptr(),
                                            {hardened, nullptr}, bc.leaf);
        else {
          // Packed once per context: a context is used with one set of weights.
          if (bc.leaf_packed.w1t.size() == 0) bc.leaf_packed = pack_leaf_fff(b.leaf);
          leaf_fff_infer(ctx, bc.leaf_packed, bc.u2.ptr(), N, bc.f.ptr(), nullptr);
        }
        break;
      case LmMixer::neuron_fff:
        if (train)
          neuron_fff_forward(ctx, b.neuron, bc.u2.ptr(), N, bc.f.ptr(), &bc.neuron);
        else
          neuron_fff_infer(ctx, b.neuron, bc.u2.ptr(), N, bc.f.ptr());
        break;
    }
    add_into(x.ptr(), bc.f.ptr(), N * d);
  }
  ensure(cache.u_out, {N, d});
  layer_norm_forward(ctx, m.ln_out, x.ptr(), N, cache.u_out.ptr(), cache.ln_out);
  linear_forward(ctx, cache.u_out.ptr(), N, d, LmConfig::kVocab, m.out_w.value.ptr(),
                 m.out_b.value.ptr(), logits);
  return m.blocks.empty() ? 0.0 : entropy / static_cast<double>(m.blocks.size());
}

void lm_backward(Context& ctx, LmModel& m, const int32_t* tokens, const float* dlogits,
                 float hardening, LmContext& cache) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t d = c.dim, T = cache.T, B = cache.B, N = T * B;
  Tensor du({N, d}), dx({N, d}), dtmp({N, d});
  linear_backward(ctx, cache.u_out.ptr(), dlogits, N, d, LmConfig::kVocab, m.out_w.value.ptr(),
                  du.ptr(), m.out_w.grad.ptr(), m.out_b.grad.ptr());
  layer_norm_backward(ctx, m.ln_out, du.ptr(), N, cache.ln_out, dx.ptr());
  const float leaf_hardening =
      m.blocks.empty() ? 0.0f : hardening / static_cast<float>(m.blocks.size());
  for (size_t l = m.blocks.size(); l-- > 0;) {
    LmBlock& b = m.blocks[l];
    LmBlockContext& bc = cache.blocks[l];
    // x_out = x_mid + ff(ln2(x_mid))
    switch (c.mixer) {
      case LmMixer::dense:
        dense_ff_backward(ctx, b.dense, bc.u2.ptr(), N, dx.ptr(), bc.dense, du.ptr());
        break;
      case LmMixer::leaf_fff:
        leaf_fff_backward_train(ctx, b.leaf, bc.u2.ptr(), N, dx.ptr(), leaf_hardening, bc.leaf,
                                du.ptr());
        break;
      case LmMixer::neuron_fff:
        neuron_fff_backward(ctx, b.neuron, bc.u2.ptr(), N, dx.ptr(), bc.neuron, du.ptr());
        break;
    }
    layer_norm_backward(ctx, b.ln2, du.ptr(), N, bc.ln2, dtmp.ptr());
    add_into(dx.ptr(), dtmp.ptr(), N * d);
    // x_mid = x_in + qrnn(ln1(x_in)); the carried state is a constant (truncated BPTT).
    qrnn_backward(ctx, b.qrnn, dx.ptr(), T, B, bc.h0.ptr(), bc.qrnn, du.ptr(), nullptr);
    layer_norm_backward(ctx, b.ln1, du.ptr(), N, bc.ln1, dtmp.ptr());
    add_into(dx.ptr(), dtmp.ptr(), N * d);
  }
  embedding_backward(m.embed, tokens, N, dx.ptr());
}

}  // namespace fff
