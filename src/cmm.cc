// CMM engine scheduling for neuron FFF inference: row-at-a-time latency path and the grouped
// batched path (regrouping by node, tiles, threads); the SIMD kernels are in cpu/cmm_kernels.
#include "fff/cmm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/cmm_kernels.h"
#include "cpu/grouping.h"
#include "cpu/vec.h"
#include "fff/gemm.h"

namespace fff {

namespace {

// Inputs kept in L2 while a tile walks its levels.
constexpr int64_t kTileBytes = 768 * 1024;
// Outputs larger than this are written with non-temporal stores.
constexpr int64_t kStreamOutputBytes = 4 << 20;

// Per-thread working state of the batched path, reused across calls.
struct Scratch {
  std::vector<int32_t> node;  // per row of the slice: its node in the current tree
  std::vector<float> act;     // per row: the D + 1 activations of its path in the current tree
  std::vector<int32_t> order, bucket_start, tile, sorted, start, singles;
  std::vector<const float*> xp, path;
  std::vector<const uint16_t*> path_half;
  std::vector<float*> yp;
  std::vector<float> z, a;
  bool stream = false;  // write outputs with non-temporal stores
};

// The weight rows the engine reads: the model's own (fp32) or its half-precision copy.
template <class W>
struct WeightRows {
  const W* w1;  // (K n, in)
  const W* w2;  // (K n, out)
};

WeightRows<float> weight_rows(const NeuronFFF& m) {
  return {m.w1.value.ptr(), m.w2.value.ptr()};
}
WeightRows<uint16_t> weight_rows(const NeuronFFFHalf& h) {
  return {h.w1.data(), h.w2.data()};
}

template <class W>
std::vector<const W*>& path_rows(Scratch& sc) {
  if constexpr (std::is_same_v<W, float>)
    return sc.path;
  else
    return sc.path_half;
}

// One tree's part of the weights: node k's input row is w1 + k * in, its output row w2 + k * out.
template <class W>
struct TreeWeights {
  const W* w1;
  const float* b1;
  const W* w2;
  const float* init;  // the output bias, added by tree 0 only; null otherwise
};

template <class W>
TreeWeights<W> tree_weights(const NeuronFFF& m, WeightRows<W> wr, int64_t tree) {
  const auto& c = m.cfg;
  const int64_t first = tree * c.nodes_per_tree();
  return {wr.w1 + first * c.in, m.b1.value.ptr() + first, wr.w2 + first * c.out,
          (tree == 0 && c.output_bias) ? m.b.value.ptr() : nullptr};
}

// Row r at `node` of `level` with pre-activation z: records its activation and moves it to the
// child its decision picks (right iff z > 0).
inline void step_row(const NeuronFFFConfig& c, Scratch& sc, int32_t r, int32_t node, int64_t level,
                     float z) {
  sc.act[r * (c.depth + 1) + level] = activate(c.act, z);
  sc.node[r] = 2 * node + 1 + (z > 0.0f ? 1 : 0);
}

// The output rows of the path that ends at `leaf` (a node of the last level), root first.
template <class W>
void set_path(const NeuronFFFConfig& c, const W* w2, int64_t leaf, std::vector<const W*>& path) {
  for (int64_t l = c.depth, k = leaf; l >= 0; --l, k = (k - 1) / 2) path[l] = w2 + k * c.out;
}

// Walks the rows tile[0..n) of one tree from level s to level e; all of them are at the same
// node at level s. At level D each group shares its whole path and writes its outputs.
template <class W>
void walk_tile(const NeuronFFF& m, WeightRows<W> wr, int64_t tree, const float* x, float* y,
               int32_t* tile, int64_t n, int64_t s, int64_t e, Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t D1 = c.depth + 1;
  const auto [w1, b1, w2, init] = tree_weights(m, wr, tree);
  auto& path = path_rows<W>(sc);
  const int32_t root = sc.node[tile[0]];
  for (int64_t level = s; level <= e; ++level) {
    const int64_t width = int64_t{1} << (level - s);
    const int32_t first = static_cast<int32_t>((root + 1) * width - 1);
    cpu::group_by_key(tile, n, sc.node.data(), first, width, sc.sorted.data(), sc.start);
    int64_t next_g = 0;  // the next group with rows; its node's weights are fetched early
    for (int64_t g = 0; g < width; ++g) {
      const int64_t b = sc.start[g], cnt = sc.start[g + 1] - b;
      if (cnt == 0) continue;
      const int32_t node = first + static_cast<int32_t>(g);
      if (next_g <= g) {
        for (next_g = g + 1; next_g < width && sc.start[next_g + 1] == sc.start[next_g];) ++next_g;
        if (next_g < width) cpu::prefetch_row(w1 + (first + next_g) * c.in, c.in);
      }
      const int32_t* rows = sc.sorted.data() + b;
      for (int64_t i = 0; i < cnt; ++i) sc.xp[i] = x + rows[i] * c.in;
      cpu::cmm_dot_rows(sc.xp.data(), cnt, w1 + node * c.in, c.in, sc.z.data());
      for (int64_t i = 0; i < cnt; ++i) step_row(c, sc, rows[i], node, level, sc.z[i] + b1[node]);
      if (level == c.depth) {
        set_path(c, w2, node, path);
        for (int64_t i = 0; i < cnt; ++i) {
          std::copy_n(sc.act.data() + rows[i] * D1, D1, sc.a.data() + i * D1);
          sc.yp[i] = y + rows[i] * c.out;
        }
        cpu::cmm_combine_rows(sc.a.data(), D1, D1, path.data(), c.out, init, tree > 0, sc.stream,
                              sc.yp.data(), cnt);
      }
    }
    std::copy_n(sc.sorted.data(), n, tile);
  }
}

// Rows alone at their node at level s (deep levels: each token's own path) walk levels s to e in
// lockstep, kLockstep at a time: their dot products read independent weight rows, so the cache
// misses of several rows overlap instead of forming one chain of dependent loads per row.
constexpr int64_t kLockstep = 8;

template <class W>
void walk_singles(const NeuronFFF& m, WeightRows<W> wr, int64_t tree, const float* x, float* y,
                  const int32_t* rows, int64_t n, int64_t s, int64_t e, Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t D1 = c.depth + 1;
  const auto [w1, b1, w2, init] = tree_weights(m, wr, tree);
  auto& path = path_rows<W>(sc);
  for (int64_t i0 = 0; i0 < n; i0 += kLockstep) {
    const int64_t g = std::min(kLockstep, n - i0);
    const float* xp[kLockstep];
    const W* wp[kLockstep];
    float z[kLockstep];
    for (int64_t j = 0; j < g; ++j) xp[j] = x + rows[i0 + j] * c.in;
    for (int64_t level = s; level <= e; ++level) {
      for (int64_t j = 0; j < g; ++j) wp[j] = w1 + sc.node[rows[i0 + j]] * c.in;
      cpu::cmm_dot_pairs(xp, wp, g, c.in, z);
      for (int64_t j = 0; j < g; ++j) {
        const int32_t r = rows[i0 + j], node = sc.node[r];
        step_row(c, sc, r, node, level, z[j] + b1[node]);
      }
    }
    if (e < c.depth) continue;
    for (int64_t j = 0; j < g; ++j) {
      const int32_t r = rows[i0 + j];
      set_path(c, w2, (sc.node[r] - 1) / 2, path);  // node has moved one level below the last
      float* yr = y + r * c.out;
      cpu::cmm_combine_rows(sc.act.data() + r * D1, D1, D1, path.data(), c.out, init, tree > 0,
                            sc.stream, &yr, 1);
    }
  }
}

// The batched path on one contiguous slice of rows.
template <class W>
void infer_slice(const NeuronFFF& m, WeightRows<W> wr, const float* x, int64_t rows, float* y,
                 const CmmOptions& opt, Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t D1 = c.depth + 1;
  const int64_t band = std::max<int64_t>(1, opt.band_levels);
  const int64_t tile_max =
      opt.tile_rows > 0
          ? opt.tile_rows
          : std::clamp<int64_t>(kTileBytes / (c.in * int64_t{sizeof(float)}), 8, 4096);
  sc.node.resize(rows);
  sc.act.resize(rows * D1);
  sc.order.resize(rows);
  sc.tile.resize(std::min(rows, tile_max));
  sc.sorted.resize(rows);
  sc.xp.resize(std::min(rows, tile_max));
  sc.yp.resize(std::min(rows, tile_max));
  sc.z.resize(std::min(rows, tile_max));
  sc.a.resize(std::min(rows, tile_max) * D1);
  path_rows<W>(sc).resize(D1);
  // A single tree writes each output once; when the outputs exceed the cache, stream them.
  sc.stream = c.trees == 1 && rows * c.out * int64_t{sizeof(float)} > kStreamOutputBytes;
  for (int64_t tree = 0; tree < c.trees; ++tree) {
    std::fill(sc.node.begin(), sc.node.end(), 0);
    for (int64_t s = 0; s <= c.depth; s += band) {
      const int64_t e = std::min(c.depth, s + band - 1);
      // Regroup the slice by the node reached at level s: one bucket per node.
      const int64_t width = int64_t{1} << s;
      const int32_t first = static_cast<int32_t>(width - 1);
      if (width <= 4 * rows + 64) {
        cpu::group_by_key(nullptr, rows, sc.node.data(), first, width, sc.order.data(),
                          sc.bucket_start);
      } else {  // far more nodes than rows: sort instead of counting
        std::iota(sc.order.begin(), sc.order.end(), 0);
        std::stable_sort(sc.order.begin(), sc.order.end(),
                         [&](int32_t p, int32_t q) { return sc.node[p] < sc.node[q]; });
        sc.bucket_start.clear();
        for (int64_t i = 0; i < rows; ++i)
          if (i == 0 || sc.node[sc.order[i]] != sc.node[sc.order[i - 1]])
            sc.bucket_start.push_back(static_cast<int32_t>(i));
        sc.bucket_start.push_back(static_cast<int32_t>(rows));
      }
      sc.singles.clear();
      for (size_t k = 0; k + 1 < sc.bucket_start.size(); ++k) {
        const int64_t b = sc.bucket_start[k], cnt = sc.bucket_start[k + 1] - b;
        if (cnt == 0) continue;
        if (cnt == 1) {
          sc.singles.push_back(sc.order[b]);
          continue;
        }
        // Split a large bucket into equal tiles of at most tile_max rows.
        const int64_t tiles = (cnt + tile_max - 1) / tile_max;
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t t0 = b + cnt * t / tiles, t1 = b + cnt * (t + 1) / tiles;
          std::copy(sc.order.begin() + t0, sc.order.begin() + t1, sc.tile.begin());
          walk_tile(m, wr, tree, x, y, sc.tile.data(), t1 - t0, s, e, sc);
        }
      }
      walk_singles(m, wr, tree, x, y, sc.singles.data(), static_cast<int64_t>(sc.singles.size()), s,
                   e, sc);
    }
  }
}

}  // namespace

