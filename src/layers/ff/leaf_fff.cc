// Leaf FFF: soft training forward/backward on sgemm and hard inference grouped by leaf (the naive
// references are in src/testing/ff.cc).
#include "fff/layers/ff/leaf_fff.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "cpu/cmm_kernels.h"
#include "cpu/elementwise_kernels.h"
#include "cpu/grouping.h"
#include "cpu/vec_kernels.h"
#include "fff/cpu/gemm.h"
#include "fff/layers/linear.h"

namespace fff {

namespace {
constexpr double kEntropyClamp = 1e-6;

// |z| beyond which sigmoid(z) leaves [1e-6, 1 - 1e-6] and the entropy clamp applies.
const float kClampLogit = static_cast<float>(std::log((1.0 - kEntropyClamp) / kEntropyClamp));

// The entropy where the clamp applies.
const float kClampedEntropy = static_cast<float>(binary_entropy(0.0));

// Columns of the combined product, rounded up to whole 16-float vectors (the padding columns
// have zero weights): sgemm runs markedly faster on such widths.
int64_t combined_width(int64_t W, int64_t n) {
  return (W + n + 15) / 16 * 16;
}
// Turns per-leaf mass sums over a batch of B rows into the means M_j and returns the balance
// loss L * sum_j M_j^2 - 1.
double balance_loss(std::vector<double>& mass, int64_t B) {
  const auto L = static_cast<double>(mass.size());
  double loss = -1.0;
  for (double& m : mass) {
    m /= static_cast<double>(std::max<int64_t>(B, 1));
    loss += L * m * m;
  }
  return loss;
}
}  // namespace

double binary_entropy(double p) {
  p = std::clamp(p, kEntropyClamp, 1.0 - kEntropyClamp);
  return -p * std::log(p) - (1.0 - p) * std::log(1.0 - p);
}

LeafFFFWeights weights_of(const LeafFFF& m) {
  return {m.nodes_w.value.ptr(), m.nodes_b.value.ptr(), m.w1.value.ptr(),
          m.b1.value.ptr(),      m.w2.value.ptr(),      m.b2.value.ptr()};
}

LeafFFFGrads grads_of(LeafFFF& m) {
  return {m.nodes_w.grad.ptr(), m.nodes_b.grad.ptr(), m.w1.grad.ptr(),
          m.b1.grad.ptr(),      m.w2.grad.ptr(),      m.b2.grad.ptr()};
}

LeafFFF make_leaf_fff(const LeafFFFConfig& cfg, Rng& rng) {
  if (cfg.in <= 0 || cfg.out <= 0 || cfg.leaf_width <= 0)
    throw Error("leaf FFF needs positive in, out and leaf width");
  if (cfg.depth < 0 || cfg.depth > 20) throw Error("leaf FFF depth must be in [0, 20]");
  const int64_t n = cfg.n_nodes(), L = cfg.n_leaves(), W = cfg.training_width();
  LeafFFF m{cfg,
            Param("nodes_w", {n, cfg.in}),
            Param("nodes_b", {n}),
            Param("w1", {cfg.in, W}),
            Param("b1", {W}),
            Param("w2", {W, cfg.out}),
            Param("b2", {L, cfg.out})};
  const float k_in = 1.0f / std::sqrt(static_cast<float>(cfg.in));
  const float k_leaf = 1.0f / std::sqrt(static_cast<float>(cfg.leaf_width));
  fill_uniform(m.nodes_w.value, k_in, rng);
  fill_uniform(m.nodes_b.value, k_in, rng);
  fill_uniform(m.w1.value, k_in, rng);
  fill_uniform(m.b1.value, k_in, rng);
  fill_uniform(m.w2.value, k_leaf, rng);
  fill_uniform(m.b2.value, k_leaf, rng);
  return m;
}

std::vector<uint8_t> sample_region_leak(int64_t B, int64_t n_nodes, float rate, Rng& rng) {
  std::vector<uint8_t> flips(static_cast<size_t>(B * n_nodes), 0);
  if (rate > 0.0f)
    for (auto& f : flips) f = rng.uniform() < rate;
  return flips;
}

namespace {

// Hardened forward: node logits, each row's leaf from its 0/1 decisions (and flips), rows grouped
// by leaf, then per leaf y_j = act(x_j W1_j + b1_j) W2_j + b2_j on its own rows only.
double hard_forward_train(Context& ctx, const LeafFFFConfig& c, const LeafFFFWeights& w,
                          const float* x, int64_t B, float* y, LeafFFFContext& cache) {
  const int64_t n = c.n_nodes(), L = c.n_leaves(), W = c.training_width(), lw = c.leaf_width;
  cache.q.reshape({B, n});
  cache.p.reshape({B, n});
  cache.mass.reshape({B, n});
  if (n > 0) {
    gemm(ctx, false, true, B, n, c.in, 1.0f, x, c.in, w.nodes_w, c.in, 0.0f, cache.q.ptr(), n);
    parallel_for(ctx, B, [&](int64_t r) {
      for (int64_t i = 0; i < n; ++i) cache.q.row(r)[i] += w.nodes_b[i];
    });
  }
  std::vector<int64_t> leaf(static_cast<size_t>(B));
  std::vector<double> row_entropy(static_cast<size_t>(B), 0.0);
  parallel_for(ctx, B, [&](int64_t r) {
    const float* z = cache.q.row(r);
    float* entropies = cache.p.row(r);
    cpu::sigmoid_entropy(z, cache.mass.row(r), entropies, n, kClampLogit, kClampedEntropy);
    double entropy = 0.0;
    for (int64_t i = 0; i < n; ++i) entropy += entropies[i];
    row_entropy[static_cast<size_t>(r)] = entropy;
    int64_t node = 0;
    for (int64_t level = 0; level < c.depth; ++level) {
      bool right = z[node] >= 0.0f;
      if (!cache.flips.empty() && cache.flips[r * n + node]) right = !right;
      node = 2 * node + 1 + (right ? 1 : 0);
    }
    leaf[static_cast<size_t>(r)] = node - n;
  });
  cache.leaf_begin.assign(static_cast<size_t>(L + 1), 0);
  for (int64_t r = 0; r < B; ++r) ++cache.leaf_begin[static_cast<size_t>(leaf[r] + 1)];
  cache.leaf_mass_mean.assign(cache.leaf_begin.begin() + 1, cache.leaf_begin.end());
  cache.balance_loss = balance_loss(cache.leaf_mass_mean, B);  // reported only: no gradient
  for (int64_t j = 0; j < L; ++j) cache.leaf_begin[j + 1] += cache.leaf_begin[j];
  cache.order.resize(static_cast<size_t>(B));
  std::vector<int64_t> next(cache.leaf_begin.begin(), cache.leaf_begin.end() - 1);
  for (int64_t r = 0; r < B; ++r) cache.order[static_cast<size_t>(next[leaf[r]]++)] = r;

  cache.xg.reshape({B, c.in});
  cache.zc.reshape({B, lw});
  cache.h.reshape({B, lw});
  cache.g.reshape({B, c.out});  // the grouped outputs
  parallel_for(ctx, B,
               [&](int64_t k) { std::copy_n(x + cache.order[k] * c.in, c.in, cache.xg.row(k)); });
  for (int64_t j = 0; j < L; ++j) {
    const int64_t b = cache.leaf_begin[j], rows = cache.leaf_begin[j + 1] - b;
    if (rows == 0) continue;
    float* z = cache.zc.row(b);
    gemm(ctx, false, false, rows, lw, c.in, 1.0f, cache.xg.row(b), c.in, w.w1 + j * lw, W, 0.0f, z,
         lw);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < lw; ++k) z[r * lw + k] += w.b1[j * lw + k];
    activation_forward(ctx, c.act, z, cache.h.row(b), rows * lw);
    float* yg = cache.g.row(b);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(w.b2 + j * c.out, c.out, yg + r * c.out);
    gemm(ctx, false, false, rows, c.out, lw, 1.0f, cache.h.row(b), lw, w.w2 + j * lw * c.out, c.out,
         1.0f, yg, c.out);
  }
  parallel_for(ctx, B,
               [&](int64_t k) { std::copy_n(cache.g.row(k), c.out, y + cache.order[k] * c.out); });
  double entropy = 0.0;
  for (double e : row_entropy) entropy += e;
  return n > 0 ? entropy / static_cast<double>(B * n) : 0.0;
}

// Hardened backward, per leaf on its own rows: the nodes get no gradient (as in the mixture with
// 0/1 masses, whose node gradients are zero), dx flows through the leaves only.
void hard_backward_train(Context& ctx, const LeafFFFConfig& c, const LeafFFFWeights& w,
                         const LeafFFFGrads& g, int64_t B, const float* dy, LeafFFFContext& cache,
                         float* dx) {
  const int64_t n = c.n_nodes(), L = c.n_leaves(), W = c.training_width(), lw = c.leaf_width;
  std::fill_n(g.nodes_w, n * c.in, 0.0f);
  std::fill_n(g.nodes_b, n, 0.0f);
  Tensor& dyg = cache.g;  // the grouped outputs are not needed any more
  dyg.reshape({B, c.out});
  parallel_for(ctx, B,
               [&](int64_t k) { std::copy_n(dy + cache.order[k] * c.out, c.out, dyg.row(k)); });
  Tensor& dz = cache.dzc;
  dz.reshape({B, lw});
  Tensor& dxg = cache.dwc;
  if (dx) dxg.reshape({B, c.in});
  for (int64_t j = 0; j < L; ++j) {
    const int64_t b = cache.leaf_begin[j], rows = cache.leaf_begin[j + 1] - b;
    float* gw2 = g.w2 + j * lw * c.out;
    if (rows == 0) {
      std::fill_n(gw2, lw * c.out, 0.0f);
      std::fill_n(g.b2 + j * c.out, c.out, 0.0f);
      for (int64_t t = 0; t < c.in; ++t) std::fill_n(g.w1 + t * W + j * lw, lw, 0.0f);
      std::fill_n(g.b1 + j * lw, lw, 0.0f);
      continue;
    }
    const float* dyj = dyg.row(b);
    float* dzj = dz.row(b);
    gemm(ctx, true, false, lw, c.out, rows, 1.0f, cache.h.row(b), lw, dyj, c.out, 0.0f, gw2, c.out);
    column_sums(dyj, rows, c.out, g.b2 + j * c.out);
    gemm(ctx, false, true, rows, lw, c.out, 1.0f, dyj, c.out, w.w2 + j * lw * c.out, c.out, 0.0f,
         dzj, lw);
    activation_backward(c.act, cache.zc.row(b), dzj, dzj, rows * lw);
    gemm(ctx, true, false, c.in, lw, rows, 1.0f, cache.xg.row(b), c.in, dzj, lw, 0.0f,
         g.w1 + j * lw, W);
    column_sums(dzj, rows, lw, g.b1 + j * lw);
    if (dx)
      gemm(ctx, false, true, rows, c.in, lw, 1.0f, dzj, lw, w.w1 + j * lw, W, 0.0f, dxg.row(b),
           c.in);
  }
  if (dx)
    parallel_for(ctx, B,
                 [&](int64_t k) { std::copy_n(dxg.row(k), c.in, dx + cache.order[k] * c.in); });
}

}  // namespace

