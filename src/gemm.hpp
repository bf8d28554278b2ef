#pragma once
// The library's only caller of a GEMM: a row-major single-precision GEMM on the BLAS backend,
// with the range of the BLAS integer type and the BLAS threading policy kept in one place.

#include <cstdint>

namespace convgemm::detail {

enum class Transpose : bool { no, yes };

// The GEMM library of an explicit-path pass (the plan resolves conv2d.hpp's GemmBackend to it).
enum class GemmLibrary { openblas, onednn };

// Whether this build has oneDNN's dnnl_sgemm, and which library the configured default
// (CONVGEMM_GEMM_BACKEND) names for forward and backward_data on the explicit path.
bool onednn_gemm_built();
GemmLibrary configured_explicit_gemm();

// C [m x n] = op(A) [m x k] * op(B) [k x n] + beta * C, all row-major with the given leading
// dimensions, on `library`. Dimensions are at most kMaxGemmDimension (Conv2dShape::validate
// guarantees it). Runs on the calling thread only: OpenBLAS is kept single-threaded by a
// SingleThreadedBlas scope, oneDNN's OpenMP team is set to one thread for the call (the OpenMP
// setting is per thread, so it is saved and restored around each call).
void sgemm(GemmLibrary library, Transpose transpose_a, Transpose transpose_b, int64_t m, int64_t n,
           int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc);

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

// Counters for tests: GEMM calls made through sgemm(), how many of them found their library
// set to run more than one thread (which the engine must never do), how many ran on oneDNN.
struct GemmCounters {
  int64_t calls = 0;
  int64_t calls_with_threaded_blas = 0;
  int64_t onednn_calls = 0;  // of `calls`, those that ran on oneDNN
};
GemmCounters gemm_counters();
void reset_gemm_counters();

}  // namespace convgemm::detail
