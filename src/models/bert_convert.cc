// Dense -> leaf FFF conversion of a BERT's feedforward blocks (the method is in bert_convert.h).
#include "fff/models/bert_convert.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>
#include <utility>

#include "core/parallel.h"
#include "fff/cpu/gemm.h"
#include "fff/layers/activation.h"
#include "fff/training/optimizer.h"

namespace fff {

namespace {

struct Recorder : BertFFObserver {
  BertFFSamples* s = nullptr;
  int64_t H = 0, take = 0;  // rows of this sequence to keep
  void ff_block(int64_t layer, const float* x, const float* y, int64_t) override {
    auto& X = s->x[static_cast<size_t>(layer)];
    auto& Y = s->y[static_cast<size_t>(layer)];
    X.insert(X.end(), x, x + take * H);
    Y.insert(Y.end(), y, y + take * H);
  }
};

const Tensor& block_param(const FFBlock& b, const std::string& name) {
  for (Param* p : const_cast<FFBlock&>(b).params())
    if (p->name == name) return p->value;
  throw Error("feedforward block has no parameter '" + name + "'");
}

// Cholesky factor of A (symmetric positive definite, n x n) in place: its lower triangle
// becomes L with A = L L^T.
void cholesky_factor(std::vector<double>& A, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = A[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
    d = std::sqrt(std::max(d, 1e-30));
    A[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double v = A[i * n + j];
      for (int64_t k = 0; k < j; ++k) v -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = v / d;
    }
  }
}

// Solves L L^T x = b for the column b[0], b[stride], ... b[(n-1) stride] in place.
void cholesky_solve_factored(const std::vector<double>& L, double* b, int64_t n, int64_t stride) {
  for (int64_t i = 0; i < n; ++i) {  // L y = b
    double v = b[i * stride];
    for (int64_t k = 0; k < i; ++k) v -= L[i * n + k] * b[k * stride];
    b[i * stride] = v / L[i * n + i];
  }
  for (int64_t i = n - 1; i >= 0; --i) {  // L^T x = y
    double v = b[i * stride];
    for (int64_t k = i + 1; k < n; ++k) v -= L[k * n + i] * b[k * stride];
    b[i * stride] = v / L[i * n + i];
  }
}

// Solves A x = b in place (A symmetric positive definite, n x n, overwritten by its Cholesky
// factor; b becomes x).
void cholesky_solve(std::vector<double>& A, std::vector<double>& b, int64_t n) {
  cholesky_factor(A, n);
  cholesky_solve_factored(A, b.data(), n, 1);
}

// Weighted ridge logistic regression by Newton steps with step halving: Z (n, m) rows [x, 1],
// targets t in {0, 1}, weights w. Returns theta (m); logits Z theta in `logits`.
std::vector<float> fit_logistic(Context& ctx, const std::vector<float>& Z, int64_t n, int64_t m,
                                const std::vector<float>& t, const std::vector<float>& w,
                                const ConvertOptions& o, std::vector<float>& logits) {
  std::vector<float> theta(static_cast<size_t>(m), 0.0f), r(static_cast<size_t>(n)),
      g(static_cast<size_t>(m)), Zw(static_cast<size_t>(n * m)), Hf(static_cast<size_t>(m * m));
  logits.assign(static_cast<size_t>(n), 0.0f);
  auto loss_of = [&](const std::vector<float>& th, std::vector<float>& s, double lambda) {
    gemm(ctx, false, false, n, 1, m, 1.0f, Z.data(), m, th.data(), 1, 0.0f, s.data(), 1);
    double L = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double z = s[i];  // log(1 + e^-z) for t = 1, log(1 + e^z) for t = 0, stably
      const double u = t[i] > 0.5f ? -z : z;
      L += w[i] * (u > 0 ? u + std::log1p(std::exp(-u)) : std::log1p(std::exp(u)));
    }
    double p2 = 0;
    for (float v : th) p2 += static_cast<double>(v) * v;
    return L + 0.5 * lambda * p2;
  };
  double lambda = -1;
  for (int64_t step = 0; step < o.newton_steps; ++step) {
    // Gradient Z^T (w (p - t)) + lambda theta, Hessian Z^T diag(w p (1 - p)) Z + lambda I.
    for (int64_t i = 0; i < n; ++i) {
      const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[i])));
      r[i] = static_cast<float>(w[i] * (p - t[i]));
      const float sq = static_cast<float>(std::sqrt(w[i] * p * (1.0 - p)));
      for (int64_t k = 0; k < m; ++k) Zw[i * m + k] = sq * Z[i * m + k];
    }
    gemm(ctx, true, false, m, 1, n, 1.0f, Z.data(), m, r.data(), 1, 0.0f, g.data(), 1);
    gemm(ctx, true, false, m, m, n, 1.0f, Zw.data(), m, Zw.data(), m, 0.0f, Hf.data(), m);
    if (lambda < 0) {  // once, at theta = 0: relative to the mean curvature
      double tr = 0;
      for (int64_t k = 0; k < m; ++k) tr += Hf[k * m + k];
      lambda = o.ridge * std::max(tr / static_cast<double>(m), 1e-12);
    }
    std::vector<double> A(static_cast<size_t>(m * m)), d(static_cast<size_t>(m));
    for (int64_t k = 0; k < m * m; ++k) A[k] = Hf[k];
    for (int64_t k = 0; k < m; ++k) {
      A[k * m + k] += lambda;
      d[k] = g[k] + lambda * theta[k];
    }
    cholesky_solve(A, d, m);
    const double before = loss_of(theta, logits, lambda);
    std::vector<float> trial(theta.size()), s(static_cast<size_t>(n));
    double scale = 1.0, after = before;
    for (int halvings = 0; halvings < 12; ++halvings, scale *= 0.5) {
      for (int64_t k = 0; k < m; ++k) trial[k] = static_cast<float>(theta[k] - scale * d[k]);
      after = loss_of(trial, s, lambda);
      if (after <= before) break;
    }
    if (!(after <= before)) break;
    theta = trial;
    logits = s;
    if (before - after <= 1e-7 * std::max(before, 1e-12)) break;
  }
  return theta;
}