// Soft: the leaf hidden layer and the nodes read the same x, so both run as one product with the
// combined weights Wc = [W1 | N^T] (in, W + n): one wide sgemm instead of a wide and a thin one.
// zc holds [zh | z] per row.
double leaf_fff_forward_train(Context& ctx, const LeafFFFConfig& c, const LeafFFFWeights& w,
                              const float* x, int64_t B, float* y, const LeafTrainMode& mode,
                              LeafFFFContext& cache) {
  CallScope scope(ctx);
  cache.mode = mode;
  cache.flips = mode.flips ? *mode.flips : std::vector<uint8_t>();
  cache.mode.flips = nullptr;
  if (mode.hardened) return hard_forward_train(ctx, c, w, x, B, y, cache);
  const int64_t n = c.n_nodes(), L = c.n_leaves(), W = c.training_width(), lw = c.leaf_width;
  const int64_t n_pos = 2 * L - 1, Wc = combined_width(W, n);
  cache.zc.reshape({B, Wc});
  cache.p.reshape({B, n});
  cache.q.reshape({B, n});
  cache.mass.reshape({B, n_pos});
  cache.h.reshape({B, W});
  cache.g.reshape({B, W});
  if (cache.wc.size() != c.in * Wc) {
    cache.wc.reshape({c.in, Wc});
    cache.wc.zero();  // the padding columns stay zero
    cache.bc.reshape({Wc});
    cache.bc.zero();
  }
  for (int64_t t = 0; t < c.in; ++t) {
    std::copy_n(w.w1 + t * W, W, cache.wc.row(t));
    for (int64_t i = 0; i < n; ++i) cache.wc.row(t)[W + i] = w.nodes_w[i * c.in + t];
  }
  std::copy_n(w.b1, W, cache.bc.ptr());
  std::copy_n(w.nodes_b, n, cache.bc.ptr() + W);
  linear_forward(ctx, x, B, c.in, Wc, cache.wc.ptr(), cache.bc.ptr(), cache.zc.ptr());

  // Per-row entropy sums, added in row order afterwards: the same total on any thread count.
  std::vector<double> row_entropy(static_cast<size_t>(B), 0.0);
  parallel_for(ctx, B, [&](int64_t r) {
    double entropy = 0.0;
    const float* zh = cache.zc.row(r);
    const float* z = zh + W;
    float* p = cache.p.row(r);
    float* q_raw = cache.q.row(r);
    float* mass = cache.mass.row(r);
    // p holds the nodes' entropies until it is overwritten with the decisions.
    cpu::sigmoid_entropy(z, q_raw, p, n, kClampLogit, kClampedEntropy);
    for (int64_t i = 0; i < n; ++i) {
      entropy += p[i];
      float q = mode.hardened ? (z[i] >= 0.0f ? 1.0f : 0.0f) : q_raw[i];
      if (!cache.flips.empty() && cache.flips[r * n + i]) q = 1.0f - q;
      p[i] = q;
    }
    mass[0] = 1.0f;
    for (int64_t i = 0; i < n; ++i) {
      mass[2 * i + 1] = mass[i] * (1.0f - p[i]);
      mass[2 * i + 2] = mass[i] * p[i];
    }
    const float* mix = mass + n;
    float* h = cache.h.row(r);
    activation_forward(ctx, c.act, zh, h, W);
    float* g = cache.g.row(r);
    for (int64_t j = 0; j < L; ++j)
      for (int64_t k = 0; k < lw; ++k) g[j * lw + k] = mix[j] * h[j * lw + k];
    row_entropy[r] = entropy;
  });
  double entropy = 0.0;
  for (double e : row_entropy) entropy += e;
  // Leaf masses summed in row order: the same M_j on any thread count.
  cache.leaf_mass_mean.assign(static_cast<size_t>(L), 0.0);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < L; ++j) cache.leaf_mass_mean[j] += cache.mass.row(r)[n + j];
  cache.balance_loss = balance_loss(cache.leaf_mass_mean, B);
  // y = g W2 + m b2
  gemm(ctx, false, false, B, c.out, W, 1.0f, cache.g.ptr(), W, w.w2, c.out, 0.0f, y, c.out);
  gemm(ctx, false, false, B, c.out, L, 1.0f, cache.mass.ptr() + n, n_pos, w.b2, c.out, 1.0f, y,
       c.out);
  return n > 0 ? entropy / static_cast<double>(B * n) : 0.0;
}

