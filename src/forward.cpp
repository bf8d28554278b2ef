#include <algorithm>

#include "gemm.hpp"
#include "kernels.hpp"

namespace convgemm::detail {

void forward_rows(GemmLibrary gemm, const Conv2dShape& s, const float* x_group,
                  const float* w_group, const float* bias_group, ChannelRange outputs,
                  int64_t oh_begin, int64_t oh_end, bool accumulate, float* y_group,
                  float* scratch) {
  const int64_t K = s.gemm_k(), P = s.gemm_p();
  const ColumnBlock block{0, K, oh_begin, oh_end};
  const int64_t columns = block.columns(s), first_column = oh_begin * s.out_width();
  const int64_t rows = outputs.end - outputs.begin;
  float* y_block = y_group + outputs.begin * P + first_column;

  // The block of X_col: the input planes themselves for a pointwise kernel (no copy at all),
  // otherwise lowered into the slot's scratch right before the GEMM reads it, while it is hot.
  const float* x_col = x_group + first_column;
  int64_t ld_x_col = P;
  if (!is_pointwise(s)) {
    im2col_block(s, x_group, block, scratch);
    x_col = scratch;
    ld_x_col = columns;
  }

  // The bias enters through the GEMM's beta: the block is filled with (or has added) the bias
  // first, so y is written once more rather than read back after the GEMM.
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias_group != nullptr) {
    for (int64_t m = 0; m < rows; ++m) {
      float* y_row = y_block + m * P;
      const float bias = bias_group[outputs.begin + m];
      if (accumulate) {
        for (int64_t j = 0; j < columns; ++j) y_row[j] += bias;
      } else {
        std::fill(y_row, y_row + columns, bias);
      }
    }
    beta = 1.0f;
  }
  sgemm(gemm, Transpose::no, Transpose::no, rows, columns, K, w_group + outputs.begin * K,
        /*lda=*/K, x_col, ld_x_col, beta, y_block, /*ldc=*/P);
}

}  // namespace convgemm::detail
