#pragma once
// The per-task kernels of the three passes, one file each. A task is one image, one group and
// one block of output rows (the GEMM view is in convgemm/shape.hpp, the X_col layout in
// convgemm/im2col.hpp). Pointers arrive already offset to the image and group:
//   x_group  = x  + (n*C + g*C/G) * H*W      w_group = w + g*M*K      bias_group = bias + g*M
//   y_group  = y  + (n*O + g*M) * OH*OW      (and likewise dx, dw, dy)
// Shapes are validated by the caller; kernels neither allocate nor validate. `scratch` is the
// worker slot's column buffer (unused when the convolution is pointwise: see is_pointwise);
// `gemm` the library the pass runs its GEMM on.

#include <cstdint>

#include "convgemm/shape.hpp"
#include "gemm.hpp"
#include "im2col.hpp"

namespace convgemm::detail {

// A task's share of the group's channels: output channels for forward, input channels for
// backward_data (the plan splits them only when images and row blocks give too few tasks).
struct ChannelRange {
  int64_t begin, end;
};

// A block of X_col as the GEMM reads it: `data` with leading dimension `ld`.
struct ColumnView {
  const float* data;
  int64_t ld;
};

// The block of X_col for output rows [oh_begin, oh_end): the input planes themselves for a
// pointwise kernel (no copy at all), otherwise `scratch`, once lower_share has filled it.
ColumnView block_columns(const Conv2dShape& shape, const float* x_group, int64_t oh_begin,
                         int64_t oh_end, float* scratch);

// Lowers share `share` of `shares` (near-equal ranges of X_col rows) of that block into
// `scratch`; nothing for a pointwise kernel. Shares write disjoint rows and may run in parallel.
void lower_share(const Conv2dShape& shape, const float* x_group, int64_t oh_begin, int64_t oh_end,
                 int64_t share, int64_t shares, float* scratch);

// Y_g[outputs, rows] = W_g[outputs, :] * x_col (+ bias), or += with accumulate, for the block
// of output rows [oh_begin, oh_end) that x_col (from block_columns) holds.
void forward_rows(GemmLibrary gemm, const Conv2dShape& shape, const ColumnView& x_col,
                  const float* w_group, const float* bias_group, ChannelRange outputs,
                  int64_t oh_begin, int64_t oh_end, bool accumulate, float* y_group);

// dX_g[inputs] += col2im(W_g[:, rows of inputs]^T * dY_g[:, rows]). In the pointwise case the
// GEMM writes dX_g directly, overwriting it unless `accumulate`; otherwise dX_g must already hold
// zeros or the values to add to, because neighbouring row blocks scatter into the same pixels.
// The product goes to the inputs' own rows of the block's column buffer `scratch` (K x block
// columns), so panels of one block can share it.
void backward_data_rows(GemmLibrary gemm, const Conv2dShape& shape, const float* dy_group,
                        const float* w_group, ChannelRange inputs, int64_t oh_begin, int64_t oh_end,
                        bool accumulate, float* dx_group, float* scratch);

// dW_g[m, k] = beta * dW_g[m, k] + dY_g[m, rows] * X_col[k, rows]^T for the output channels m in
// [m_begin, m_end) and the X_col rows k and output rows of `block`.
void backward_weights_block(GemmLibrary gemm, const Conv2dShape& shape, const float* x_group,
                            const float* dy_group, const ColumnBlock& block, int64_t m_begin,
                            int64_t m_end, float beta, float* dw_group, float* scratch);

// Sum of t[n, channel, p] over the steps s = n * plane + p in [begin, begin + steps), in double
// and in one fixed order whatever the thread: element p goes to lane p % 32, each lane adds in
// step order, then the lanes are added in a fixed tree. Steps 0 to batch * plane give the bias
// gradient; a chunk of them, a piece of it (packed backward_weights adds the pieces in order).
double channel_sum(const float* t, int64_t channels, int64_t plane, int64_t channel, int64_t begin,
                   int64_t steps);
// The same for channels [begin, begin + count) of t [rows, channels] (nhwc: rows are positions),
// count <= kChannelsPerSum, into sums[0, count): one chain per channel over the rows in order.
inline constexpr int64_t kChannelsPerSum = 64;
void channel_sums_nhwc(const float* t, int64_t rows, int64_t channels, int64_t begin, int64_t count,
                       double* sums);

}  // namespace convgemm::detail

