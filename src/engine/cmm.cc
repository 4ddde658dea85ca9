// CMM engine scheduling for neuron FFF inference: row-at-a-time latency path and the grouped
// batched path (regrouping by node, tiles, threads); the SIMD kernels are in cpu/cmm_kernels.
#include "fff/engine/cmm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "cpu/cache_size.h"
#include "cpu/cmm_kernels.h"
#include "cpu/grouping.h"
#include "cpu/streaming.h"

namespace fff {

namespace {

// Inputs kept in L2 while a tile walks its levels: three quarters of it (768 KB of a 1 MB L2;
// on the 2 MB L2 of the Xeon model 167, tiles of 96 to 512 rows of 768 floats timed within noise
// of each other, docs/performance.md).
int64_t tile_bytes() {
  return cpu::l2_cache_bytes() / 4 * 3;
}

// Routing state of one batched call, shared by its threads (a row's entries are written only
// by the thread that walks it at the time).
struct Routes {
  std::vector<int32_t> node;  // (B): each row's node in the current tree
  std::vector<float> act;     // (B, D + 1): the activations of its path in the current tree
  std::vector<int32_t> order, bucket_start;  // rows by node at the level where threads split
};

// Per-thread working state of the batched path, kept in the context's workspace (one slot per
// thread) and reused across calls.
struct Scratch {
  int32_t* node = nullptr;  // the call's Routes
  float* act = nullptr;
  std::vector<int32_t> rows, order, bucket_start, tile, sorted, start, singles, packed, lone,
      groups;
  std::vector<const float*> xp, path[2];
  std::vector<const uint16_t*> path_half[2];
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

// The output rows of a path (which = 0), or of the next path to be combined (which = 1).
template <class W>
std::vector<const W*>& path_rows(Scratch& sc, int which = 0) {
  if constexpr (std::is_same_v<W, float>)
    return sc.path[which];
  else
    return sc.path_half[which];
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

// The output rows of the path from the root to `node` of `level`, root first.
template <class W>
void set_path(const NeuronFFFConfig& c, const W* w2, int64_t node, int64_t level,
              std::vector<const W*>& path) {
  for (int64_t l = level, k = node; l >= 0; --l, k = (k - 1) / 2) path[l] = w2 + k * c.out;
}

// Rows alone at their node (deep levels: each token's own path) step kLockstep at a time: their
// dot products read independent weight rows, so the cache misses of several rows overlap
// instead of forming one chain of dependent loads per row.
constexpr int64_t kLockstep = 8;

// The weight rows (input rows of w1 or output rows of w2) of rows[0..g) at their current nodes.
template <class W>
void node_rows(const W* weights, int64_t row_size, const Scratch& sc, const int32_t* rows,
               int64_t g, const W** out) {
  for (int64_t j = 0; j < g; ++j) out[j] = weights + sc.node[rows[j]] * row_size;
}

// Rows rows[0..g), g <= kLockstep, each alone at its node of `level`, take their step together;
// fetch[0..fetch_rows) are requested from memory meanwhile.
template <class W>
void step_lone_rows(const NeuronFFFConfig& c, const TreeWeights<W>& tw, const float* x,
                    const int32_t* rows, int64_t g, int64_t level, const W* const* fetch,
                    int64_t fetch_rows, Scratch& sc) {
  const float* xp[kLockstep] = {};
  const W* wp[kLockstep] = {};
  float z[kLockstep];
  for (int64_t j = 0; j < g; ++j) xp[j] = x + rows[j] * c.in;
  node_rows(tw.w1, c.in, sc, rows, g, wp);
  cpu::cmm_dot_pairs(xp, wp, g, c.in, z, fetch, fetch_rows);
  for (int64_t j = 0; j < g; ++j) {
    const int32_t r = rows[j], node = sc.node[r];
    step_row(c, sc, r, node, level, z[j] + tw.b1[node]);
  }
}

// Rows lone[0..n), each alone at its node of `level`, step kLockstep at a time; each chunk
// requests the next chunk's input rows while it reads its own.
template <class W>
void step_lone_level(const NeuronFFFConfig& c, const TreeWeights<W>& tw, const float* x,
                     const int32_t* lone, int64_t n, int64_t level, Scratch& sc) {
  for (int64_t i0 = 0; i0 < n; i0 += kLockstep) {
    const int64_t g = std::min(kLockstep, n - i0);
    const int64_t next_rows = std::min(kLockstep, n - i0 - g);
    const W* next[kLockstep];
    node_rows(tw.w1, c.in, sc, lone + i0 + g, next_rows, next);
    step_lone_rows(c, tw, x, lone + i0, g, level, next, next_rows, sc);
  }
}

// Rows lone[0..n), past level D, add their own paths' output rows to their outputs; each row
// requests the next row's output rows while it reads its own (the deep ones are misses).
template <class W>
void combine_lone(const NeuronFFFConfig& c, const TreeWeights<W>& tw, int64_t tree, float* y,
                  const int32_t* lone, int64_t n, Scratch& sc) {
  const int64_t D1 = c.depth + 1;
  auto& path = path_rows<W>(sc);
  auto& next = path_rows<W>(sc, 1);
  // A node has moved one level below D when its row's walk ended.
  if (n > 0) set_path(c, tw.w2, (sc.node[lone[0]] - 1) / 2, c.depth, next);
  for (int64_t i = 0; i < n; ++i) {
    std::swap(path, next);
    if (i + 1 < n) set_path(c, tw.w2, (sc.node[lone[i + 1]] - 1) / 2, c.depth, next);
    float* yr = y + lone[i] * c.out;
    cpu::cmm_combine_rows(sc.act + lone[i] * D1, D1, D1, path.data(), c.out, tw.init, tree > 0,
                          sc.stream, &yr, 1, next.data(), i + 1 < n ? D1 : 0);
  }
}

// Sorts rows[0..n) (0..n-1 if rows is null) by node into out, where every node lies in
// [first, first + width); `start` receives the bounds of the non-empty groups (groups + 1
// entries). Counting sort where the range is small next to n, a comparison sort otherwise.
void group_by_node(const int32_t* rows, int64_t n, const int32_t* node, int32_t first,
                   int64_t width, int32_t* out, std::vector<int32_t>& start) {
  if (width <= 4 * n + 64) {
    cpu::group_by_key(rows, n, node, first, width, out, start);
    start.erase(std::unique(start.begin(), start.end()), start.end());  // drop empty groups
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = rows ? rows[i] : static_cast<int32_t>(i);
  std::stable_sort(out, out + n, [&](int32_t p, int32_t q) { return node[p] < node[q]; });
  start.clear();
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || node[out[i]] != node[out[i - 1]]) start.push_back(static_cast<int32_t>(i));
  start.push_back(static_cast<int32_t>(n));
}

// Walks the rows tile[0..n) of one tree from level s to level e, level by level; the tile is in
// order of the rows' nodes at level s. At each level a group of several rows shares its node's
// weights, and at level D its whole path, so its outputs are one small product; rows alone at
// their node step in lockstep. Each group requests the next group's weights while it reads its
// own, so the misses of a level overlap instead of waiting on each other.
template <class W>
void walk_tile(const NeuronFFF& m, WeightRows<W> wr, int64_t tree, const float* x, float* y,
               int32_t* tile, int64_t n, int64_t s, int64_t e, Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t D1 = c.depth + 1;
  const TreeWeights<W> tw = tree_weights(m, wr, tree);
  auto& path = path_rows<W>(sc);
  auto& next_path = path_rows<W>(sc, 1);  // the next group's, requested while one combines
  const int64_t lo = sc.node[tile[0]], hi = sc.node[tile[n - 1]];
  sc.lone.clear();
  for (int64_t level = s; level <= e; ++level) {
    // The tile's nodes at `level` descend from [lo, hi] at level s.
    const int32_t first = static_cast<int32_t>(((lo + 1) << (level - s)) - 1);
    sc.start.assign(1, 0);
    if (n > 0)
      group_by_node(tile, n, sc.node, first, (hi - lo + 1) << (level - s), sc.sorted.data(),
                    sc.start);
    sc.groups.clear();
    for (size_t k = 0; k + 1 < sc.start.size(); ++k) {
      if (sc.start[k + 1] - sc.start[k] == 1)
        sc.lone.push_back(sc.sorted[sc.start[k]]);
      else
        sc.groups.push_back(static_cast<int32_t>(k));
    }
    const int64_t groups = static_cast<int64_t>(sc.groups.size());
    int64_t kept = 0;  // rows that still share their node; they go on to the next level
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t b = sc.start[sc.groups[k]], cnt = sc.start[sc.groups[k] + 1] - b;
      const int32_t* rows = sc.sorted.data() + b;
      const int32_t node = sc.node[rows[0]];
      const W* next =
          k + 1 < groups ? tw.w1 + sc.node[sc.sorted[sc.start[sc.groups[k + 1]]]] * c.in : nullptr;
      for (int64_t i = 0; i < cnt; ++i) sc.xp[i] = x + rows[i] * c.in;
      cpu::cmm_dot_rows(sc.xp.data(), cnt, tw.w1 + node * c.in, c.in, sc.z.data(), &next,
                        next ? 1 : 0);
      for (int64_t i = 0; i < cnt; ++i)
        step_row(c, sc, rows[i], node, level, sc.z[i] + tw.b1[node]);
      std::copy_n(rows, cnt, tile + kept);
      kept += cnt;
      if (level < c.depth) continue;
      set_path(c, tw.w2, node, c.depth, path);
      if (next) set_path(c, tw.w2, (next - tw.w1) / c.in, c.depth, next_path);
      for (int64_t i = 0; i < cnt; ++i) {
        std::copy_n(sc.act + rows[i] * D1, D1, sc.a.data() + i * D1);
        sc.yp[i] = y + rows[i] * c.out;
      }
      cpu::cmm_combine_rows(sc.a.data(), D1, D1, path.data(), c.out, tw.init, tree > 0, sc.stream,
                            sc.yp.data(), cnt, next_path.data(), next ? D1 : 0);
    }
    // A row alone at its node stays alone below it: from here on it steps with the tile's
    // other lone rows, and after level D they combine their paths.
    const int64_t lone = static_cast<int64_t>(sc.lone.size());
    step_lone_level(c, tw, x, sc.lone.data(), lone, level, sc);
    if (level == c.depth) combine_lone(c, tw, tree, y, sc.lone.data(), lone, sc);
    n = kept;
  }
}

// Rows walked together in a tile.
int64_t max_tile_rows(const NeuronFFFConfig& c, const CmmOptions& opt) {
  return opt.tile_rows > 0
             ? opt.tile_rows
             : std::clamp<int64_t>(tile_bytes() / (c.in * int64_t{sizeof(float)}), 8, 4096);
}

// Walks rows[0..n) of one tree from level s0 to level s1 (their nodes at s0 set) in bands of
// levels: before each band the rows are regrouped by the node they reached, so that a deep node
// serves every row that visits it. Rows that fit one tile walk every level in one band.
template <class W>
void walk_levels(const NeuronFFF& m, WeightRows<W> wr, int64_t tree, const float* x, float* y,
                 const int32_t* rows, int64_t n, int64_t s0, int64_t s1, const CmmOptions& opt,
                 Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t D1 = c.depth + 1;
  const int64_t tile_max = max_tile_rows(c, opt);
  const int64_t band = n <= tile_max ? D1 : std::max<int64_t>(1, opt.band_levels);
  const int64_t pack_max = std::min(tile_max, opt.pack_rows >= 0         ? opt.pack_rows
                                              : std::is_same_v<W, float> ? 0
                                                                         : 64);
  sc.order.resize(n);
  sc.tile.resize(std::min(n, tile_max));
  sc.sorted.resize(n);
  sc.xp.resize(std::min(n, tile_max));
  sc.yp.resize(std::min(n, tile_max));
  sc.z.resize(std::min(n, tile_max));
  sc.a.resize(std::min(n, tile_max) * D1);
  path_rows<W>(sc).resize(D1);
  path_rows<W>(sc, 1).resize(D1);
  // A single tree writes each output once; when the outputs exceed the cache, stream them.
  sc.stream = c.trees == 1 && n * c.out * int64_t{sizeof(float)} >= cpu::kStreamingStoreBytes;
  for (int64_t s = s0; s <= s1;) {
    const int64_t e = std::min(s1, (s / band + 1) * band - 1);  // bands start at multiples
    // Regroup the rows by the node reached at level s, then walk them in tiles: all of them if
    // they fit one; else a bucket of rows is a tile (split into equal tiles above tile_max
    // rows), or shares one with its neighbours if it has at most pack_max rows; the rows alone
    // at their node are packed into tiles together, so that they step in lockstep.
    const int64_t width = int64_t{1} << s;
    group_by_node(rows, n, sc.node, static_cast<int32_t>(width - 1), width, sc.order.data(),
                  sc.bucket_start);
    auto walk = [&](const int32_t* tile_rows, int64_t count) {
      std::copy_n(tile_rows, count, sc.tile.data());
      walk_tile(m, wr, tree, x, y, sc.tile.data(), count, s, e, sc);
    };
    auto walk_packed = [&] {
      if (!sc.packed.empty()) walk(sc.packed.data(), static_cast<int64_t>(sc.packed.size()));
      sc.packed.clear();
    };
    if (n <= tile_max) {
      walk(sc.order.data(), n);
    } else {
      sc.singles.clear();
      for (size_t k = 0; k + 1 < sc.bucket_start.size(); ++k) {
        const int64_t b = sc.bucket_start[k], cnt = sc.bucket_start[k + 1] - b;
        const int32_t* bucket = sc.order.data() + b;
        if (cnt == 1) {
          sc.singles.push_back(bucket[0]);
        } else if (cnt <= pack_max) {
          if (static_cast<int64_t>(sc.packed.size()) + cnt > pack_max) walk_packed();
          sc.packed.insert(sc.packed.end(), bucket, bucket + cnt);
        } else {
          const int64_t tiles = (cnt + tile_max - 1) / tile_max;
          for (int64_t t = 0; t < tiles; ++t)
            walk(bucket + cnt * t / tiles, cnt * (t + 1) / tiles - cnt * t / tiles);
        }
      }
      walk_packed();
      const int64_t singles = static_cast<int64_t>(sc.singles.size());
      for (int64_t t0 = 0; t0 < singles; t0 += tile_max)
        walk(sc.singles.data() + t0, std::min(tile_max, singles - t0));
    }
    s = e + 1;
  }
}

// The level from which threads take the rows of disjoint subtrees (above it each walks its own
// slice of the batch): the first band start with at least 16 nodes per thread (level 6 on two
// threads), so the split adds no band.
int64_t thread_split_level(const CmmOptions& opt, int64_t threads) {
  const int64_t band = std::max<int64_t>(1, opt.band_levels);
  int64_t level = band;
  while ((int64_t{1} << level) < 16 * threads) level += band;
  return level;
}

// One thread's part of a batched call over rows [0, B). With several threads and a tree deeper
// than the split level, the threads walk their slices down to that level, then the batch is
// sorted by node there and each thread takes an equal run of it: the rows of whole subtrees
// (one subtree may straddle two threads), so that a deep node's weights are read by one core
// and not once per slice that visits it.
template <class W>
void infer_thread(Team& team, const NeuronFFF& m, WeightRows<W> wr, const float* x, int64_t B,
                  float* y, const CmmOptions& opt, Routes& routes, Scratch& sc) {
  const auto& c = m.cfg;
  const int64_t t = team.id(), nt = team.size();
  const int64_t r0 = B * t / nt, r1 = B * (t + 1) / nt;
  sc.node = routes.node.data();
  sc.act = routes.act.data();
  sc.rows.resize(r1 - r0);
  for (int64_t r = r0; r < r1; ++r) sc.rows[r - r0] = static_cast<int32_t>(r);
  // Only slices walked in bands split: a slice that fits one tile already reads each of its
  // nodes once, and in the encoder at 128 tokens on two threads, splitting those was 4% slower.
  // Decided on the largest slice, so that every thread takes the same branch (and barriers).
  const int64_t split = thread_split_level(opt, nt);
  const bool by_subtree = nt > 1 && (B + nt - 1) / nt > max_tile_rows(c, opt) && split <= c.depth;
  for (int64_t tree = 0; tree < c.trees; ++tree) {
    std::fill(sc.node + r0, sc.node + r1, 0);
    if (!by_subtree) {
      walk_levels(m, wr, tree, x, y, sc.rows.data(), r1 - r0, 0, c.depth, opt, sc);
      continue;
    }
    walk_levels(m, wr, tree, x, y, sc.rows.data(), r1 - r0, 0, split - 1, opt, sc);
    team.barrier();
    team.single([&] {
      const int64_t width = int64_t{1} << split;
      routes.order.resize(B);
      group_by_node(nullptr, B, sc.node, static_cast<int32_t>(width - 1), width,
                    routes.order.data(), routes.bucket_start);
    });
    walk_levels(m, wr, tree, x, y, routes.order.data() + r0, r1 - r0, split, c.depth, opt, sc);
    // The next tree resets nodes that other threads may still be reading.
    team.barrier();
  }
}

}  // namespace

void neuron_fff_infer_batched(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const CmmOptions& opt, const NeuronFFFHalf* half) {
  if (B <= 0) return;
  CallScope scope(ctx);
  // A thread per 64 rows at most: fewer are not worth a thread.
  const int threads = static_cast<int>(std::clamp<int64_t>(B / 64, 1, ctx.threads));
  // Shared by the call's threads; each thread has its own Scratch slot, made here beforehand.
  Routes& routes = ctx.workspace.get<Routes>();
  routes.node.resize(B);
  routes.act.resize(B * (m.cfg.depth + 1));
  ctx.workspace.reserve<Scratch>(static_cast<size_t>(threads));
  Workspace& ws = ctx.workspace;
  parallel_region(ctx, threads, [&](Team& team) {
    Scratch& sc = ws.get<Scratch>(static_cast<size_t>(team.id()));
    if (half)
      infer_thread(team, m, weight_rows(*half), x, B, y, opt, routes, sc);
    else
      infer_thread(team, m, weight_rows(m), x, B, y, opt, routes, sc);
  });
}

namespace {

// Cache lines of both children's input rows requested at each level of a row's walk, before
// the decision between them is known: 2 lines took 5% off batch 1 over 16 layers (weights from
// DRAM) and changed nothing with one layer's weights in L3; 8 lines were slower
// (docs/performance.md).
constexpr int64_t kChildLines = 2;

// Row x of one tree, walked level by level: each level's dot product runs in one pass with the
// previous level's output row added to y, so that the output rows' loads overlap the chain of
// dependent input-row loads. y starts from init (or zero) unless accumulate.
template <class W>
void walk_row(const NeuronFFFConfig& c, const TreeWeights<W>& tw, const float* x, float* y,
              bool accumulate) {
  if (!accumulate) {
    if (tw.init)
      std::copy_n(tw.init, c.out, y);
    else
      std::fill_n(y, c.out, 0.0f);
  }
  int64_t node = 0;
  const W* prev = nullptr;  // the previous level's output row, and its activation
  float a = 0.0f;
  for (int64_t level = 0; level <= c.depth; ++level) {
    const W* children[2] = {};
    const int64_t known = level < c.depth ? 2 : 0;
    if (known) children[0] = tw.w1 + (2 * node + 1) * c.in, children[1] = children[0] + c.in;
    const float z = cpu::cmm_dot_axpy(x, tw.w1 + node * c.in, c.in, a, prev, y, c.out, children,
                                      known, kChildLines) +
                    tw.b1[node];
    a = activate(c.act, z);
    prev = tw.w2 + node * c.out;
    node = 2 * node + 1 + (z > 0.0f ? 1 : 0);
  }
  cpu::cmm_dot_axpy(x, prev, 0, a, prev, y, c.out);
}

// Rows at a time, each thread its own contiguous rows. One row is not split over threads: a
// parallel region costs 0.7 us on the 2-core development VM, and handing each path node to a
// second thread that adds the output rows was measured no faster (docs/performance.md).
template <class W>
void infer_rowwise(Context& ctx, const NeuronFFF& m, WeightRows<W> wr, const float* x, int64_t B,
                   float* y) {
  const auto& c = m.cfg;
  parallel_region(ctx, static_cast<int>(std::min<int64_t>(B, ctx.threads)), [&](Team& t) {
    const Range rows = static_range(B, t.id(), t.size());
    for (int64_t r = rows.begin; r < rows.end; ++r)
      for (int64_t tree = 0; tree < c.trees; ++tree)
        walk_row(c, tree_weights(m, wr, tree), x + r * c.in, y + r * c.out, tree > 0);
  });
}

}  // namespace

void neuron_fff_infer_rowwise(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const NeuronFFFHalf* half) {
  CallScope scope(ctx);
  if (half)
    infer_rowwise(ctx, m, weight_rows(*half), x, B, y);
  else
    infer_rowwise(ctx, m, weight_rows(m), x, B, y);
}

void neuron_fff_infer(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                      const NeuronFFFHalf* half) {
  if (B < kCmmBatchedFrom)
    neuron_fff_infer_rowwise(ctx, m, x, B, y, half);
  else
    neuron_fff_infer_batched(ctx, m, x, B, y, {}, half);
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