void neuron_fff_infer_batched(const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const CmmOptions& opt, const NeuronFFFHalf* half) {
  if (B <= 0) return;
  // Threads take equal contiguous slices; a slice below 64 rows is not worth a thread.
  const int threads = static_cast<int>(std::clamp<int64_t>(B / 64, 1, num_threads()));
#pragma omp parallel num_threads(threads)
  {
    static thread_local Scratch sc;
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t r0 = B * t / nt, r1 = B * (t + 1) / nt;
    const float* xs = x + r0 * m.cfg.in;
    float* ys = y + r0 * m.cfg.out;
    if (half)
      infer_slice(m, weight_rows(*half), xs, r1 - r0, ys, opt, sc);
    else
      infer_slice(m, weight_rows(m), xs, r1 - r0, ys, opt, sc);
  }
}

namespace {

template <class W>
void infer_rowwise(const NeuronFFF& m, WeightRows<W> wr, const float* x, int64_t B, float* y) {
  const auto& c = m.cfg;
  const int64_t per_tree = c.nodes_per_tree(), D1 = c.depth + 1;
#pragma omp parallel if (B > 1)
  {
    std::vector<float> a(D1);
    std::vector<const W*> path(D1);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < B; ++r) {
      const float* xr = x + r * c.in;
      float* yr = y + r * c.out;
      for (int64_t tree = 0; tree < c.trees; ++tree) {
        int64_t node = 0;
        for (int64_t level = 0; level <= c.depth; ++level) {
          const int64_t k = tree * per_tree + node;
          path[level] = wr.w2 + k * c.out;
          float z;
          cpu::cmm_dot_rows(&xr, 1, wr.w1 + k * c.in, c.in, &z);
          z += m.b1.value.data[k];
          a[level] = activate(c.act, z);
          node = 2 * node + 1 + (z > 0.0f ? 1 : 0);
        }
        const float* init = (tree == 0 && c.output_bias) ? m.b.value.ptr() : nullptr;
        cpu::cmm_combine_rows(a.data(), D1, D1, path.data(), c.out, init, tree > 0, false, &yr, 1);
      }
    }
  }
}

}  // namespace

