// The GEMM roofline: SGEMM alone on the GEMM view of the layer (shape.hpp), as many calls as the
// convolution makes (N * G per pass), with the pass's transposes and no im2col/col2im:
//   forward           NN  [M x K] * [K x P]     -> [M x P]
//   backward_data     TN  [M x K]^T * [M x P]   -> [K x P]
//   backward_weights  NT  [M x P] * [K x P]^T   -> [M x K]  (accumulated, as over the batch)
// Operands are shared by all calls (each worker writes its own output), so whatever fits in
// cache stays there: an upper bound for what the convolution's GEMMs can reach. One roofline
// per GEMM library (OpenBLAS, oneDNN's dnnl_sgemm), each run two ways:
//   roofline_blas, roofline_onednn_omp   one call after the other, the library threaded to T
//   roofline_tbb, roofline_onednn_tbb    the calls spread over T oneTBB workers, the library
//                                        single-threaded in each (convgemm's own scheme)
//   roofline_blis_tbb                    BLIS's serial build, the calls over T oneTBB workers
// The summary reports the better of the two for each library.
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "bench.hpp"
#include "gemm_library.hpp"

namespace convgemm::bench {
namespace {

struct GemmCall {
  bool transpose_a, transpose_b;
  int64_t m, n, k, lda, ldb, ldc;
  float beta;
  int64_t a_elements, b_elements, c_elements;
};

GemmCall gemm_call(const Conv2dShape& shape, Pass pass) {
  const int64_t M = shape.gemm_m(), K = shape.gemm_k(), P = shape.gemm_p();
  switch (pass) {
    case Pass::forward:
      return {false, false, M, P, K, K, P, P, /*beta=*/0.0f, M * K, K * P, M * P};
    case Pass::backward_data:
      return {true, false, K, P, M, K, P, P, /*beta=*/0.0f, M * K, M * P, K * P};
    case Pass::backward_weights:
      return {false, true, M, K, P, P, P, K, /*beta=*/1.0f, M * P, K * P, M * K};
  }
  return {};
}

void run_gemm(GemmLibrary library, const GemmCall& g, const float* a, const float* b, float* c) {
  library_sgemm(library, g.transpose_a, g.transpose_b, g.m, g.n, g.k, a, g.lda, b, g.ldb, g.beta, c,
                g.ldc);
}

struct Operands {
  int index = -1;
  Buffer a, b;
  std::vector<Buffer> c_per_worker;  // one output per worker: no shared writes
};

}  // namespace

void bench_roofline(benchmark::State& state, const Case& c) {
  progress_begin(c);
  const Conv2dShape& shape = c.layer.shape;
  const GemmCall g = gemm_call(shape, c.pass);
  const int64_t calls = shape.batch * shape.groups;
  // The operands, kept between the runs of one benchmark (one per repetition) like the
  // convolution's inputs (tensors_for): filling them is not part of the measurement.
  static Operands operands;
  if (operands.index != c.index) {
    operands = Operands{};  // release the previous case's buffers first
    operands.index = c.index;
    operands.a.resize(size_t(g.a_elements));
    operands.b.resize(size_t(g.b_elements));
    fill_pattern(operands.a, 11);
    fill_pattern(operands.b, 12);
    operands.c_per_worker.assign(size_t(c.threads), Buffer(size_t(g.c_elements)));
  }
  const Buffer &a = operands.a, &b = operands.b;
  std::vector<Buffer>& c_per_worker = operands.c_per_worker;
  GemmLibrary library = GemmLibrary::openblas;
  if (c.contender == Contender::roofline_onednn_omp ||
      c.contender == Contender::roofline_onednn_tbb) {
    library = GemmLibrary::onednn;
  } else if (c.contender == Contender::roofline_blis_tbb) {
    library = GemmLibrary::blis;
  }
  if (c.contender == Contender::roofline_blas || c.contender == Contender::roofline_onednn_omp) {
    set_library_threads(library, c.threads);
    float* out = c_per_worker[0].data();
    run_gemm(library, g, a.data(), b.data(), out);  // untimed: oneDNN's JIT, thread start-up
    for (auto _ : state) {
      for (int64_t call = 0; call < calls; ++call) run_gemm(library, g, a.data(), b.data(), out);
    }
  } else {
    set_library_threads(library, 1);
    tbb::global_control cap(tbb::global_control::max_allowed_parallelism, size_t(c.threads));
    tbb::task_arena arena(c.threads);
    run_gemm(library, g, a.data(), b.data(), c_per_worker[0].data());  // untimed, as above
    for (auto _ : state) {
      arena.execute([&] {
        tbb::parallel_for(
            tbb::blocked_range<int64_t>(0, calls, 1),
            [&](const tbb::blocked_range<int64_t>& range) {
              const int worker = tbb::this_task_arena::current_thread_index();
              // OpenMP's thread count is per thread: each oneTBB worker sets its own.
              if (library == GemmLibrary::onednn) set_library_threads(library, 1);
              for (int64_t call = range.begin(); call != range.end(); ++call) {
                run_gemm(library, g, a.data(), b.data(), c_per_worker[size_t(worker)].data());
              }
            },
            tbb::simple_partitioner());
      });
    }
  }
  set_library_threads(library, 1);
  set_flop_counters(state, shape, c.pass);
  state.counters["gemm_calls"] = double(calls);
}

}  // namespace convgemm::bench
