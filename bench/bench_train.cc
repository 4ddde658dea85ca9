// Benchmark of training steps: where the time of one leaf FFF epoch goes (phase by phase, beside
// the sgemm floor of the same products), and neuron FFF cost per sample against depth.
// Usage: bench_train [--threads 1] [--repeats 5] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fff/cpu/gemm.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"
#include "fff/layers/loss.h"
#include "fff/training/optimizer.h"
#include "harness/timing.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr int64_t kIn = 784, kOut = 10, kRows = 54000, kBatch = 256;

struct Data {
  fff::Tensor x;
  std::vector<int32_t> y;
};

Data make_random_data(int64_t rows) {
  fff::Rng rng(3);
  Data d{fff::Tensor({rows, kIn}), std::vector<int32_t>(static_cast<size_t>(rows))};
  for (float& v : d.x.data) v = rng.normal();
  for (auto& v : d.y) v = static_cast<int32_t>(rng.below(kOut));
  return d;
}

struct Phases {
  double gather = 0, forward = 0, loss = 0, backward = 0, step = 0;
  double total() const { return gather + forward + loss + backward + step; }
};

// One epoch of leaf FFF training (w=128, leaf width 8, depth 4, SGD), timed by phase.
Phases leaf_epoch(fff::Context& ectx, const Data& d) {
  fff::Rng rng(1);
  fff::LeafFFF m = fff::make_leaf_fff({kIn, kOut, 4, 8, fff::Activation::relu}, rng);
  fff::Optimizer opt({fff::OptimizerKind::sgd, 0.05f}, m.params());
  fff::LeafFFFContext ctx;
  fff::Tensor xb({kBatch, kIn}), logits({kBatch, kOut}), dl({kBatch, kOut});
  std::vector<int32_t> yb(kBatch);
  std::vector<int64_t> order(kRows);
  for (int64_t i = 0; i < kRows; ++i) order[i] = (i * 7919) % kRows;
  Phases p;
  for (int64_t s = 0; s < kRows; s += kBatch) {
    const int64_t B = std::min(kBatch, kRows - s);
    auto t = Clock::now();
    for (int64_t i = 0; i < B; ++i) {
      std::copy_n(d.x.row(order[s + i]), kIn, xb.row(i));
      yb[i] = d.y[order[s + i]];
    }
    p.gather += since(t);
    t = Clock::now();
    fff::leaf_fff_forward_train(ectx, m, xb.ptr(), B, logits.ptr(), {}, ctx);
    p.forward += since(t);
    t = Clock::now();
    fff::softmax_cross_entropy(logits.ptr(), yb.data(), B, kOut, dl.ptr(), nullptr);
    p.loss += since(t);
    t = Clock::now();
    fff::leaf_fff_backward_train(ectx, m, xb.ptr(), B, dl.ptr(), 3.0f, ctx, nullptr);
    p.backward += since(t);
    t = Clock::now();
    opt.step();
    p.step += since(t);
  }
  return p;
}

// The two big products of that epoch alone: [x] (B, 784) x (784, 144) and its weight gradient.
double sgemm_floor(fff::Context& ectx, const Data& d) {
  const int64_t N = 144;
  fff::Tensor w({kIn, N}), z({kBatch, N}), dw({kIn, N});
  auto t = Clock::now();
  for (int64_t s = 0; s + kBatch <= kRows; s += kBatch) {
    fff::gemm(ectx, false, false, kBatch, N, kIn, 1.0f, d.x.row(s), kIn, w.ptr(), N, 0.0f, z.ptr(),
              N);
    fff::gemm(ectx, true, false, kIn, N, kBatch, 1.0f, d.x.row(s), kIn, z.ptr(), N, 0.0f, dw.ptr(),
              N);
  }
  return since(t);
}