namespace convgemm::detail {

// Depthwise convolution (in_channels == groups: every output channel reads one input channel,
// with O/G filters per channel), computed directly on the planes. As a GEMM it would be
// W_g [O/G x KH*KW] * X_col [KH*KW x P], a few matrix-vector products that no BLAS runs near
// peak; the direct loops keep eight outputs and all their taps in registers instead.
// Planes are [H, W] for x/dx and [OH, OW] for y/dy; a filter is [KH, KW]. `scratch` holds
// depthwise_scratch_floats(shape) floats (a zero-padded copy of one plane).
int64_t depthwise_scratch_floats(const Conv2dShape& shape);
// Whether that copy stays within a few times the planes it is made from. Extreme strides,
// dilations or paddings would make it huge (its width grows with the stride times the vector
// length and with the dilated kernel); such shapes take the GEMM path instead, whose im2col
// skips the padding without storing it. A rule on the shape only.
bool depthwise_scratch_is_modest(const Conv2dShape& shape);

// y_plane = bias + sum over (kh, kw) of filter[kh, kw] * the shifted input plane (bias may be
// null; with accumulate the sum is added to y_plane).
void depthwise_forward_plane(const Conv2dShape& shape, const float* x_plane, const float* filter,
                             const float* bias, bool accumulate, float* y_plane, float* scratch);

// dx_plane = sum over the channel's `filter_count` filters of each dy plane sent back through
// its filter; dy_planes and filters are consecutive. Adds instead with accumulate.
void depthwise_backward_data_plane(const Conv2dShape& shape, const float* dy_planes,
                                   const float* filters, int64_t filter_count, bool accumulate,
                                   float* dx_plane, float* scratch);

// dw_filter[kh, kw] = sum over images n and output positions of dy * shifted x, where image n's
// planes are x_channel + n * x_image_stride and dy_channel + n * dy_image_stride; the sum runs
// in index order (reproducible). Adds instead with accumulate.
void depthwise_backward_weights_filter(const Conv2dShape& shape, const float* x_channel,
                                       int64_t x_image_stride, const float* dy_channel,
                                       int64_t dy_image_stride, bool accumulate, float* dw_filter,
                                       float* scratch);

// Depthwise convolution in nhwc (depthwise_nhwc.cpp): direct loops along the channels (a tap of
// a pixel is a contiguous run of them), with the filters tap-major, [KH*KW][O], transposed once
// per call by depthwise_nhwc_tap_major into depthwise_nhwc_filter_floats floats. Images are
// [H, W, C] and [OH, OW, O]; accumulate adds to the output instead of overwriting it.
int64_t depthwise_nhwc_filter_floats(const Conv2dShape& shape);
// reversed: the taps in reverse order, for a backward_data that runs as a forward convolution.
void depthwise_nhwc_tap_major(const Conv2dShape& shape, const float* w, bool reversed,
                              float* filters);
// Output rows [oh_begin, oh_end) of one image: y = sum over taps (+ bias, which may be null).
void depthwise_nhwc_forward_rows(const Conv2dShape& shape, const float* x_image,
                                 const float* filters, const float* bias, bool accumulate,
                                 float* y_image, int64_t oh_begin, int64_t oh_end);
// Input rows [ih_begin, ih_end) of one image's dx, gathered from dy: where
// depthwise_nhwc_data_gradient_is_a_forward (stride 1, multiplier 1, every padding at most the
// dilated kernel's extent minus one), by the forward kernels on dy with the taps reversed (the
// filters from depthwise_nhwc_tap_major with reversed), so each dx sums its taps in reverse order.
bool depthwise_nhwc_data_gradient_is_a_forward(const Conv2dShape& shape);
void depthwise_nhwc_backward_data_rows(const Conv2dShape& shape, const float* dy_image,
                                       const float* filters, bool accumulate, float* dx_image,
                                       int64_t ih_begin, int64_t ih_end);
// dw and db, summed in depthwise_nhwc_weight_chunks chunks fixed by the shape (each a range of
// the batch's output rows, every channel; at most 16, their sums at most 1 MiB) so that the
// chunks run in parallel, then added in chunk order: chunk k's sums fill the
// depthwise_nhwc_chunk_floats floats at chunk_sums + k * that (db's only when with_bias), and
// depthwise_nhwc_add_weight_chunks writes dw = (dw if accumulating) + chunk 0 + chunk 1 + ...
// (overwriting chunk 0's sums), and, unless dbias is null, dbias = (dbias if accumulating) + the
// chunks' double sums.
int64_t depthwise_nhwc_weight_chunks(const Conv2dShape& shape);
int64_t depthwise_nhwc_chunk_floats(const Conv2dShape& shape);
void depthwise_nhwc_backward_weights_chunk(const Conv2dShape& shape, const float* x,
                                           const float* dy, int64_t chunk, bool with_bias,
                                           float* chunk_sums);
void depthwise_nhwc_add_weight_chunks(const Conv2dShape& shape, float* chunk_sums, bool accumulate,
                                      float* dw, float* dbias);

}  // namespace convgemm::detail
