#pragma once
// The per-task kernels of the three passes, one file each. A task is one image, one group and
// one block of output rows (the GEMM view is in convgemm/shape.hpp, the X_col layout in
// convgemm/im2col.hpp). Pointers arrive already offset to the image and group:
//   x_group  = x  + (n*C + g*C/G) * H*W      w_group = w + g*M*K      bias_group = bias + g*M
//   y_group  = y  + (n*O + g*M) * OH*OW      (and likewise dx, dw, dy)
// Shapes are validated by the caller; kernels neither allocate nor validate. `scratch` is the
// worker slot's column buffer (unused when the convolution is pointwise: see is_pointwise).

#include <cstdint>

#include "convgemm/shape.hpp"
#include "im2col.hpp"

namespace convgemm::detail {

// Y_g[:, rows] = W_g * X_col[:, rows] (+ bias), or += with accumulate.
void forward_rows(const Conv2dShape& shape, const float* x_group, const float* w_group,
                  const float* bias_group, int64_t oh_begin, int64_t oh_end, bool accumulate,
                  float* y_group, float* scratch);

// dX_g += col2im(W_g^T * dY_g[:, rows]). In the pointwise case the GEMM writes dX_g directly,
// overwriting it unless `accumulate`; otherwise dX_g must already hold zeros or the values to
// add to, because neighbouring row blocks scatter into the same pixels.
void backward_data_rows(const Conv2dShape& shape, const float* dy_group, const float* w_group,
                        int64_t oh_begin, int64_t oh_end, bool accumulate, float* dx_group,
                        float* scratch);

// dW_g[:, k_begin:k_end] = beta * dW_g[:, k_begin:k_end] + dY_g[:, rows] * X_col[k, rows]^T for
// the X_col rows and output rows of `block`.
void backward_weights_block(const Conv2dShape& shape, const float* x_group, const float* dy_group,
                            const ColumnBlock& block, float beta, float* dw_group, float* scratch);

// Sum of t[n, channel, :] over n and the plane, in index order, accumulated in double.
float channel_sum(const float* t, int64_t batch, int64_t channels, int64_t plane, int64_t channel);

}  // namespace convgemm::detail