// Balanced k-means of the I rows of F (I, T) into k groups of I / k: greedy equal-capacity
// assignment by distance to the centres, centres the group means. Returns each row's group.
std::vector<int32_t> balanced_kmeans(Context& ctx, const std::vector<float>& F, int64_t I,
                                     int64_t T, int64_t k, const ConvertOptions& o) {
  const int64_t cap = I / k;
  Rng rng(o.seed);
  std::vector<float> C(static_cast<size_t>(k * T));
  std::vector<int64_t> perm(static_cast<size_t>(I));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = I - 1; i > 0; --i)
    std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i + 1))]);
  for (int64_t j = 0; j < k; ++j)
    std::copy(F.begin() + perm[j] * T, F.begin() + (perm[j] + 1) * T, C.begin() + j * T);
  std::vector<int32_t> group(static_cast<size_t>(I), -1), previous;
  std::vector<float> dots(static_cast<size_t>(I * k));
  std::vector<std::tuple<float, int64_t, int64_t>> pairs(static_cast<size_t>(I * k));
  for (int64_t it = 0; it < o.kmeans_iters; ++it) {
    gemm(ctx, false, true, I, k, T, 1.0f, F.data(), T, C.data(), T, 0.0f, dots.data(), k);
    std::vector<double> cn(static_cast<size_t>(k), 0.0);
    for (int64_t j = 0; j < k; ++j)
      for (int64_t q = 0; q < T; ++q) cn[j] += static_cast<double>(C[j * T + q]) * C[j * T + q];
    // ||f - c||^2 - ||f||^2 = ||c||^2 - 2 f.c; ties broken by index: deterministic.
    for (int64_t i = 0; i < I; ++i)
      for (int64_t j = 0; j < k; ++j)
        pairs[i * k + j] = {static_cast<float>(cn[j] - 2.0 * dots[i * k + j]), i, j};
    std::sort(pairs.begin(), pairs.end());
    std::fill(group.begin(), group.end(), -1);
    std::vector<int64_t> size(static_cast<size_t>(k), 0);
    for (const auto& [dist, i, j] : pairs)
      if (group[i] < 0 && size[j] < cap) group[i] = static_cast<int32_t>(j), ++size[j];
    std::fill(C.begin(), C.end(), 0.0f);
    for (int64_t i = 0; i < I; ++i)
      for (int64_t q = 0; q < T; ++q) C[group[i] * T + q] += F[i * T + q] / static_cast<float>(cap);
    if (group == previous) break;
    previous = group;
  }
  return group;
}

// The dense block's parameters: w1 (H, I), b1 (I), w2 (I, H), b2 (H).
struct DenseBlock {
  const Tensor &w1, &b1, &w2, &b2;
};

// A leaf FFF's parameters under construction, in its file layout (fff/layers/ff/leaf_fff.h):
// nodes_w (k - 1, H), nodes_b (k - 1), w1 (H, k l), b1 (k l), w2 (k l, H), b2 (k, H).
struct LeafTensors {
  Tensor nw, nb, w1, b1, w2, b2;
};