void neuron_fff_infer_rowwise(const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const NeuronFFFHalf* half) {
  if (half)
    infer_rowwise(m, weight_rows(*half), x, B, y);
  else
    infer_rowwise(m, weight_rows(m), x, B, y);
}

void neuron_fff_infer(const NeuronFFF& m, const float* x, int64_t B, float* y,
                      const NeuronFFFHalf* half) {
  if (B < kCmmBatchedFrom)
    neuron_fff_infer_rowwise(m, x, B, y, half);
  else
    neuron_fff_infer_batched(m, x, B, y, {}, half);
}

NeuronFFFHalf make_half_weights(const NeuronFFF& m) {
  NeuronFFFHalf h;
  auto convert = [](const Tensor& w, const char* name, auto& out) {
    for (float v : w.data)
      if (!(std::fabs(v) <= 65504.0f))
        throw Error(std::string("neuron FFF ") + name + ": weight " + std::to_string(v) +
                    " is beyond half precision's range (|w| <= 65504)");
    out.resize(w.data.size());
    cpu::to_half(w.data.data(), static_cast<int64_t>(w.data.size()), out.data());
  };
  convert(m.w1.value, "w1", h.w1);
  convert(m.w2.value, "w2", h.w2);
  return h;
}

const char* cmm_simd_target() {
  return cpu::cmm_simd_target();
}

}  // namespace fff
