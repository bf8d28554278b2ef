#pragma once
// im2col and col2im: the lowering that turns a convolution into a GEMM.
//
// X_col layout, for one image and one group (the group's C/G input channels), row-major:
//   X_col[(c * KH + kh) * KW + kw][oh * OW + ow] = x[c][ih][iw]
//   with ih = oh * stride_height - pad_top  + kh * dilation_height,
//        iw = ow * stride_width  - pad_left + kw * dilation_width,
//   and 0 where (ih, iw) falls outside the image (the zero padding).
// So X_col is K x P with K = C/G*KH*KW and P = OH*OW: each column is one receptive field,
// flattened in the same (c, kh, kw) order as a row of the OIHW weight tensor.
//
// col2im is the adjoint (transpose) of im2col: every X_col entry is added back to the pixel it
// was read from, entries in the padding are dropped. Overlapping receptive fields therefore sum.

#include "convgemm/shape.hpp"

namespace convgemm {

// Writes X_col [K x P] of one image group `image` [C/G, H, W] (overwrites every entry).
// Throws std::invalid_argument if the shape is invalid or a pointer is null.
// Example: a 1x1 kernel with stride 1 and no padding gives X_col == image.
void im2col(const Conv2dShape& shape, const float* image, float* x_col);

// Adds X_col [K x P] into `image` [C/G, H, W] (accumulates: zero the image first to overwrite).
// Throws std::invalid_argument if the shape is invalid or a pointer is null.
void col2im(const Conv2dShape& shape, const float* x_col, float* image);

}  // namespace convgemm
