#include <algorithm>

#include "gemm.hpp"
#include "kernels.hpp"

namespace convgemm::detail {

ColumnView block_columns(const Conv2dShape& s, const float* x_group, int64_t oh_begin,
                         int64_t oh_end, float* scratch) {
  if (is_pointwise(s)) return {x_group + oh_begin * s.out_width(), s.gemm_p()};
  return {scratch, (oh_end - oh_begin) * s.out_width()};
}

void lower_share(const Conv2dShape& s, const float* x_group, int64_t oh_begin, int64_t oh_end,
                 int64_t share, int64_t shares, float* scratch) {
  if (is_pointwise(s)) return;
  const int64_t K = s.gemm_k();
  const ColumnBlock block{share * K / shares, (share + 1) * K / shares, oh_begin, oh_end};
  // Lowered right before the GEMM reads it, while it is hot in this core's cache.
  im2col_block(s, x_group, block, scratch + block.k_begin * block.columns(s));
}

void forward_rows(GemmLibrary gemm, const Conv2dShape& s, const ColumnView& x_col,
                  const float* w_group, const float* bias_group, ChannelRange outputs,
                  int64_t oh_begin, int64_t oh_end, bool accumulate, float* y_group) {
  const int64_t K = s.gemm_k(), P = s.gemm_p();
  const int64_t columns = (oh_end - oh_begin) * s.out_width();
  const int64_t rows = outputs.end - outputs.begin;
  float* y_block = y_group + outputs.begin * P + oh_begin * s.out_width();

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
        /*lda=*/K, x_col.data, x_col.ld, beta, y_block, /*ldc=*/P);
}

}  // namespace convgemm::detail
