#include "gemm_library.hpp"

#include <cblas.h>

namespace convgemm::bench {

const char* gemm_library_name(GemmLibrary library) {
  switch (library) {
    case GemmLibrary::onednn:
      return "oneDNN";
    case GemmLibrary::blis:
      return "BLIS";
    case GemmLibrary::openblas:
      break;
  }
  return "OpenBLAS";
}

void library_sgemm(GemmLibrary library, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                   int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                   float* c, int64_t ldc) {
  if (library == GemmLibrary::onednn) {
    onednn_sgemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (library == GemmLibrary::blis) {
    blis_sgemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // The layers' dimensions were validated against blasint by Conv2dShape::validate.
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
              /*alpha=*/1.0f, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

void set_library_threads(GemmLibrary library, int threads) {
  if (library == GemmLibrary::onednn) {
    onednn_set_threads(threads);
  } else if (library == GemmLibrary::openblas) {
    openblas_set_num_threads(threads);
  }  // BLIS's serial build has no threads to set
}

}  // namespace convgemm::bench
