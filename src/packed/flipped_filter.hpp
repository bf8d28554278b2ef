#pragma once
// backward_data of a stride-1 convolution is a forward convolution: the adjoint of a correlation
// is the correlation with the filter flipped. With kh' = KH-1-kh (and kw' likewise),
//   dx[c][h][w] = sum over o, kh', kw' of dy[o][h - pt' + kh'*dh][w - pl' + kw'*dw]
//                                         * W[o][c][KH-1-kh'][KW-1-kw'],
//   pt' = (KH-1)*dh - pt (and pb', pl', pr' likewise),
// a convolution of dy (O channels, OH x OW) into dx (C channels, H x W) whose filter W' swaps
// each group's input and output channels and reverses the taps. Run on the forward packed path,
// it writes each dx element once, straight from the tile (no dX_col block, no col2im), with the
// forward path's contract: an element's operations depend on the shape and the kernel only.
// It needs every pad' >= 0: each padding at most the dilated kernel's extent minus one.

#include <cstdint>

#include "convgemm/shape.hpp"

namespace convgemm::detail {

// Whether the identity holds for `s`: stride 1 and every padding at most (kernel - 1) *
// dilation (the depthwise nhwc kernels use it too).
bool data_gradient_fits_a_forward(const Conv2dShape& s);

// Whether the packed backward_data of `s` runs as that forward convolution: the identity holds
// and there are at least 32 input channels per group (the forward convolution's outputs). A rule on
// the shape alone, so the route never depends on the batch. (An nchw pointwise shape's dX_col is dX
// itself, but the forward convolution's tasks split its positions, which share the packed filter,
// where channel ranges would each pack all of dy.)
bool data_gradient_is_a_forward(const Conv2dShape& s);

// The forward convolution above, for a shape data_gradient_fits_a_forward accepts: batch, groups,
// kernel, dilation and layout of `s`; dy's sizes as the input, s's input as the output.
Conv2dShape data_gradient_forward_shape(const Conv2dShape& s);

// W'_g as the weight operand of that forward convolution (packed_gemm.hpp's PanelOperand):
// lanes are group g's input channels c, steps the rows k' of W' (nchw: (o, kh', kw'); nhwc,
// OHWI: (kh', kw', o)), entry (c, k') = the original filter's W_g[o][c][KH-1-kh'][KW-1-kw'].
struct FlippedFilter {
  const Conv2dShape* shape;  // the original convolution's
  const float* w_group;      // its filter's group g: O/G rows of C/G * KH * KW floats
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};

}  // namespace convgemm::detail
