// convgemm's plan on each GEMM backend (and in nhwc on the packed driver, and forward with kept
// weights), and the naive:: loops as the baseline, for the three passes.
#include <tbb/global_control.h>

#include "bench.hpp"
#include "convgemm/conv2d.hpp"
#include "convgemm/naive.hpp"

namespace convgemm::bench {

void bench_convgemm(benchmark::State& state, const Case& c) {
  progress_begin(c);
  // Both switches: the cap keeps oneTBB from using more, num_threads sizes the plan's slots.
  tbb::global_control cap(tbb::global_control::max_allowed_parallelism, size_t(c.threads));
  Conv2dShape shape = c.layer.shape;
  if (c.contender == Contender::convgemm_nhwc) shape.layout = Layout::nhwc;
  GemmBackend backend = GemmBackend::packed;
  if (c.contender == Contender::convgemm_onednn) backend = GemmBackend::onednn;
  if (c.contender == Contender::convgemm_openblas || !gemm_backend_available(backend)) {
    backend = GemmBackend::openblas;
  }
  if (!gemm_backend_available(backend)) {
    state.SkipWithError("convgemm was built without this GEMM backend");
    return;
  }
  const bool kept = c.contender == Contender::convgemm_kept_weights;
  Conv2d conv(
      shape,
      Conv2dOptions{.num_threads = c.threads, .gemm_backend = backend, .constant_weights = kept});
  Tensors& io = tensors_for(c.layer.shape);  // (the same sizes in either layout)
  const auto run = [&] {
    switch (c.pass) {
      case Pass::forward:
        conv.forward(io.x.data(), io.w.data(), io.bias.data(), io.y.data());
        break;
      case Pass::backward_data:
        conv.backward_data(io.dy.data(), io.w.data(), io.dx.data());
        break;
      case Pass::backward_weights:
        conv.backward_weights(io.x.data(), io.dy.data(), io.dw.data(), io.dbias.data());
        break;
    }
  };
  // One untimed call: oneDNN generates its GEMM kernels on first use (JIT), which would
  // otherwise land in the first repetition.
  run();
  for (auto _ : state) run();
  set_flop_counters(state, shape, c.pass);
  state.counters["workspace_bytes"] = double(conv.workspace_bytes());
  state.counters["threads_used"] = double(conv.num_threads());
}

void bench_naive(benchmark::State& state, const Case& c) {
  progress_begin(c);
  const Conv2dShape& shape = c.layer.shape;
  Tensors& io = tensors_for(shape);
  switch (c.pass) {
    case Pass::forward:
      for (auto _ : state)
        naive::conv2d_forward(shape, io.x.data(), io.w.data(), io.bias.data(), io.y.data());
      break;
    case Pass::backward_data:
      for (auto _ : state)
        naive::conv2d_backward_data(shape, io.dy.data(), io.w.data(), io.dx.data());
      break;
    case Pass::backward_weights:
      for (auto _ : state)
        naive::conv2d_backward_weights(shape, io.x.data(), io.dy.data(), io.dw.data(),
                                       io.dbias.data());
      break;
  }
  set_flop_counters(state, shape, c.pass);
}

}  // namespace convgemm::bench