void leaf_fff_backward_train(Context& ctx, const LeafFFFConfig& c, const LeafFFFWeights& w,
                             const LeafFFFGrads& g, const float* x, int64_t B, const float* dy,
                             float hardening, LeafFFFContext& cache, float* dx) {
  CallScope scope(ctx);
  if (cache.mode.hardened) return hard_backward_train(ctx, c, w, g, B, dy, cache, dx);
  const int64_t n = c.n_nodes(), L = c.n_leaves(), W = c.training_width(), lw = c.leaf_width;
  const int64_t n_pos = 2 * L - 1, Wc = combined_width(W, n);
  // dW2 = g^T dy, db2 = m^T dy, U = dy W2^T into the leaf columns of dzc.
  gemm(ctx, true, false, W, c.out, B, 1.0f, cache.g.ptr(), W, dy, c.out, 0.0f, g.w2, c.out);
  gemm(ctx, true, false, L, c.out, B, 1.0f, cache.mass.ptr() + n, n_pos, dy, c.out, 0.0f, g.b2,
       c.out);
  Tensor& dzc = cache.dzc;
  dzc.reshape({B, Wc});
  gemm(ctx, false, true, B, W, c.out, 1.0f, dy, c.out, w.w2, c.out, 0.0f, dzc.ptr(), Wc);
  // dy b2_j for every row and leaf j, the bias part of dLoss/dm_j: one small product instead of
  // B * L short dot products.
  cache.dm.reshape({B, L});
  gemm(ctx, false, true, B, L, c.out, 1.0f, dy, c.out, w.b2, c.out, 0.0f, cache.dm.ptr(), L);

  const bool node_grads = n > 0 && !cache.mode.hardened;
  const float entropy_scale = n > 0 ? hardening / static_cast<float>(B * n) : 0.0f;
  // d(b (L sum_j M_j^2 - 1)) / d mass_rj = 2 b L M_j / B, the same for every row.
  std::vector<float> balance_grad(static_cast<size_t>(L), 0.0f);
  if (node_grads && cache.mode.balance != 0.0f)
    for (int64_t j = 0; j < L; ++j)
      balance_grad[j] = static_cast<float>(2.0 * cache.mode.balance * static_cast<double>(L) *
                                           cache.leaf_mass_mean[j] / static_cast<double>(B));
  parallel_region(ctx, static_cast<int>(std::min<int64_t>(B, ctx.threads)), [&](Team& team) {
    std::vector<float> down(static_cast<size_t>(n_pos));
    const Range rows = static_range(B, team.id(), team.size());
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      const float* mass = cache.mass.row(r);
      const float* mix = mass + n;
      const float* h = cache.h.row(r);
      float* ur = dzc.row(r);  // U, then d zh
      float* dzr = ur + W;     // d z (nodes)
      for (int64_t j = 0; j < L; ++j) {
        float dm = cache.dm.row(r)[j];
        for (int64_t k = 0; k < lw; ++k) dm += h[j * lw + k] * ur[j * lw + k];
        down[n + j] = dm + balance_grad[j];
        for (int64_t k = 0; k < lw; ++k) ur[j * lw + k] *= mix[j];
      }
      activation_backward(c.act, cache.zc.row(r), ur, ur, W);
      std::fill_n(dzr, Wc - W, 0.0f);  // node columns and the padding
      if (!node_grads) continue;
      const float* p = cache.p.row(r);
      const float* z = cache.zc.row(r) + W;
      // Bottom-up: down[t] = dLoss/dmass[t]; dp_i = mass_i (down_right - down_left).
      for (int64_t i = n - 1; i >= 0; --i) {
        down[i] = (1.0f - p[i]) * down[2 * i + 1] + p[i] * down[2 * i + 2];
        float dp = mass[i] * (down[2 * i + 2] - down[2 * i + 1]);
        if (!cache.flips.empty() && cache.flips[r * n + i]) dp = -dp;
        // dH/dp = ln((1 - p) / p) = -z inside the clamp, 0 where it clamps.
        if (std::fabs(z[i]) < kClampLogit) dp -= entropy_scale * z[i];
        const float raw = cache.q.row(r)[i];
        dzr[i] = dp * raw * (1.0f - raw);
      }
    }
  });
  // dWc = x^T dzc, dbc = column sums, dx = dzc Wc^T; then split into the leaf and node parts.
  Tensor& dwc = cache.dwc;
  dwc.reshape({c.in, Wc});
  cache.dbc.reshape({Wc});
  linear_backward(ctx, x, dzc.ptr(), B, c.in, Wc, cache.wc.ptr(), dx, dwc.ptr(), cache.dbc.ptr());
  for (int64_t t = 0; t < c.in; ++t) {
    std::copy_n(dwc.row(t), W, g.w1 + t * W);
    for (int64_t i = 0; i < n; ++i) g.nodes_w[i * c.in + t] = dwc.row(t)[W + i];
  }
  std::copy_n(cache.dbc.ptr(), W, g.b1);
  std::copy_n(cache.dbc.ptr() + W, n, g.nodes_b);
}

