#include "gemm.hpp"

#include <cblas.h>

#include <atomic>
#include <cassert>
#include <limits>
#include <mutex>

namespace convgemm::detail {
namespace {

std::atomic<int64_t> g_calls{0};
std::atomic<int64_t> g_calls_with_threaded_blas{0};

std::mutex g_blas_threads_mutex;
int g_single_thread_scopes = 0;  // guarded by g_blas_threads_mutex
int g_saved_blas_threads = 1;    // guarded by g_blas_threads_mutex

blasint to_blas(int64_t value) {
  assert(value >= 0 && value <= blas_int_max());
  return static_cast<blasint>(value);
}

CBLAS_TRANSPOSE to_cblas(Transpose transpose) {
  return transpose == Transpose::yes ? CblasTrans : CblasNoTrans;
}

}  // namespace

int64_t blas_int_max() { return std::numeric_limits<blasint>::max(); }

void sgemm(Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n, int64_t k,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  if (openblas_get_num_threads() != 1) {
    g_calls_with_threaded_blas.fetch_add(1, std::memory_order_relaxed);
  }
  cblas_sgemm(CblasRowMajor, to_cblas(transpose_a), to_cblas(transpose_b), to_blas(m), to_blas(n),
              to_blas(k), /*alpha=*/1.0f, a, to_blas(lda), b, to_blas(ldb), beta, c, to_blas(ldc));
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
          g_calls_with_threaded_blas.load(std::memory_order_relaxed)};
}

void reset_gemm_counters() {
  g_calls.store(0, std::memory_order_relaxed);
  g_calls_with_threaded_blas.store(0, std::memory_order_relaxed);
}

}  // namespace convgemm::detail