// Co-activation groups (steps 1 of the coactivation method): each neuron's feature is its GELU
// activation on kmeans_tokens evenly spread tokens, unit-normalised; balanced k-means into k
// groups of I / k neurons.
std::vector<std::vector<int64_t>> coactivation_groups(Context& ctx, const std::vector<float>& act,
                                                      int64_t N, int64_t I, int64_t k,
                                                      const ConvertOptions& o) {
  const int64_t T = std::min(N, o.kmeans_tokens);
  std::vector<float> F(static_cast<size_t>(I * T));
  for (int64_t q = 0; q < T; ++q) {
    const int64_t r = q * N / T;
    for (int64_t i = 0; i < I; ++i) F[i * T + q] = act[r * I + i];
  }
  for (int64_t i = 0; i < I; ++i) {
    double s = 0;
    for (int64_t q = 0; q < T; ++q) s += static_cast<double>(F[i * T + q]) * F[i * T + q];
    const float inv = static_cast<float>(1.0 / std::max(std::sqrt(s), 1e-12));
    for (int64_t q = 0; q < T; ++q) F[i * T + q] *= inv;
  }
  const std::vector<int32_t> group = balanced_kmeans(ctx, F, I, T, k, o);
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(k));
  for (int64_t i = 0; i < I; ++i) members[group[i]].push_back(i);
  return members;
}

// Leaf j := the dense block restricted to its neurons members[j] (l of them): those columns of
// w1, entries of b1 and rows of w2; every leaf's output bias the dense b2.
void restrict_leaves(const DenseBlock& d, const std::vector<std::vector<int64_t>>& members,
                     int64_t H, int64_t l, LeafTensors& t) {
  const auto k = static_cast<int64_t>(members.size());
  const int64_t I = d.b1.size();
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t q = 0; q < l; ++q) {
      const int64_t src = members[j][q], dst = j * l + q;
      for (int64_t h = 0; h < H; ++h) t.w1.data[h * k * l + dst] = d.w1.data[h * I + src];
      t.b1.data[dst] = d.b1.data[src];
      std::copy(d.w2.row(src), d.w2.row(src) + H, t.w2.row(dst));
    }
    std::copy(d.b2.ptr(), d.b2.ptr() + H, t.b2.row(j));
  }
}

// Each token's error with each leaf, err (N, k) = ||Y - (A_j W2_j + b2_j)||^2 with A_j the dense
// activations of leaf j's neurons (its W1 columns and b1 are the dense ones), and its best leaf,
// the argmin, into `best`; returns the sum of the best errors.
double best_leaves(Context& ctx, const std::vector<float>& act, int64_t N, int64_t I,
                   const std::vector<std::vector<int64_t>>& members, const LeafTensors& t,
                   const float* Y, int64_t H, std::vector<int32_t>& best, std::vector<float>& err) {
  const auto k = static_cast<int64_t>(members.size());
  const int64_t l = t.w2.rows() / k;
  err.assign(static_cast<size_t>(N * k), 0.0f);
  std::vector<float> Aj(static_cast<size_t>(N * l)), out(static_cast<size_t>(N * H));
  for (int64_t j = 0; j < k; ++j) {
    parallel_for(ctx, N, [&](int64_t r) {
      for (int64_t q = 0; q < l; ++q) Aj[r * l + q] = act[r * I + members[j][q]];
    });
    gemm_inference(ctx, false, false, N, H, l, 1.0f, Aj.data(), l, t.w2.row(j * l), H, 0.0f,
                   out.data(), H);
    const float* b2 = t.b2.row(j);
    parallel_for(ctx, N, [&](int64_t r) {
      double e = 0;
      for (int64_t h = 0; h < H; ++h) {
        const double d = static_cast<double>(Y[r * H + h]) - b2[h] - out[r * H + h];
        e += d * d;
      }
      err[r * k + j] = static_cast<float>(e);
    });
  }
  best.resize(static_cast<size_t>(N));
  double best_sq = 0;
  for (int64_t r = 0; r < N; ++r) {
    const float* e = err.data() + r * k;
    best[r] = static_cast<int32_t>(std::min_element(e, e + k) - e);
    best_sq += e[best[r]];
  }
  return best_sq;
}

// Step 4 of the coactivation method: the nodes, top down, each a weighted ridge logistic
// regression on the tokens its fitted ancestors send it (see bert_convert.h); err (N, k) as
// best_leaves gives it.
void fit_nodes_to_best_leaves(Context& ctx, const float* X, int64_t N, int64_t H, int64_t D,
                              const std::vector<float>& err, const ConvertOptions& o,
                              LeafTensors& t, const std::function<void(int64_t)>& level_done) {
  const int64_t k = int64_t{1} << D;
  std::vector<int64_t> at(static_cast<size_t>(N), 0);  // each token's tree position
  for (int64_t d = 0; d < D; ++d) {
    const int64_t span = int64_t{1} << (D - d);  // leaves under a node of this level
    for (int64_t node = (int64_t{1} << d) - 1; node < (int64_t{2} << d) - 1; ++node) {
      const int64_t first = (node - ((int64_t{1} << d) - 1)) * span;
      std::vector<int64_t> rows;
      for (int64_t r = 0; r < N; ++r)
        if (at[r] == node) rows.push_back(r);
      const auto n = static_cast<int64_t>(rows.size());
      std::vector<float> theta(static_cast<size_t>(H + 1), 0.0f), logits;
      if (n > 0) {
        std::vector<float> Z(static_cast<size_t>(n * (H + 1))), target(static_cast<size_t>(n)),
            w(static_cast<size_t>(n));
        double wsum = 0;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t r = rows[i];
          std::copy(X + r * H, X + (r + 1) * H, Z.begin() + i * (H + 1));
          Z[i * (H + 1) + H] = 1.0f;
          const float* e = err.data() + r * k + first;
          const float eL = *std::min_element(e, e + span / 2);
          const float eR = *std::min_element(e + span / 2, e + span);
          target[i] = eR < eL ? 1.0f : 0.0f;
          w[i] = std::fabs(eL - eR);
          wsum += w[i];
        }
        for (float& v : w) v = wsum > 0 ? static_cast<float>(v * n / wsum) : 1.0f;
        theta = fit_logistic(ctx, Z, n, H + 1, target, w, o, logits);
      }
      std::copy(theta.begin(), theta.begin() + H, t.nw.row(node));
      t.nb.data[node] = theta[H];
      for (int64_t i = 0; i < n; ++i) at[rows[i]] = 2 * node + 1 + (logits[i] >= 0.0f ? 1 : 0);
    }
    level_done(d);
  }
}

