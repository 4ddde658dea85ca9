// Benchmark: the dense FF baseline (x W1 -> GELU -> W2, d=768, width 3072) through OpenBLAS sgemm
// (fff's dense path) and through oneDNN matmul with GELU fused, side by side, to pick the
// stronger one as `fff bench`'s baseline. Built only when oneDNN is installed (libdnnl-dev).
// Usage: bench_dense_backends [--batch 16384] [--threads 1] [--repeats 5]
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "fff/cpu/gemm.h"
#include "fff/layers/ff/dense_ff.h"
#include "harness/timing.h"

int main(int argc, char** argv) {
  int64_t batch = 16384, dim = 768, width = 3072;
  int threads = 1, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (a == "--batch")
      batch = v;
    else if (a == "--threads")
      threads = static_cast<int>(v);
    else if (a == "--repeats")
      repeats = static_cast<int>(v);
    else {
      std::fprintf(stderr, "bench_dense_backends: unknown flag %s\n", a.c_str());
      return 1;
    }
  }
  fff::Context ectx(threads);
  omp_set_num_threads(threads);  // oneDNN's OpenMP threads (fff's come from the context)
  fff::Rng rng(1);
  const fff::DenseFF ff = fff::make_dense_ff({dim, width, dim, fff::Activation::gelu}, rng);
  fff::Tensor x({batch, dim}), h({batch, width}), y({batch, dim}), y_dnnl({batch, dim});
  for (float& v : x.data) v = rng.normal();

  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  auto md = [](int64_t r, int64_t c) {
    return memory::desc({r, c}, memory::data_type::f32, memory::format_tag::ab);
  };
  dnnl::post_ops gelu;
  gelu.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(gelu);
  // fff stores W1 as (dim, width) and W2 as (width, dim), row-major, as oneDNN's ab.
  const memory::desc w1_md = md(dim, width), w2_md = md(width, dim);
  const dnnl::matmul::primitive_desc pd1(
      dnnl::matmul::desc(md(batch, dim), w1_md, md(1, width), md(batch, width)), attr, eng);
  const dnnl::matmul mm1(pd1);
  const dnnl::matmul mm2(dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(md(batch, width), w2_md, md(1, dim), md(batch, dim)), eng));
  memory xm(md(batch, dim), eng, x.ptr()), hm(md(batch, width), eng, h.ptr()),
      ym(md(batch, dim), eng, y_dnnl.ptr());
  memory w1m(w1_md, eng, const_cast<float*>(ff.w1.value.ptr())),
      b1m(md(1, width), eng, const_cast<float*>(ff.b1.value.ptr())),
      w2m(w2_md, eng, const_cast<float*>(ff.w2.value.ptr())),
      b2m(md(1, dim), eng, const_cast<float*>(ff.b2.value.ptr()));

  fff::DenseFFContext ctx;
  auto run_blas = [&] { fff::dense_ff_forward(ectx, ff, x.ptr(), batch, y.ptr(), &ctx); };
  auto run_dnnl = [&] {
    mm1.execute(
        stream,
        {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, w1m}, {DNNL_ARG_BIAS, b1m}, {DNNL_ARG_DST, hm}});
    mm2.execute(
        stream,
        {{DNNL_ARG_SRC, hm}, {DNNL_ARG_WEIGHTS, w2m}, {DNNL_ARG_BIAS, b2m}, {DNNL_ARG_DST, ym}});
    stream.wait();
  };
  // One warm-up round, then alternate the two.
  const fff::bench::SideBySide t = fff::bench::time_side_by_side(run_blas, run_dnnl, repeats);
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < y.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(y.data[i] - y_dnnl.data[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(y.data[i])));
  }
  const double per = 1e6 / static_cast<double>(batch);
  std::printf("dense FF %ld -> %ld -> %ld, batch %ld, %d thread(s), median of %d\n", dim, width,
              dim, batch, threads, repeats);
  std::printf("  openblas-sgemm        %8.2f us/token\n", t.a.median * per);
  std::printf("  onednn-matmul (%s)  %8.2f us/token\n", pd1.impl_info_str(), t.b.median * per);
  std::printf("  outputs agree to %.1e relative\n", diff / scale);
  return 0;
}
