// The execution context: calls leave the process's OpenMP and OpenBLAS thread counts and every
// thread's floating-point mode as they found them, run every computing thread in the context's
// mode, give the same results for any thread count, own their scratch, and refuse bad settings.
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/cpu/gemm.h"
#include "fff/cpu/scan.h"
#include "fff/engine/cmm.h"
#include "fff/models/bert.h"
#include "fff/models/classifier.h"
#include "fff/models/lm.h"
#include "fff/training/train.h"
#include "test_util.h"

namespace {

using fff_test::bitwise_equal;
using fff_test::random_vec;

#if defined(__SSE__)
constexpr unsigned kFlushBits = 0x8040;  // MXCSR FTZ (bit 15) and DAZ (bit 6)
// The control part of MXCSR (modes and exception masks), without the sticky exception flags
// (bits 0-5) that any arithmetic may raise.
unsigned csr() {
  return _mm_getcsr() & ~0x3fu;
}
void set_csr(unsigned v) {
  _mm_setcsr(v);
}
#else
unsigned csr() {
  return 0;
}
void set_csr(unsigned) {}
#endif

fff::Dataset tiny_dataset(int64_t n, int64_t in, int classes, uint64_t seed) {
  fff::Rng rng(seed);
  fff::Dataset d;
  d.num_classes = classes;
  d.x = fff::Tensor({n, in});
  for (float& v : d.x.data) v = rng.normal();
  for (int64_t i = 0; i < n; ++i) d.y.push_back(static_cast<int32_t>(rng.below(classes)));
  return d;
}

std::vector<fff::ModelConfig> model_configs() {
  fff::ModelConfig base;
  base.in = 12;
  base.out = 3;
  fff::ModelConfig ff = base, leaf = base, neuron = base;
  ff.kind = fff::ModelKind::ff, ff.width = 16;
  leaf.kind = fff::ModelKind::leaf_fff, leaf.depth = 2, leaf.leaf_width = 4;
  neuron.kind = fff::ModelKind::neuron_fff, neuron.trees = 2, neuron.depth = 3;
  neuron.act = fff::Activation::gelu;
  return {ff, leaf, neuron};
}

fff::BertConfig tiny_bert(fff::FFKind ff) {
  fff::BertConfig c;
  c.hidden = 24, c.layers = 2, c.heads = 3, c.vocab = 50, c.max_seq = 20;
  c.ff.kind = ff, c.ff.width = 40, c.ff.trees = 2, c.ff.depth = 3;
  return c;
}

fff::LmConfig tiny_lm(fff::ScanAlgo scan) {
  fff::LmConfig c;
  c.dim = 16, c.layers = 1, c.window = 2, c.mixer = fff::FFKind::leaf_fff;
  c.width = 32, c.leaf_width = 8, c.scan = scan;
  return c;
}

// Results of one call of every kind of entry point on ctx; used both to disturb the process's
// state and to compare thread counts. The LM's scan is the sequential one when comparing: the
// chunked scan splits time by the thread count, so its rounding depends on it.
std::vector<std::vector<float>> run_everything(fff::Context& ctx,
                                               fff::ScanAlgo lm_scan = fff::ScanAlgo::chunked) {
  std::vector<std::vector<float>> out;
  fff::Rng rng(3);
  // Train each classifier kind for an epoch, then predict.
  const fff::Dataset train = tiny_dataset(300, 12, 3, 1), val = tiny_dataset(40, 12, 3, 2);
  for (const fff::ModelConfig& cfg : model_configs()) {
    fff::Rng init(7);
    auto model = fff::make_model(cfg, init);
    fff::TrainOptions opt;
    opt.epochs = 1;
    opt.batch = 64;
    opt.optimizer.lr = 0.05f;
    fff::train_classifier(ctx, *model, train, val, opt);
    std::vector<float> logits(static_cast<size_t>(val.size() * cfg.out));
    model->predict(ctx, val.x.ptr(), val.size(), logits.data(), nullptr);
    out.push_back(logits);
    out.push_back({static_cast<float>(fff::accuracy(ctx, *model, val))});
  }
  // The CMM engine on both paths, at a batch that several threads split.
  const fff::NeuronFFF m =
      fff::make_neuron_fff(fff_test::neuron_config(32, 24, 2, 5, fff::Activation::gelu, true), rng);
  const int64_t B = 300;
  const auto x = random_vec(B * 32, rng);
  std::vector<float> yb(B * 24), yr(B * 24);
  fff::neuron_fff_infer_batched(ctx, m, x.data(), B, yb.data());
  fff::neuron_fff_infer_rowwise(ctx, m, x.data(), B, yr.data());
  out.push_back(yb);
  out.push_back(yr);
  // A BERT encode of each feedforward kind.
  for (fff::FFKind ff : {fff::FFKind::ff, fff::FFKind::neuron_fff}) {
    const fff::BertModel bert = fff::make_random_bert(tiny_bert(ff), 5);
    std::vector<int32_t> ids(2 * 17);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.below(50));
    std::vector<float> hidden(ids.size() * 24);
    fff::bert_encode(ctx, bert, ids.data(), nullptr, 2, 17, hidden.data());
    out.push_back(hidden);
  }
  // A language-model training step (QRNN, leaf FFF mixer).
  {
    fff::Rng lm_rng(9);
    fff::LmModel lm = fff::make_lm(tiny_lm(lm_scan), lm_rng);
    const int64_t T = 40, LB = 3;
    std::vector<int32_t> tokens(T * LB);
    for (int32_t& t : tokens) t = static_cast<int32_t>(lm_rng.below(256));
    fff::LmState state;
    fff::LmContext cache;
    std::vector<float> logits(T * LB * fff::LmConfig::kVocab),
        dlogits = random_vec(T * LB * fff::LmConfig::kVocab, lm_rng, 0.01f);
    fff::lm_forward(ctx, lm, tokens.data(), T, LB, state, true, logits.data(), cache);
    fff::lm_backward(ctx, lm, tokens.data(), dlogits.data(), 1.0f, cache);
    out.push_back(logits);
    out.push_back(std::vector<float>(lm.out_w.grad.data.begin(), lm.out_w.grad.data.end()));
  }
  // A scan on its own, long enough for the parallel algorithms to split time.
  {
    const int64_t T = 5000;
    std::vector<float> f(T), xs = random_vec(T, rng), h(T);
    for (float& v : f) v = rng.uniform(0.9f, 1.0f);
    fff::scan_forward(ctx, fff::ScanAlgo::blelloch, f.data(), xs.data(), T, 1, nullptr, h.data());
    out.push_back(h);
  }
  return out;
}

