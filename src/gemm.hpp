#pragma once
// The library's only caller of a GEMM: a row-major single-precision GEMM on the BLAS backend,
// with the range of the BLAS integer type and the BLAS threading policy kept in one place.

#include <cstdint>

namespace convgemm::detail {

enum class Transpose : bool { no, yes };

// C [m x n] = op(A) [m x k] * op(B) [k x n] + beta * C, all row-major with the given leading
// dimensions. Dimensions must fit blas_int_max() (Conv2dShape::validate guarantees it).
void sgemm(Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n, int64_t k,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// The largest dimension the BLAS integer type of the linked CBLAS can carry.
int64_t blas_int_max();

// Keeps OpenBLAS single-threaded while at least one scope is alive, then restores the thread
// count it found. OpenBLAS's switch is process-wide (and the pthread build's thread pool would
// otherwise be entered from every TBB task at once, oversubscribing the cores), so scopes are
// reference-counted: concurrent plans nest safely, and the caller's own BLAS calls get their
// thread count back when the last plan call returns.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

// Counters for tests: GEMM calls made through sgemm(), and how many of them found the BLAS
// library running more than one thread (which the engine must never do).
struct GemmCounters {
  int64_t calls = 0;
  int64_t calls_with_threaded_blas = 0;
};
GemmCounters gemm_counters();
void reset_gemm_counters();

}  // namespace convgemm::detail