// Each leaf's output bias b2_j += the mean residual Y - out of the tokens routed to it: the
// least-squares bias for that routing.
void fit_leaf_biases(const std::vector<float>& out, const std::vector<int32_t>& routes,
                     const float* Y, int64_t N, int64_t H, Tensor& b2) {
  const int64_t k = b2.rows();
  for (int64_t j = 0; j < k; ++j) {
    std::vector<double> mean_res(static_cast<size_t>(H), 0.0);
    int64_t count = 0;
    for (int64_t r = 0; r < N; ++r) {
      if (routes[r] != j) continue;
      ++count;
      for (int64_t h = 0; h < H; ++h) mean_res[h] += Y[r * H + h] - out[r * H + h];
    }
    if (count == 0) continue;
    for (int64_t h = 0; h < H; ++h)
      b2.row(j)[h] += static_cast<float>(mean_res[h] / static_cast<double>(count));
  }
}

// The token_split method's tree: top down, node i splits the tokens its ancestors send it into
// two halves by balanced 2-means on the standardised inputs (centres c0, c1; a token goes right
// when its projection on c1 - c0 is at or above the median projection, then the centres become
// the halves' means, until nothing moves or kmeans_iters); the node's hyperplane is that median
// split, written back in the raw inputs, so inference routes exactly as the split did.
void split_tokens(Context& ctx, const float* X, int64_t N, int64_t H, int64_t D,
                  const ConvertOptions& o, LeafTensors& t) {
  std::vector<double> mu(static_cast<size_t>(H), 0.0), inv_sd(static_cast<size_t>(H), 0.0);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t h = 0; h < H; ++h) mu[h] += X[r * H + h];
  for (double& m : mu) m /= static_cast<double>(N);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t h = 0; h < H; ++h) inv_sd[h] += (X[r * H + h] - mu[h]) * (X[r * H + h] - mu[h]);
  for (double& v : inv_sd) v = 1.0 / std::sqrt(v / static_cast<double>(N) + 1e-12);
  Rng rng(o.seed);
  std::vector<int64_t> at(static_cast<size_t>(N), 0);  // each token's tree position
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t node = (int64_t{1} << d) - 1; node < (int64_t{2} << d) - 1; ++node) {
      std::vector<int64_t> rows;
      for (int64_t r = 0; r < N; ++r)
        if (at[r] == node) rows.push_back(r);
      const auto n = static_cast<int64_t>(rows.size());
      std::vector<double> c0(static_cast<size_t>(H), 0.0), c1(c0), dir(c0),
          p(static_cast<size_t>(n));
      double thr = 0;
      auto z = [&](int64_t i, int64_t h) { return (X[rows[i] * H + h] - mu[h]) * inv_sd[h]; };
      if (n >= 2) {
        const auto a = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
        const auto b = (a + 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - 1)))) % n;
        for (int64_t h = 0; h < H; ++h) c0[h] = z(a, h), c1[h] = z(b, h);
        std::vector<int64_t> order(static_cast<size_t>(n)), previous;
        for (int64_t it = 0; it < o.kmeans_iters; ++it) {
          for (int64_t h = 0; h < H; ++h) dir[h] = c1[h] - c0[h];
          parallel_for(ctx, n, [&](int64_t i) {
            double s = 0;
            for (int64_t h = 0; h < H; ++h) s += z(i, h) * dir[h];
            p[i] = s;
          });
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](int64_t u, int64_t v) { return p[u] < p[v]; });
          const int64_t half = n / 2;
          thr = 0.5 * (p[order[half - 1]] + p[order[half]]);
          std::fill(c0.begin(), c0.end(), 0.0);
          std::fill(c1.begin(), c1.end(), 0.0);
          for (int64_t q = 0; q < n; ++q) {
            std::vector<double>& c = q < half ? c0 : c1;
            for (int64_t h = 0; h < H; ++h) c[h] += z(order[q], h);
          }
          for (int64_t h = 0; h < H; ++h)
            c0[h] /= static_cast<double>(half), c1[h] /= static_cast<double>(n - half);
          std::vector<int64_t> left(order.begin(), order.begin() + half);
          std::sort(left.begin(), left.end());
          if (left == previous) break;
          previous = std::move(left);
        }
      }
      // logit = dir . (x - mu) inv_sd - thr = (dir inv_sd) . x - (dir inv_sd) . mu - thr
      double bias = -thr;
      for (int64_t h = 0; h < H; ++h) {
        t.nw.row(node)[h] = static_cast<float>(dir[h] * inv_sd[h]);
        bias -= dir[h] * inv_sd[h] * mu[h];
      }
      t.nb.data[node] = static_cast<float>(bias);
      for (int64_t i = 0; i < n; ++i) {
        double s = bias;
        for (int64_t h = 0; h < H; ++h) s += dir[h] * inv_sd[h] * X[rows[i] * H + h];
        at[rows[i]] = 2 * node + 1 + (s >= 0.0 ? 1 : 0);
      }
    }
  }
}