LeafFFFPacked pack_leaf_fff(const LeafFFFConfig& c, const LeafFFFWeights& w) {
  const int64_t W = c.training_width(), n = c.n_nodes(), L = c.n_leaves();
  LeafFFFPacked p{c,
                  Tensor({n, c.in}),
                  std::vector<int64_t>(static_cast<size_t>(n), -1),
                  Tensor({n}),
                  Tensor({W, c.in}),
                  Tensor({W}),
                  Tensor({W, c.out}),
                  Tensor({L, c.out})};
  std::copy_n(w.nodes_b, n, p.nodes_b.ptr());
  std::copy_n(w.b1, W, p.b1.ptr());
  std::copy_n(w.w2, W * c.out, p.w2.ptr());
  std::copy_n(w.b2, L * c.out, p.b2.ptr());
  int64_t row = 0;
  auto put = [&](int64_t node) {
    std::copy_n(w.nodes_w + node * c.in, c.in, p.node_blocks.row(row++));
  };
  for (int64_t level = 0; level < c.depth; level += 2)
    for (int64_t k = (int64_t{1} << level) - 1; k < (int64_t{2} << level) - 1; ++k) {
      p.block_row[k] = row;
      put(k);
      if (level + 1 < c.depth) {
        put(2 * k + 1);
        put(2 * k + 2);
      }
    }
  for (int64_t t = 0; t < c.in; ++t)
    for (int64_t k = 0; k < W; ++k) p.w1t.data[k * c.in + t] = w.w1[t * W + k];
  return p;
}

