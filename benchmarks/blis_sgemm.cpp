// BLIS's own SGEMM for the second roofline: its typed API on the configuration BLIS picks for
// this CPU itself (convgemm's packed driver may take another one: src/packed/micro_kernel.hpp).
#include <blis.h>

#include "gemm_library.hpp"

namespace convgemm::bench {

void blis_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  float one = 1.0f;
  // Row-major: the row stride is the leading dimension, the column stride 1.
  bli_sgemm(transpose_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
            transpose_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one, const_cast<float*>(a),
            lda, 1, const_cast<float*>(b), ldb, 1, &beta, c, ldc, 1);
}

const char* blis_configuration() { return bli_arch_string(bli_arch_query_id()); }

}  // namespace convgemm::bench