// The token_split method's leaves: leaf j takes the l neurons that carry the most output energy on
// the tokens routed to it, sum_r a_ri^2 ||w2_i||^2 (ties by index), in index order.
std::vector<std::vector<int64_t>> strongest_neurons(const std::vector<float>& act, int64_t N,
                                                    int64_t I, const Tensor& w2,
                                                    const std::vector<int32_t>& routes, int64_t k,
                                                    int64_t l) {
  std::vector<double> row_sq(static_cast<size_t>(I), 0.0);
  for (int64_t i = 0; i < I; ++i)
    for (int64_t h = 0; h < w2.cols(); ++h)
      row_sq[i] += static_cast<double>(w2.row(i)[h]) * w2.row(i)[h];
  std::vector<std::vector<double>> energy(static_cast<size_t>(k),
                                          std::vector<double>(static_cast<size_t>(I), 0.0));
  for (int64_t r = 0; r < N; ++r)
    for (int64_t i = 0; i < I; ++i)
      energy[routes[r]][i] += static_cast<double>(act[r * I + i]) * act[r * I + i];
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    std::vector<int64_t> order(static_cast<size_t>(I));
    std::iota(order.begin(), order.end(), 0);
    const std::vector<double>& e = energy[j];
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t u, int64_t v) { return e[u] * row_sq[u] > e[v] * row_sq[v]; });
    members[j].assign(order.begin(), order.begin() + l);
    std::sort(members[j].begin(), members[j].end());
  }
  return members;
}

// Ridge least squares [W; b] = argmin ||[A, 1] [W; b] - Y||^2 + lambda ||W||^2 from the normal
// equations G = [A, 1]^T [A, 1] (m x m, m = l + 1) and R = [A, 1]^T Y (m x H), lambda = ridge x
// the mean of A^T A's diagonal (the bias unpenalised). Returns the (m, H) solution.
std::vector<double> ridge_solve(std::vector<double> G, std::vector<double> R, int64_t m, int64_t H,
                                double ridge) {
  const int64_t l = m - 1;
  double trace = 0;
  for (int64_t q = 0; q < l; ++q) trace += G[q * m + q];
  const double lambda =
      ridge * std::max(trace / static_cast<double>(std::max<int64_t>(l, 1)), 1e-12);
  for (int64_t q = 0; q < l; ++q) G[q * m + q] += lambda;
  G[l * m + l] += 1e-9 * std::max(G[l * m + l], 1.0);  // a leaf with tokens keeps it positive
  cholesky_factor(G, m);
  for (int64_t h = 0; h < H; ++h) cholesky_solve_factored(G, R.data() + h, m, H);
  return R;
}

