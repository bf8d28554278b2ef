#include "gemm.hpp"

#include <cblas.h>

#include <atomic>
#include <cassert>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "convgemm/detail/check.hpp"
#include "shape_rules.hpp"

#if CONVGEMM_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#endif

namespace convgemm::detail {
namespace {

std::atomic<int64_t> g_calls{0};
std::atomic<int64_t> g_calls_with_threaded_blas{0};
std::atomic<int64_t> g_onednn_calls{0};

std::mutex g_blas_threads_mutex;
int g_single_thread_scopes = 0;  // guarded by g_blas_threads_mutex
int g_saved_blas_threads = 1;    // guarded by g_blas_threads_mutex

static_assert(std::numeric_limits<blasint>::max() >= kMaxGemmDimension,
              "the linked CBLAS cannot carry every GEMM dimension a valid shape allows");

blasint to_blas(int64_t value) {
  assert(value >= 0 && value <= kMaxGemmDimension);
  return static_cast<blasint>(value);
}

CBLAS_TRANSPOSE to_cblas(Transpose transpose) {
  return transpose == Transpose::yes ? CblasTrans : CblasNoTrans;
}

void openblas_sgemm(Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n, int64_t k,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) {
  if (openblas_get_num_threads() != 1) {
    g_calls_with_threaded_blas.fetch_add(1, std::memory_order_relaxed);
  }
  cblas_sgemm(CblasRowMajor, to_cblas(transpose_a), to_cblas(transpose_b), to_blas(m), to_blas(n),
              to_blas(k), /*alpha=*/1.0f, a, to_blas(lda), b, to_blas(ldb), beta, c, to_blas(ldc));
}

#if CONVGEMM_HAVE_ONEDNN
void onednn_sgemm(Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  g_onednn_calls.fetch_add(1, std::memory_order_relaxed);
  // Debian's oneDNN parallelizes with OpenMP, whose thread count is a per-thread setting: one
  // thread for this call, then the caller's (or the TBB worker's) setting back.
  const int saved_threads = omp_get_max_threads();
  if (saved_threads != 1) omp_set_num_threads(1);
  if (omp_get_max_threads() != 1) {
    g_calls_with_threaded_blas.fetch_add(1, std::memory_order_relaxed);
  }
  const dnnl_status_t status = dnnl_sgemm(transpose_a == Transpose::yes ? 'T' : 'N',
                                          transpose_b == Transpose::yes ? 'T' : 'N', m, n, k,
                                          /*alpha=*/1.0f, a, lda, b, ldb, beta, c, ldc);
  if (saved_threads != 1) omp_set_num_threads(saved_threads);
  // The plan validated the arguments, but oneDNN may still fail (out of memory for its packing
  // buffers): never leave C half-written without a word, in Release builds too.
  if (status != dnnl_success) {
    throw std::runtime_error(std::string("convgemm: dnnl_sgemm failed with status ") +
                             dnnl_status2str(status));
  }
}
#endif

}  // namespace

bool onednn_gemm_built() { return CONVGEMM_HAVE_ONEDNN; }

GemmLibrary configured_explicit_gemm() {
  return CONVGEMM_DEFAULT_GEMM_ONEDNN ? GemmLibrary::onednn : GemmLibrary::openblas;
}

void sgemm(GemmLibrary library, Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n,
           int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
#if CONVGEMM_HAVE_ONEDNN
  if (library == GemmLibrary::onednn) {
    onednn_sgemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#else
  assert(library == GemmLibrary::openblas);
  (void)library;
#endif
  openblas_sgemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

SingleThreadedBlas::SingleThreadedBlas() {
  std::lock_guard lock(g_blas_threads_mutex);
  if (g_single_thread_scopes++ == 0) {
    g_saved_blas_threads = openblas_get_num_threads();
    if (g_saved_blas_threads != 1) openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  std::lock_guard lock(g_blas_threads_mutex);
  if (--g_single_thread_scopes == 0 && g_saved_blas_threads != 1) {
    openblas_set_num_threads(g_saved_blas_threads);
  }
}

GemmCounters gemm_counters() {
  return {g_calls.load(std::memory_order_relaxed),
          g_calls_with_threaded_blas.load(std::memory_order_relaxed),
          g_onednn_calls.load(std::memory_order_relaxed)};
}

void reset_gemm_counters() {
  g_calls.store(0, std::memory_order_relaxed);
  g_calls_with_threaded_blas.store(0, std::memory_order_relaxed);
  g_onednn_calls.store(0, std::memory_order_relaxed);
}

}  // namespace convgemm::detail