namespace {

// Rows handled together: their inputs (tile * in floats) stay in L2 while the tree is walked
// two levels per pass, and each node's or leaf's weights are loaded once for all its rows.
constexpr int64_t kInferTile = 256;
// Batches whose inputs do not fit in cache use smaller tiles, so that the next tile's inputs can
// be fetched while this one finishes; inputs that stay in cache group better in tiles of 256
// (0.27 vs 0.35 us/row at batch 256, Xeon). At batch 10,000 of 784 inputs a Xeon with a 2 MB L2
// ran tiles of 64 rows faster than 256 (0.37 vs 0.45 us/row), an AMD Zen 4 with a 1 MB L2 ran
// 128-256 faster than 64 (0.47-0.49 vs 0.49-0.55; docs/inference.md): 128 sits between.
constexpr int64_t kInferTileStreaming = 128;
constexpr int64_t kStreamingBatch = 2048;
// When the batch streams, the first pass reads a tile's rows in memory order from L3 or DRAM and
// requests the rows kRowsAhead further on into L2 as it goes; the leaf pass of the tile before
// requests only the next tile's first kRowsAhead rows. Requesting the whole next tile during the
// leaf pass (as smaller batches, whose rows are in cache, still do) spent a tenth of the time in
// prefetch instructions and still left the first pass waiting on memory (docs/performance.md,
// "Leaf FFF: the input rows requested one block ahead").
constexpr int64_t kRowsAhead = 4;

}  // namespace