// The token_split method's outputs: leaf j's W2_j and b2_j become the ridge least-squares fit
// of the dense outputs Y from its neurons' activations [A_j, 1] on the tokens routed to it
// (ridge_solve). ridge < 0: the penalty is chosen per leaf from kRidges by the error on every
// tenth of its tokens when fitted on the others, then refitted on all of them (few tokens per
// neuron need a strong penalty, many a weak one). A leaf no token reaches keeps the dense rows.
void refit_leaf_outputs(Context& ctx, const std::vector<float>& act, int64_t N, int64_t I,
                        const std::vector<std::vector<int64_t>>& members,
                        const std::vector<int32_t>& routes, const float* Y, int64_t H, float ridge,
                        LeafTensors& t) {
  static constexpr double kRidges[] = {1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  const auto k = static_cast<int64_t>(members.size());
  const int64_t l = t.w2.rows() / k, m = l + 1;
  for (int64_t j = 0; j < k; ++j) {
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < N; ++r)
      if (routes[r] == j) rows.push_back(r);
    const auto n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    // [A, 1] and Y of the leaf's tokens, every tenth one last (the check rows).
    const int64_t n_check = ridge < 0 ? n / 10 : 0, n_fit = n - n_check;
    std::vector<float> A(static_cast<size_t>(n * m)), Yj(static_cast<size_t>(n * H));
    for (int64_t i = 0, fit = 0, check = n_fit; i < n; ++i) {
      const bool is_check = n_check > 0 && i % 10 == 9;
      const int64_t dst = is_check ? check++ : fit++;
      for (int64_t q = 0; q < l; ++q) A[dst * m + q] = act[rows[i] * I + members[j][q]];
      A[dst * m + l] = 1.0f;
      std::copy(Y + rows[i] * H, Y + (rows[i] + 1) * H, Yj.begin() + dst * H);
    }
    // Normal equations of rows [lo, hi), in double.
    auto normal = [&](int64_t lo, int64_t hi, std::vector<double>& G, std::vector<double>& R) {
      std::vector<float> Gf(static_cast<size_t>(m * m)), Rf(static_cast<size_t>(m * H));
      gemm(ctx, true, false, m, m, hi - lo, 1.0f, A.data() + lo * m, m, A.data() + lo * m, m, 0.0f,
           Gf.data(), m);
      gemm(ctx, true, false, m, H, hi - lo, 1.0f, A.data() + lo * m, m, Yj.data() + lo * H, H, 0.0f,
           Rf.data(), H);
      G.assign(Gf.begin(), Gf.end());
      R.assign(Rf.begin(), Rf.end());
    };
    std::vector<double> G, R;
    normal(0, n_fit, G, R);
    double chosen = ridge < 0 ? kRidges[2] : ridge;
    if (n_check > 0) {
      double best = -1;
      std::vector<float> W(static_cast<size_t>(m * H)), P(static_cast<size_t>(n_check * H));
      for (const double r : kRidges) {
        const std::vector<double> sol = ridge_solve(G, R, m, H, r);
        std::copy(sol.begin(), sol.end(), W.begin());
        gemm(ctx, false, false, n_check, H, m, 1.0f, A.data() + n_fit * m, m, W.data(), H, 0.0f,
             P.data(), H);
        double e = 0;
        for (int64_t i = 0; i < n_check * H; ++i) {
          const double d = static_cast<double>(P[i]) - Yj[n_fit * H + i];
          e += d * d;
        }
        if (best < 0 || e < best) best = e, chosen = r;
      }
      normal(0, n, G, R);
    }
    const std::vector<double> sol = ridge_solve(G, R, m, H, chosen);
    for (int64_t q = 0; q < l; ++q)
      for (int64_t h = 0; h < H; ++h) t.w2.row(j * l + q)[h] = static_cast<float>(sol[q * H + h]);
    for (int64_t h = 0; h < H; ++h) t.b2.row(j)[h] = static_cast<float>(sol[l * H + h]);
  }
}

// Relative error ||block(x) - y|| / ||y|| of hard inference on rows [lo, hi).
double block_error(Context& ctx, FFBlock& b, const float* X, const float* Y, int64_t H, int64_t lo,
                   int64_t hi) {
  const int64_t n = hi - lo;
  if (n <= 0) return 0.0;
  std::vector<float> out(static_cast<size_t>(n * H));
  b.infer(ctx, X + lo * H, n, out.data(), nullptr);
  double e = 0, t = 0;
  for (int64_t i = 0; i < n * H; ++i) {
    const double d = static_cast<double>(out[i]) - Y[lo * H + i];
    e += d * d;
    t += static_cast<double>(Y[lo * H + i]) * Y[lo * H + i];
  }
  return std::sqrt(e / std::max(t, 1e-30));
}

// Trains a copy of `block` on rows [0, n_train) of (X, Y) (see ConvertOptions::distill_steps).
std::unique_ptr<FFBlock> distill_block(Context& ctx, const FFBlock& block, const float* X,
                                       const float* Y, int64_t H, int64_t n_train,
                                       const ConvertOptions& o, uint64_t seed) {
  Rng rng(seed);
  std::unique_ptr<FFBlock> t = make_ff_block(block.config(), rng);
  std::unique_ptr<FFBlock> src = block.clone();
  std::map<std::string, Tensor*> values;
  for (Param* p : src->params()) values[p->name] = &p->value;
  for (Param* p : t->params()) p->value = *values.at(p->name);
  double ysq = 0;
  for (int64_t i = 0; i < n_train * H; ++i) ysq += static_cast<double>(Y[i]) * Y[i];
  const double mean_sq = std::max(ysq / static_cast<double>(n_train), 1e-30);
  Optimizer opt({.kind = OptimizerKind::adam, .lr = o.distill_lr}, t->params());
  std::unique_ptr<FFCache> cache = t->make_cache();
  const int64_t B = o.distill_batch;
  std::vector<float> xb(static_cast<size_t>(B * H)), yb(static_cast<size_t>(B * H)),
      out(static_cast<size_t>(B * H)), dy(static_cast<size_t>(B * H));
  const FFTrainOptions mode{.hardened = !o.distill_soft};
  const float scale = static_cast<float>(2.0 / (static_cast<double>(B) * mean_sq));
  for (int64_t step = 0; step < o.distill_steps; ++step) {
    for (int64_t i = 0; i < B; ++i) {
      const auto r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_train)));
      std::copy(X + r * H, X + (r + 1) * H, xb.begin() + i * H);
      std::copy(Y + r * H, Y + (r + 1) * H, yb.begin() + i * H);
    }
    t->forward_train(ctx, xb.data(), B, out.data(), mode, rng, *cache);
    for (int64_t i = 0; i < B * H; ++i) dy[i] = scale * (out[i] - yb[i]);
    t->backward(ctx, xb.data(), B, dy.data(), o.distill_soft ? o.hardening : 0.0f, *cache, nullptr);
    opt.step();
  }
  t->prepare_inference({});
  return t;
}

}  // namespace

