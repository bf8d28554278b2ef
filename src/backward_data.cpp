#include "gemm.hpp"
#include "kernels.hpp"

namespace convgemm::detail {

void backward_data_rows(GemmLibrary gemm, const Conv2dShape& s, const float* dy_group,
                        const float* w_group, ChannelRange inputs, int64_t oh_begin, int64_t oh_end,
                        bool accumulate, float* dx_group, float* scratch) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  // The input channels' rows of X_col, (c, kh, kw) for c in the range: whole channels, so tasks
  // on different ranges scatter into different planes.
  const int64_t taps = s.kernel_height * s.kernel_width;
  const ColumnBlock block{inputs.begin * taps, inputs.end * taps, oh_begin, oh_end};
  const int64_t rows = block.k_end - block.k_begin;
  const int64_t columns = block.columns(s), first_column = oh_begin * s.out_width();
  const float* dy_block = dy_group + first_column;
  const float* w_columns = w_group + block.k_begin;  // W_g^T's rows are W_g's columns

  if (is_pointwise(s)) {
    // dX_g is X_col's gradient itself: the GEMM writes it in place, no col2im.
    sgemm(gemm, Transpose::yes, Transpose::no, rows, columns, M, w_columns, /*lda=*/K, dy_block,
          /*ldb=*/P, /*beta=*/accumulate ? 1.0f : 0.0f, dx_group + block.k_begin * P + first_column,
          /*ldc=*/P);
    return;
  }
  float* dx_col = scratch + block.k_begin * columns;  // this range's rows of the block
  sgemm(gemm, Transpose::yes, Transpose::no, rows, columns, M, w_columns, /*lda=*/K, dy_block,
        /*ldb=*/P, /*beta=*/0.0f, dx_col, /*ldc=*/columns);
  col2im_block(s, dx_col, block, dx_group);
}

}  // namespace convgemm::detail
