#pragma once
// The SGEMM libraries the suite times, behind one call: OpenBLAS's cblas_sgemm, oneDNN's
// dnnl_sgemm and BLIS's own bli_sgemm (its serial build, on the configuration convgemm's packed
// driver runs on). The rooflines and the classic composition use it; convgemm picks its own
// through Conv2dOptions::gemm_backend. Row-major, alpha = 1.

#include <cstdint>

namespace convgemm::bench {

enum class GemmLibrary { openblas, onednn, blis };

const char* gemm_library_name(GemmLibrary library);

// C[m x n] = op(A) * op(B) + beta * C, op = transpose when the flag is set.
void library_sgemm(GemmLibrary library, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                   int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                   float* c, int64_t ldc);

// Throws std::runtime_error unless cblas_sgemm is OpenBLAS's: BLIS exports one too, and a
// program that took BLIS's would time BLIS under OpenBLAS's name (cmake/convgemmFindBlis.cmake).
void require_openblas_cblas();

// The threads the library's next calls use, for the calling thread: openblas_set_num_threads
// (process-wide) or omp_set_num_threads (Debian's oneDNN runs on OpenMP, a per-thread setting).
void set_library_threads(GemmLibrary library, int threads);

// Defined with the oneDNN contenders (bench_onednn.cpp, or onednn_absent.cpp without oneDNN,
// where the suite registers no oneDNN case and these throw std::logic_error).
void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc);
void onednn_set_threads(int threads);

// Defined in blis_sgemm.cpp (blis_absent.cpp without BLIS, where no BLIS case is registered and
// it throws std::logic_error). Single-threaded: BLIS's serial build. blis_configuration() names
// the configuration it runs on ("skx", "haswell", ...), or "" without BLIS.
void blis_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
const char* blis_configuration();

}  // namespace convgemm::bench