ConvertMethod parse_convert_method(const std::string& name) {
  if (name == "token-split") return ConvertMethod::token_split;
  if (name == "coactivation") return ConvertMethod::coactivation;
  throw Error("unknown conversion method '" + name + "' (token-split or coactivation)");
}

const char* convert_method_name(ConvertMethod m) {
  return m == ConvertMethod::token_split ? "token-split" : "coactivation";
}

BertFFSamples record_ff_samples(Context& ctx, const BertModel& m,
                                const std::vector<std::vector<int32_t>>& sequences,
                                int64_t max_tokens) {
  BertFFSamples s;
  s.x.resize(static_cast<size_t>(m.cfg.layers));
  s.y.resize(static_cast<size_t>(m.cfg.layers));
  Recorder rec;
  rec.s = &s;
  rec.H = m.cfg.hidden;
  std::vector<float> hidden;
  for (const auto& seq : sequences) {
    if (s.tokens >= max_tokens) break;
    const int64_t S = std::min<int64_t>(static_cast<int64_t>(seq.size()), m.cfg.max_seq);
    if (S == 0) continue;
    rec.take = std::min(S, max_tokens - s.tokens);
    hidden.resize(static_cast<size_t>(S * m.cfg.hidden));
    bert_encode(ctx, m, seq.data(), nullptr, 1, S, hidden.data(), nullptr, &rec);
    s.tokens += rec.take;
  }
  return s;
}