// Each worker's MXCSR in a region of `threads` threads, by thread number.
std::vector<unsigned> worker_csr(int threads) {
  std::vector<unsigned> v(static_cast<size_t>(threads), ~0u);
#pragma omp parallel num_threads(threads)
  v[static_cast<size_t>(omp_get_thread_num())] = csr();
  return v;
}

TEST(Context, CallsLeaveProcessStateAsTheyFoundIt) {
  const int saved_omp = omp_get_max_threads();
  const int saved_blas = openblas_get_num_threads();
  const unsigned saved_csr = csr();
  omp_set_num_threads(3);
  openblas_set_num_threads(2);
#if defined(__SSE__)
  const unsigned plain = csr() & ~kFlushBits;  // FTZ and DAZ off
  set_csr(plain);
#pragma omp parallel num_threads(2)
  set_csr(plain);
#endif
  const std::vector<unsigned> workers_before = worker_csr(2);

  fff::Context ctx(2);
  ASSERT_TRUE(ctx.flush_subnormals);
  run_everything(ctx);

  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(openblas_get_num_threads(), 2);
#if defined(__SSE__)
  EXPECT_EQ(csr(), plain);
#endif
  EXPECT_EQ(worker_csr(2), workers_before);
#if defined(__SSE__)
  for (unsigned w : workers_before) EXPECT_EQ(w & kFlushBits, 0u);
#endif

  // The same after a call that throws midway (a token outside the vocabulary).
  {
    fff::Rng rng(1);
    fff::LmModel lm = fff::make_lm(tiny_lm(fff::ScanAlgo::sequential), rng);
    std::vector<int32_t> tokens = {1, 2, 300};
    fff::LmState state;
    fff::LmContext cache;
    std::vector<float> logits(3 * fff::LmConfig::kVocab);
    EXPECT_THROW(fff::lm_forward(ctx, lm, tokens.data(), 3, 1, state, false, logits.data(), cache),
                 fff::Error);
  }
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(openblas_get_num_threads(), 2);
#if defined(__SSE__)
  EXPECT_EQ(csr(), plain);
#endif

  omp_set_num_threads(saved_omp);
  openblas_set_num_threads(saved_blas);
  set_csr(saved_csr);
}

