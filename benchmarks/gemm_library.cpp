#include "gemm_library.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <stdexcept>
#include <string>

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

void require_openblas_cblas() {
  Dl_info info{};
  const bool found = dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) != 0;
  const std::string file = found && info.dli_fname != nullptr ? info.dli_fname : "(unknown)";
  if (file.find("openblas") == std::string::npos) {
    throw std::runtime_error("cblas_sgemm comes from " + file +
                             ", not OpenBLAS: the OpenBLAS columns would time another library");
  }
}

void set_library_threads(GemmLibrary library, int threads) {
  if (library == GemmLibrary::onednn) {
    onednn_set_threads(threads);
  } else if (library == GemmLibrary::openblas) {
    openblas_set_num_threads(threads);
  }  // BLIS's serial build has no threads to set
}

}  // namespace convgemm::bench
