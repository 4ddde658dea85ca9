// Byte-level QRNN + FFF language model: forward over a segment with carried state, backward.
#include "fff/models/lm.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "fff/layers/linear.h"

namespace fff {

int64_t LmConfig::leaf_depth() const {
  int64_t d = 0;
  while ((leaf_width << (d + 1)) <= width) ++d;
  return d;
}

FFConfig LmConfig::ff_config() const {
  FFConfig f;
  f.kind = mixer;
  f.in = f.out = dim;
  f.act = Activation::gelu;
  f.width = width;
  f.leaf_width = leaf_width;
  f.trees = trees;
  f.depth = mixer == FFKind::leaf_fff ? leaf_depth() : depth;
  return f;
}

double LmConfig::ff_inference_flops() const {
  return ff_config().inference_flops_per_row() * static_cast<double>(layers);
}

std::vector<Param*> LmModel::params() {
  std::vector<Param*> ps = embed.params();
  for (auto& b : blocks) {
    for (Param* p : b.ln1.params()) ps.push_back(p);
    for (Param* p : b.qrnn.params()) ps.push_back(p);
    for (Param* p : b.ln2.params()) ps.push_back(p);
    for (Param* p : b.ff->params()) ps.push_back(p);
  }
  for (Param* p : ln_out.params()) ps.push_back(p);
  ps.push_back(&out_w);
  ps.push_back(&out_b);
  return ps;
}

LmModel make_lm(const LmConfig& cfg, Rng& rng) {
  if (cfg.dim <= 0 || cfg.layers <= 0 || cfg.window <= 0)
    throw Error("language model needs positive dim, layers and window");
  if (cfg.mixer == FFKind::leaf_fff && (cfg.leaf_width <= 0 || cfg.width < cfg.leaf_width))
    throw Error("LmConfig.leaf_width = " + std::to_string(cfg.leaf_width) +
                ": a leaf-fff mixer needs 0 < leaf_width <= width (" + std::to_string(cfg.width) +
                ")");
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
    b.ff = make_ff_block(cfg.ff_config(), rng);
    // Names unique across blocks, for model files.
    for (Param* p : b.qrnn.params()) p->name = pre + ".qrnn." + p->name;
    for (Param* p : b.ff->params()) p->name = pre + ".ff." + p->name;
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
  Rng no_leak(0);  // the language model trains without region leak: never drawn from
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    LmBlock& b = m.blocks[l];
    LmBlockContext& bc = cache.blocks[l];
    bc.u1.ensure_shape({N, d});
    bc.q.ensure_shape({N, d});
    bc.u2.ensure_shape({N, d});
    bc.f.ensure_shape({N, d});
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
    if (train) {
      if (!bc.ff) bc.ff = b.ff->make_cache();
      entropy +=
          b.ff->forward_train(ctx, bc.u2.ptr(), N, bc.f.ptr(), {hardened, 0.0f}, no_leak, *bc.ff);
    } else {
      if (!bc.ff_prepared) b.ff->prepare_inference({});  // once per cache: one set of weights
      bc.ff_prepared = true;
      b.ff->infer(ctx, bc.u2.ptr(), N, bc.f.ptr(), nullptr);
    }
    add_into(x.ptr(), bc.f.ptr(), N * d);
  }
  cache.u_out.ensure_shape({N, d});
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
  // The hardening weight reaches only leaf FFF blocks (the others have no node entropy).
  const float leaf_hardening =
      m.blocks.empty() ? 0.0f : hardening / static_cast<float>(m.blocks.size());
  for (size_t l = m.blocks.size(); l-- > 0;) {
    LmBlock& b = m.blocks[l];
    LmBlockContext& bc = cache.blocks[l];
    // x_out = x_mid + ff(ln2(x_mid))
    if (!bc.ff) throw Error("lm_backward: the cache holds no training forward");
    b.ff->backward(ctx, bc.u2.ptr(), N, dx.ptr(), leaf_hardening, *bc.ff, du.ptr());
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