#if defined(__SSE__)
// Products of 1e-20 and 1e-20 summed over 70 terms are about 7e-39, below the smallest normal
// float: with flush_subnormals every block of a product split over the threads gives zero, so
// every worker ran flushed; without it they stay subnormal, the caller's mode.
TEST(Context, EveryThreadOfACallRunsInTheContextsMode) {
  const unsigned saved_csr = csr();
  set_csr(_mm_getcsr() & ~kFlushBits);
  const int64_t M = 1024, N = 8, K = 70;  // four blocks of rows over two threads
  const std::vector<float> A(M * K, 1e-20f), B(K * N, 1e-20f);
  for (bool flush : {true, false}) {
    fff::Context ctx(2);
    ctx.flush_subnormals = flush;
    std::vector<float> C(M * N, 1.0f);
    fff::gemm(ctx, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    for (int64_t i = 0; i < M * N; ++i) {
      if (flush)
        ASSERT_EQ(C[i], 0.0f) << "row " << i / N;
      else
        ASSERT_GT(C[i], 0.0f) << "row " << i / N;
    }
  }
  EXPECT_EQ(csr() & kFlushBits, 0u);
  set_csr(saved_csr);
}
#endif

TEST(Context, OneAndThreeThreadsGiveTheSameResults) {
  fff::Context one(1), three(3);
  const auto a = run_everything(one, fff::ScanAlgo::sequential);
  const auto b = run_everything(three, fff::ScanAlgo::sequential);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "result " << i;
}

struct Counted {
  static int alive;
  std::vector<float> payload = std::vector<float>(1000);
  Counted() { ++alive; }
  ~Counted() { --alive; }
};
int Counted::alive = 0;

TEST(Context, WorkspaceIsOwnedByTheContext) {
  {
    fff::Context ctx(2);
    EXPECT_EQ(ctx.workspace.objects(), 0u);
    ctx.workspace.get<Counted>(0);
    ctx.workspace.reserve<Counted>(3);
    EXPECT_EQ(Counted::alive, 3);
    EXPECT_EQ(&ctx.workspace.get<Counted>(1), &ctx.workspace.get<Counted>(1));  // reused
    ctx.workspace.clear();
    EXPECT_EQ(Counted::alive, 0);
    ctx.workspace.get<Counted>(5);
    EXPECT_EQ(Counted::alive, 1);
  }
  EXPECT_EQ(Counted::alive, 0);  // released with the context

  // The engine and the encoder keep their scratch there; fresh contexts start empty and give
  // the same results as a reused one.
  fff::Rng rng(4);
  const fff::NeuronFFF m =
      fff::make_neuron_fff(fff_test::neuron_config(16, 8, 1, 4, fff::Activation::gelu, true), rng);
  const int64_t B = 200;
  const auto x = random_vec(B * 16, rng);
  const fff::BertModel bert = fff::make_random_bert(tiny_bert(fff::FFKind::neuron_fff), 2);
  std::vector<int32_t> ids(17, 3);
  fff::Context reused(2);
  std::vector<float> y_reused(B * 8), h_reused(17 * 24);
  for (int call = 0; call < 3; ++call) {
    fff::neuron_fff_infer_batched(reused, m, x.data(), B, y_reused.data());
    fff::bert_encode(reused, bert, ids.data(), nullptr, 1, 17, h_reused.data());
    fff::Context fresh(2);
    std::vector<float> y(B * 8), h(17 * 24);
    fff::neuron_fff_infer_batched(fresh, m, x.data(), B, y.data());
    EXPECT_GT(fresh.workspace.objects(), 0u);
    fff::bert_encode(fresh, bert, ids.data(), nullptr, 1, 17, h.data());
    EXPECT_TRUE(bitwise_equal(y, y_reused));
    EXPECT_TRUE(bitwise_equal(h, h_reused));
  }
  const size_t held = reused.workspace.objects();
  EXPECT_GE(held, 3u);  // routing state, a scratch slot per thread, the encoder's buffers
  fff::neuron_fff_infer_batched(reused, m, x.data(), B, y_reused.data());
  EXPECT_EQ(reused.workspace.objects(), held);  // nothing new per call
}

TEST(Context, RefusesBadThreadCounts) {
  for (int bad : {0, -1, fff::Context::kMaxThreads + 1}) {
    try {
      fff::Context ctx(bad);
      ADD_FAILURE() << "threads = " << bad << " accepted";
    } catch (const fff::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("threads"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
    }
  }
  // A field changed after construction is checked by the call.
  fff::Context ctx(1);
  ctx.threads = 0;
  const int saved_blas = openblas_get_num_threads();
  std::vector<float> a(4, 1.0f), c(4);
  EXPECT_THROW(
      fff::gemm(ctx, false, false, 2, 2, 2, 1.0f, a.data(), 2, a.data(), 2, 0.0f, c.data(), 2),
      fff::Error);
  EXPECT_EQ(openblas_get_num_threads(), saved_blas);
  ctx.threads = 1;
  fff::gemm(ctx, false, false, 2, 2, 2, 1.0f, a.data(), 2, a.data(), 2, 0.0f, c.data(), 2);
  EXPECT_EQ(c[0], 2.0f);
}

}  // namespace