ConvertResult convert_dense_to_leaf(Context& ctx, const BertModel& dense,
                                    const std::vector<std::vector<int32_t>>& sequences,
                                    const ConvertOptions& o) {
  const BertConfig& dc = dense.cfg;
  if (dc.ff.kind != FFKind::ff || !dc.ff.output_bias)
    throw Error("convert: the model's feedforward blocks are " + dc.describe() +
                "; conversion needs dense ff blocks with biases (arch bert)");
  if (o.depth < 1 || o.depth > 10)
    throw Error("convert: depth = " + std::to_string(o.depth) + ": must be in [1, 10]");
  const int64_t H = dc.hidden, I = dc.ff.width, k = int64_t{1} << o.depth;
  if (I % k != 0)
    throw Error("convert: dense width " + std::to_string(I) +
                " is not divisible by 2^depth = " + std::to_string(k));
  const int64_t l = I / k, n_nodes = k - 1, D = o.depth;
  auto report = [&](double f, const std::string& what) {
    if (o.progress) o.progress(f, what);
  };

  const BertFFSamples samples = record_ff_samples(ctx, dense, sequences, o.max_tokens);
  const int64_t N = samples.tokens;
  if (N == 0) throw Error("convert: no tokens to sample (empty texts?)");
  report(0.05, "recorded " + std::to_string(N) + " tokens per layer");

  ConvertResult result;
  result.model = dense;
  result.model.cfg.ff = dense.cfg.ff;
  FFConfig& fc = result.model.cfg.ff;
  fc.kind = FFKind::leaf_fff;
  fc.depth = D;
  fc.leaf_width = l;
  fc.width = 0;
  fc.act = Activation::gelu;
  fc.output_bias = true;
  result.model.cfg.validate("converted model");

  std::vector<float> act(static_cast<size_t>(N * I));
  for (int64_t layer = 0; layer < dc.layers; ++layer) {
    const double t0 = now_seconds();
    const FFBlock& blk = *dense.layers[static_cast<size_t>(layer)].ff;
    const DenseBlock dense_block{block_param(blk, "w1"), block_param(blk, "b1"),
                                 block_param(blk, "w2"), block_param(blk, "b2")};
    const float* X = samples.x[static_cast<size_t>(layer)].data();
    const float* Y = samples.y[static_cast<size_t>(layer)].data();
    const std::string name = "layer " + std::to_string(layer);
    auto report_layer = [&](double part, const std::string& what) {
      report((layer + part) / static_cast<double>(dc.layers) * 0.95 + 0.05, name + ": " + what);
    };

    // Hidden activations of the dense block on the samples.
    gemm_inference(ctx, false, false, N, I, H, 1.0f, X, H, dense_block.w1.ptr(), I, 0.0f,
                   act.data(), I);
    parallel_for(ctx, N, [&](int64_t r) {
      float* a = act.data() + r * I;
      for (int64_t j = 0; j < I; ++j)
        a[j] = activate(Activation::gelu, a[j] + dense_block.b1.data[j]);
    });
    double ysq = 0;
    for (int64_t r = 0; r < N * H; ++r) ysq += static_cast<double>(Y[r]) * Y[r];

    LeafTensors t{Tensor({n_nodes, H}), Tensor({n_nodes}),  Tensor({H, k * l}),
                  Tensor({k * l}),      Tensor({k * l, H}), Tensor({k, H})};
    auto make_block = [&]() {
      std::map<std::string, Tensor> p = {{"nodes_w", t.nw}, {"nodes_b", t.nb}, {"w1", t.w1},
                                         {"b1", t.b1},      {"w2", t.w2},      {"b2", t.b2}};
      return make_ff_block_from(result.model.cfg.ff_config(), p,
                                "layers." + std::to_string(layer) + ".leaf");
    };
    std::unique_ptr<FFBlock> block;
    std::vector<float> out(static_cast<size_t>(N * H));
    std::vector<int32_t> routes, best;
    std::vector<float> err;
    double best_sq = 0;
    if (o.method == ConvertMethod::coactivation) {
      // 1-2. Leaves: co-activation groups of neurons, the dense block restricted to each.
      const std::vector<std::vector<int64_t>> members = coactivation_groups(ctx, act, N, I, k, o);
      restrict_leaves(dense_block, members, H, l, t);
      // 3. Each token's best leaf, every leaf's output bias the dense b2.
      best_sq = best_leaves(ctx, act, N, I, members, t, Y, H, best, err);
      report_layer(0.4, "leaves");
      // 4. Nodes, top down, on the tokens their fitted ancestors send them.
      fit_nodes_to_best_leaves(ctx, X, N, H, D, err, o, t, [&](int64_t d) {
        report_layer(0.4 + 0.5 * (d + 1) / static_cast<double>(D),
                     "nodes of level " + std::to_string(d));
      });
      block = make_block();
      block->infer(ctx, X, N, out.data(), &routes);
      if (o.fit_leaf_bias) {  // each leaf's least-squares output bias for the fitted routes
        fit_leaf_biases(out, routes, Y, N, H, t.b2);
        block = make_block();
        block->infer(ctx, X, N, out.data(), &routes);
      }
    } else {
      // The tree first: its nodes split the tokens; then each leaf's neurons and outputs.
      split_tokens(ctx, X, N, H, D, o, t);
      report_layer(0.3, "nodes");
      block = make_block();
      block->infer(ctx, X, N, out.data(), &routes);
      const std::vector<std::vector<int64_t>> members =
          strongest_neurons(act, N, I, dense_block.w2, routes, k, l);
      restrict_leaves(dense_block, members, H, l, t);
      refit_leaf_outputs(ctx, act, N, I, members, routes, Y, H, o.leaf_ridge, t);
      report_layer(0.8, "leaves");
      block = make_block();
      block->infer(ctx, X, N, out.data(), &routes);
      best_sq = best_leaves(ctx, act, N, I, members, t, Y, H, best, err);
    }
    LayerConvertStats st;
    st.tokens = N;
    double esq = 0;
    int64_t hits = 0;
    for (int64_t r = 0; r < N; ++r) {
      hits += routes[r] == best[r];
      for (int64_t h = 0; h < H; ++h) {
        const double dd = static_cast<double>(out[r * H + h]) - Y[r * H + h];
        esq += dd * dd;
      }
    }
    st.best_leaf_fraction = static_cast<double>(hits) / static_cast<double>(N);
    st.relative_error = std::sqrt(esq / std::max(ysq, 1e-30));
    st.best_relative_error = std::sqrt(best_sq / std::max(ysq, 1e-30));
    if (o.distill_steps > 0) {
      const int64_t n_train = std::max<int64_t>(1, N * 9 / 10);
      st.heldout_converted_error = block_error(ctx, *block, X, Y, H, n_train, N);
      std::unique_ptr<FFBlock> trained =
          distill_block(ctx, *block, X, Y, H, n_train, o, o.seed * 1000003u + layer);
      st.heldout_distilled_error = block_error(ctx, *trained, X, Y, H, n_train, N);
      if (st.heldout_distilled_error < st.heldout_converted_error) {
        st.distilled = true;
        block = std::move(trained);
      }
    }
    st.seconds = now_seconds() - t0;
    result.layers.push_back(st);
    result.model.layers[static_cast<size_t>(layer)].ff = std::move(block);
    report((layer + 1.0) / static_cast<double>(dc.layers) * 0.95 + 0.05,
           "layer " + std::to_string(layer) + " done");
  }
  return result;
}

}  // namespace fff