void leaf_fff_infer(Context& ctx, const LeafFFFPacked& m, const float* x, int64_t B, float* y,
                    int32_t* leaves, float* path_logits) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t n = c.n_nodes(), L = c.n_leaves(), lw = c.leaf_width;
  // A batch of fewer than two tiles per thread is cut into one tile per thread, so that a
  // sentence's 128 tokens keep both threads busy (a row's result does not depend on its tile).
  const int64_t per_thread = (B + ctx.threads - 1) / ctx.threads;
  const bool streaming = B >= kStreamingBatch;
  const int64_t tile =
      streaming ? kInferTileStreaming : std::clamp<int64_t>(per_thread, 1, kInferTile);
  const int64_t ahead = streaming ? kRowsAhead : 0;
  const int64_t tiles = (B + tile - 1) / tile;
  parallel_region(ctx, static_cast<int>(std::min<int64_t>(tiles, ctx.threads)), [&](Team& team) {
    std::vector<int32_t> key(kInferTile), order(kInferTile), start;
    std::vector<const float*> rows(kInferTile), w2_rows(lw);
    std::vector<float*> out(kInferTile);
    std::vector<float> z(3 * kInferTile), h(static_cast<size_t>(kInferTile * lw));
    const Range my_tiles = static_range(tiles, team.id(), team.size());
    for (int64_t t = my_tiles.begin; t < my_tiles.end; ++t) {
      const int64_t r0 = t * tile, T = std::min(tile, B - r0);
      const float* xt = x + r0 * c.in;
      // key = position within the current level; after the last level it is the leaf.
      std::fill_n(key.begin(), T, 0);
      for (int64_t level = 0; level < c.depth;) {
        const bool two = level + 1 < c.depth;  // decide this level and the next in one pass
        const int64_t first = (int64_t{1} << level) - 1, count = int64_t{1} << level;
        cpu::group_by_key(nullptr, T, key.data(), 0, count, order.data(), start);
        for (int64_t g = 0; g < count; ++g) {
          const int64_t cnt = start[g + 1] - start[g];
          if (cnt == 0) continue;
          const int64_t k = first + g, nw = two ? 3 : 1;
          for (int64_t i = 0; i < cnt; ++i) rows[i] = xt + order[start[g] + i] * c.in;
          cpu::cmm_dot_matrix(rows.data(), cnt, m.node_blocks.row(m.block_row[k]), c.in, c.in, nw,
                              z.data(), nw, level == 0 ? ahead : 0);
          for (int64_t i = 0; i < cnt; ++i) {
            const int32_t r = order[start[g] + i];
            const float logit = z[i * nw] + m.nodes_b.data[k];
            const int right = logit >= 0.0f ? 1 : 0;
            key[r] = 2 * key[r] + right;
            float* path = path_logits ? path_logits + (r0 + r) * c.depth + level : nullptr;
            if (path) path[0] = logit;
            if (two) {
              const int64_t child = 2 * k + 1 + right;
              const float child_logit = z[i * nw + 1 + right] + m.nodes_b.data[child];
              key[r] = 2 * key[r] + (child_logit >= 0.0f ? 1 : 0);
              if (path) path[1] = child_logit;
            }
          }
        }
        level += two ? 2 : 1;
      }
      if (leaves) std::copy_n(key.begin(), T, leaves + r0);
      cpu::group_by_key(nullptr, T, key.data(), 0, L, order.data(), start);
      int64_t next_row = r0 + T;
      const int64_t next_end = std::min(B, next_row + (streaming ? kRowsAhead : tile));
      for (int64_t j = 0; j < L; ++j) {
        const int64_t cnt = start[j + 1] - start[j];
        if (cnt == 0) continue;
        for (int64_t i = 0; i < cnt; ++i) rows[i] = xt + order[start[j] + i] * c.in;
        cpu::cmm_dot_matrix(rows.data(), cnt, m.w1t.row(j * lw), c.in, c.in, lw, h.data(), lw);
        for (int64_t i = 0; i < cnt; ++i) {
          // The next tile's rows (streaming: its first ones), one per row finished.
          if (next_row < next_end) cpu::prefetch_row(x + (next_row++) * c.in, c.in);
          out[i] = y + (r0 + order[start[j] + i]) * c.out;
          for (int64_t k = 0; k < lw; ++k) h[i * lw + k] += m.b1.data[j * lw + k];
        }
        // The vectorised activation (a scalar erf per value was 8% of a converted MiniLM).
        activation_forward(ctx, c.act, h.data(), h.data(), cnt * lw);
        // The leaf's output rows serve all of its rows: one small product.
        for (int64_t k = 0; k < lw; ++k) w2_rows[k] = m.w2.row(j * lw + k);
        cpu::cmm_combine_rows(h.data(), lw, lw, w2_rows.data(), c.out, m.b2.row(j), false, false,
                              out.data(), cnt);
      }
    }
  });
  (void)n;
}

void leaf_fff_infer(Context& ctx, const LeafFFF& m, const float* x, int64_t B, float* y,
                    int32_t* leaves, float* path_logits) {
  leaf_fff_infer(ctx, pack_leaf_fff(m.cfg, weights_of(m)), x, B, y, leaves, path_logits);
}

double leaf_fff_inference_flops_per_row(const LeafFFFConfig& cfg) {
  return 2.0 * static_cast<double>(cfg.depth * cfg.in + cfg.leaf_width * (cfg.in + cfg.out));
}

}  // namespace fff
