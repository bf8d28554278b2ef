#include "gemm.hpp"
#include "kernels.hpp"

namespace convgemm::detail {

void backward_data_rows(GemmLibrary gemm, const Conv2dShape& s, const float* dy_group,
                        const float* w_group, int64_t oh_begin, int64_t oh_end, bool accumulate,
                        float* dx_group, float* scratch) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const ColumnBlock block{0, K, oh_begin, oh_end};
  const int64_t columns = block.columns(s), first_column = oh_begin * s.out_width();
  const float* dy_block = dy_group + first_column;

  if (is_pointwise(s)) {
    // dX_g is X_col's gradient itself: the GEMM writes it in place, no col2im.
    sgemm(gemm, Transpose::yes, Transpose::no, K, columns, M, w_group, /*lda=*/K, dy_block,
          /*ldb=*/P,
          /*beta=*/accumulate ? 1.0f : 0.0f, dx_group + first_column, /*ldc=*/P);
    return;
  }
  sgemm(gemm, Transpose::yes, Transpose::no, K, columns, M, w_group, /*lda=*/K, dy_block, /*ldb=*/P,
        /*beta=*/0.0f, scratch, /*ldc=*/columns);
  col2im_block(s, scratch, block, dx_group);
}

}  // namespace convgemm::detail