// Seconds per sample of neuron FFF forward + backward + SGD step at depth D.
double neuron_step_seconds(fff::Context& ectx, const Data& d, int64_t depth, int64_t rows) {
  fff::Rng rng(2);
  fff::NeuronFFF m = fff::make_neuron_fff({kIn, kOut, 1, depth, fff::Activation::gelu, true}, rng);
  fff::Optimizer opt({fff::OptimizerKind::sgd, 0.05f}, m.params());
  fff::NeuronFFFContext ctx;
  fff::Tensor logits({kBatch, kOut}), dl({kBatch, kOut});
  auto t = Clock::now();
  for (int64_t s = 0; s + kBatch <= rows; s += kBatch) {
    fff::neuron_fff_forward(ectx, m, d.x.row(s), kBatch, logits.ptr(), &ctx);
    fff::softmax_cross_entropy(logits.ptr(), d.y.data() + s, kBatch, kOut, dl.ptr(), nullptr);
    fff::neuron_fff_backward(ectx, m, d.x.row(s), kBatch, dl.ptr(), ctx, nullptr);
    opt.step();
  }
  return since(t) / static_cast<double>(rows / kBatch * kBatch);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::stoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc)
      repeats = std::stoi(argv[++i]);
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s (flags: --threads N --repeats N --json)\n",
                   a.c_str());
      return 1;
    }
  }
  fff::Context ectx(threads);
  const Data d = make_random_data(kRows);
  leaf_epoch(ectx, d);  // warm-up
  std::vector<Phases> ph;
  std::vector<double> floor;
  for (int r = 0; r < repeats; ++r) {
    ph.push_back(leaf_epoch(ectx, d));
    floor.push_back(sgemm_floor(ectx, d));
  }
  std::sort(ph.begin(), ph.end(), [](auto& a, auto& b) { return a.total() < b.total(); });
  const Phases p = ph[ph.size() / 2];
  const double floor_s = fff::bench::summarize(floor).median;
  const int64_t depths[] = {4, 8, 12};
  double neuron_us[3];
  for (int k = 0; k < 3; ++k) {
    neuron_step_seconds(ectx, d, depths[k], 4096);  // warm-up
    std::vector<double> v;
    for (int r = 0; r < repeats; ++r) v.push_back(neuron_step_seconds(ectx, d, depths[k], 16384));
    neuron_us[k] = fff::bench::summarize(v).median * 1e6;
  }
  if (json) {
    std::printf(
        "{\"threads\":%d,\"repeats\":%d,\"leaf_epoch_seconds\":%.4f,\"gather\":%.4f,"
        "\"forward\":%.4f,\"loss\":%.4f,\"backward\":%.4f,\"optimizer\":%.4f,"
        "\"sgemm_floor_seconds\":%.4f,\"neuron_us_per_sample\":{\"4\":%.3f,\"8\":%.3f,\"12\":%.3f}}"
        "\n",
        threads, repeats, p.total(), p.gather, p.forward, p.loss, p.backward, p.step, floor_s,
        neuron_us[0], neuron_us[1], neuron_us[2]);
    return 0;
  }
  std::printf(
      "leaf FFF w=128 leaf=8 (d=4), one epoch of %lld rows, batch %lld, %d thread(s), "
      "median of %d\n",
      (long long)kRows, (long long)kBatch, threads, repeats);
  std::printf(
      "  total     %.4f s\n  gather    %.4f s\n  forward   %.4f s\n  loss      %.4f s\n"
      "  backward  %.4f s\n  optimizer %.4f s\n",
      p.total(), p.gather, p.forward, p.loss, p.backward, p.step);
  std::printf("  the two big sgemms alone (784x144 forward and weight gradient): %.4f s\n",
              floor_s);
  std::printf("neuron FFF (1 tree, in 784, out 10, GELU) forward+backward+SGD step per sample:\n");
  for (int k = 0; k < 3; ++k)
    std::printf("  depth %2lld (%2lld nodes on the path): %.3f us\n", (long long)depths[k],
                (long long)depths[k] + 1, neuron_us[k]);
  return 0;
}
