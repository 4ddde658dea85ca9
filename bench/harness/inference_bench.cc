// Side-by-side inference timing of a model against the dense FF of equal training width.
#include "harness/inference_bench.h"

#include <algorithm>

#include "core/parallel.h"
#include "fff/layers/ff/dense_ff.h"
#include "harness/timing.h"

namespace fff {

InferenceComparison compare_with_dense(Context& ctx, Model& model, const Tensor& x, int repeats) {
  const ModelConfig& c = model.config();
  if (x.cols() != c.in) throw Error("benchmark rows have the wrong width");
  CallScope scope(ctx);
  InferenceComparison r;
  r.rows = x.rows();
  r.dense_width = c.training_width();
  r.repeats = std::max(1, repeats);
  Rng rng(1234);
  const DenseFFConfig dc{c.in, r.dense_width, c.out, c.act};
  DenseFF dense = make_dense_ff(dc, rng);
  Tensor y_model({r.rows, c.out}), y_dense({r.rows, c.out});
  model.prepare_inference();
  // Both runs start from inputs just read, as they are when the layer before has produced them:
  // otherwise whichever runs second after the other's large working set meets colder inputs.
  volatile float sink = 0.0f;
  auto touch_inputs = [&] {
    float acc = 0.0f;
    for (int64_t i = 0; i < x.size(); i += 16) acc += x.data[i];
    sink = acc;
  };
  auto run_model = [&] { model.predict(ctx, x.ptr(), r.rows, y_model.ptr(), nullptr); };
  Tensor hidden;
  auto run_dense = [&] { dense_ff_infer(ctx, dense, x.ptr(), r.rows, y_dense.ptr(), hidden); };
  // One warm-up round (caches, page faults, thread start), then the two alternate.
  const bench::SideBySide t = bench::time_side_by_side(run_model, run_dense, r.repeats,
                                                       /*warmup=*/1, touch_inputs);
  const double rows = static_cast<double>(std::max<int64_t>(r.rows, 1));
  r.model_us_per_row = t.a.median * 1e6 / rows;
  r.dense_us_per_row = t.b.median * 1e6 / rows;
  r.speedup = r.dense_us_per_row / r.model_us_per_row;
  r.model_flops_per_row = c.inference_flops_per_row();
  r.dense_flops_per_row = dense_ff_flops_per_row(dc);
  return r;
}

}  // namespace fff
