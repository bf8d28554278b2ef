// Direct depthwise kernels (see kernels.hpp for why they are not GEMMs).
//
// Each task first copies its input plane into the slot's scratch with the zero padding written
// out (a PaddedPlane), so that every output reads its taps without bounds checks, and with the
// columns of a strided convolution de-interleaved by phase, so that the taps of eight
// neighbouring outputs are eight neighbouring floats. Outputs are then computed eight columns
// by a few rows at a time with all KH*KW taps accumulated in registers (each loaded input
// vector feeding every output row of the block that reads it). Sums run in tap order for every
// output, so results do not depend on threads, on the vector width or on the row blocking.
//
// The pieces live in headers with one job each: depthwise_plane.hpp (the vector type and the
// padded plane copies), depthwise_taps.hpp (the correlations for forward and stride-1
// backward_data), depthwise_stride_two.hpp (the stride-2 backward_data gather). This file holds
// the three public kernels, compiled twice by target_clones, and what only they use.
#include <algorithm>

#include "convgemm/detail/check.hpp"
#include "depthwise_plane.hpp"
#include "depthwise_stride_two.hpp"
#include "depthwise_taps.hpp"
#include "kernels.hpp"

namespace convgemm::detail {
namespace {

using namespace depthwise;

// The kernels are compiled twice, for AVX2+FMA and for the baseline; the loader picks the one
// this CPU runs, so the library itself stays portable (no -march).
#define CONVGEMM_PLANE_KERNEL [[gnu::target_clones("arch=x86-64-v3", "default")]]

int64_t extent(int64_t kernel, int64_t dilation) { return (kernel - 1) * dilation + 1; }

// Forward reads x at ih = oh*sh - pt + kh*dh: padded rows start at input row -pt.
PaddedPlane forward_geometry(const Conv2dShape& s) {
  return padded_geometry(s.out_height(), s.out_width(), s.stride_height, s.stride_width,
                         extent(s.kernel_height, s.dilation_height),
                         extent(s.kernel_width, s.dilation_width), -s.pad_top, -s.pad_left);
}

// Stride-1 backward_data gathers dy at oh = ih + pt - kh*dh: the flipped kernel over dy padded
// to start at output row pt - (KH-1)*dh.
PaddedPlane gather_geometry(const Conv2dShape& s) {
  return padded_geometry(s.in_height, s.in_width, 1, 1, extent(s.kernel_height, s.dilation_height),
                         extent(s.kernel_width, s.dilation_width),
                         s.pad_top - (s.kernel_height - 1) * s.dilation_height,
                         s.pad_left - (s.kernel_width - 1) * s.dilation_width);
}

bool gathers(const Conv2dShape& s) { return s.stride_height == 1 && s.stride_width == 1; }

// Any other stride: scatter each dy row through each tap (no output pixel is written by two
// taps of the same row, so the inner loop has no dependence).
void scatter(const Conv2dShape& s, const float* dy_plane, const float* filter, float* dx_plane) {
  const int64_t OH = s.out_height(), OW = s.out_width(), H = s.in_height, W = s.in_width;
  const int64_t KH = s.kernel_height, KW = s.kernel_width;
  for (int64_t kh = 0; kh < KH; ++kh) {
    for (int64_t kw = 0; kw < KW; ++kw) {
      const TapRange t = tap_range(s, kw);
      const float weight = filter[kh * KW + kw];
      for (int64_t oh = 0; oh < OH && t.ow_begin < t.ow_end; ++oh) {
        const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
        if (ih < 0 || ih >= H) continue;
        float* dx_row = dx_plane + ih * W + t.iw_offset;
        const float* dy_row = dy_plane + oh * OW;
        for (int64_t ow = t.ow_begin; ow < t.ow_end; ++ow) {
          dx_row[ow * s.stride_width] += weight * dy_row[ow];
        }
      }
    }
  }
}

}  // namespace

bool depthwise_scratch_is_modest(const Conv2dShape& s) {
  // Upper bounds of the three geometries below, in double so that extreme fields (a stride or
  // dilation near 2^63) cannot overflow while they are estimated.
  const double OH = double(s.out_height()), OW = double(s.out_width());
  const double H = double(s.in_height), W = double(s.in_width);
  const double eh = double(s.kernel_height - 1) * double(s.dilation_height) + 1;
  const double ew = double(s.kernel_width - 1) * double(s.dilation_width) + 1;
  double floats = ((OH - 1) * double(s.stride_height) + eh) *
                  ((OW + kLanes) * double(s.stride_width) + ew);  // forward
  floats = std::max(floats, (H + eh) * (W + kLanes + ew));        // stride-1 gather
  floats = std::max(floats, ((H + double(s.pad_top)) / 2 + double(s.kernel_height) + 1) *
                                (W + double(s.pad_left) + double(s.kernel_width) + 4 * kLanes));
  constexpr double kSlackFloats = 4096;  // small planes: a few vectors of padding are fine
  return floats <= 4 * (H * W + OH * OW) + kSlackFloats;
}

int64_t depthwise_scratch_floats(const Conv2dShape& s) {
  const PaddedPlane forward = forward_geometry(s);
  int64_t floats = forward.scratch_floats();
  if (gathers(s)) {
    const PaddedPlane gather = gather_geometry(s);
    floats = std::max(floats, gather.scratch_floats());
  }
  if (uses_stride_two_gather(s)) {
    const PaddedPlane gather = stride_two_geometry(s);
    floats = std::max(floats, gather.scratch_floats());
  }
  return floats;
}

CONVGEMM_PLANE_KERNEL void depthwise_forward_plane(const Conv2dShape& s, const float* x_plane,
                                                   const float* filter, const float* bias,
                                                   bool accumulate, float* y_plane,
                                                   float* scratch) {
  const PaddedPlane p = forward_geometry(s);
  pad_plane(x_plane, s.in_height, s.in_width, p, scratch);
  if (accumulate && bias != nullptr) {  // y += bias + sum: the bias joins y first
    for (int64_t i = 0; i < s.out_height() * s.out_width(); ++i) y_plane[i] += *bias;
  }
  correlate</*kFlipped=*/false>(
      scratch, p,
      {filter, s.kernel_height, s.kernel_width, s.stride_height, s.dilation_height,
       s.dilation_width},
      {y_plane, s.out_height(), s.out_width(), accumulate, bias != nullptr ? *bias : 0.0f});
}

CONVGEMM_PLANE_KERNEL void depthwise_backward_data_plane(const Conv2dShape& s,
                                                         const float* dy_planes,
                                                         const float* filters, int64_t filter_count,
                                                         bool accumulate, float* dx_plane,
                                                         float* scratch) {
  const int64_t OH = s.out_height(), OW = s.out_width(), H = s.in_height, W = s.in_width;
  const int64_t KH = s.kernel_height, KW = s.kernel_width;
  if (gathers(s)) {
    // Stride 1: pixel (ih, iw) receives dy[ih + pt - kh*dh][iw + pl - kw*dw] through tap
    // (kh, kw), a correlation of the padded dy plane with the flipped filter.
    const PaddedPlane p = gather_geometry(s);
    for (int64_t f = 0; f < filter_count; ++f) {
      pad_plane(dy_planes + f * OH * OW, OH, OW, p, scratch);
      const Correlation k{filters + f * KH * KW, KH, KW, 1, s.dilation_height, s.dilation_width};
      correlate</*kFlipped=*/true>(scratch, p, k, {dx_plane, H, W, accumulate || f > 0, 0.0f});
    }
    return;
  }
  if (uses_stride_two_gather(s)) {
    const PaddedPlane p = stride_two_geometry(s);
    for (int64_t f = 0; f < filter_count; ++f) {
      pad_plane(dy_planes + f * OH * OW, OH, OW, p, scratch);
      gather_stride_two(s, scratch, p, filters + f * KH * KW, accumulate || f > 0, dx_plane);
    }
    return;
  }
  if (!accumulate) std::fill(dx_plane, dx_plane + H * W, 0.0f);
  for (int64_t f = 0; f < filter_count; ++f) {
    scatter(s, dy_planes + f * OH * OW, filters + f * KH * KW, dx_plane);
  }
}

// One dy vector per output row of a block of kRows rows at columns [ow, ow + 8): lanes past the
// row stay zero, so what they meet in x adds nothing.
template <int kRows>
[[gnu::always_inline]] inline void load_dy(Vec8 (&dy)[kRows], const float* dy_row, int64_t OW,
                                           int64_t ow) {
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    if (ow + kLanes <= OW) {
      load8(dy[r], dy_row + r * OW + ow);
    } else {
      load_partial(dy[r], dy_row + r * OW + ow, OW - ow);
    }
  }
}

// acc[tap] += the products of kRows output rows of dy with x, eight columns at a time.
// `window` is the padded x of the block's first output row. With a compile-time row step kStep
// (undilated rows) output row r's tap kh reads x row r * kStep + kh, so each x vector is loaded
// once for every (row, tap) that reads it; kStep = 0 reads at run-time steps. Either way each
// acc[tap] adds the block's rows in order r = 0, 1, ...
template <int kKH, int kKW, int kRows, int kStep>
[[gnu::always_inline]] inline void gradient_rows(Vec8 (&acc)[kKH * kKW], const float* window,
                                                 int64_t row_step, int64_t kernel_row_step,
                                                 const int64_t (&columns)[kKW], const float* dy_row,
                                                 int64_t OW) {
  for (int64_t ow = 0; ow < OW; ow += kLanes) {
    Vec8 dy[kRows];
    load_dy<kRows>(dy, dy_row, OW, ow);
    if constexpr (kStep > 0) {
#pragma GCC unroll 16
      for (int row = 0; row < (kRows - 1) * kStep + kKH; ++row) {
#pragma GCC unroll 8
        for (int kw = 0; kw < kKW; ++kw) {
          Vec8 values;
          load8(values, window + row * kernel_row_step + columns[kw] + ow);
#pragma GCC unroll 8
          for (int r = 0; r < kRows; ++r) {
            const int kh = row - r * kStep;
            if (kh >= 0 && kh < kKH) acc[kh * kKW + kw] += dy[r] * values;
          }
        }
      }
    } else {
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 8
        for (int kh = 0; kh < kKH; ++kh) {
#pragma GCC unroll 8
          for (int kw = 0; kw < kKW; ++kw) {
            Vec8 values;
            load8(values, window + r * row_step + kh * kernel_row_step + columns[kw] + ow);
            acc[kh * kKW + kw] += dy[r] * values;
          }
        }
      }
    }
  }
}

// The weight gradient of a fixed kKH x kKW filter: one vector of partial sums per tap, all kept in
// registers, so each dy vector is loaded once for every tap. Lanes hold sums over images, then
// blocks of kRows output rows (four undilated rows of stride 1 or 2, which share x loads; one
// otherwise, and for the rows left over), then every eighth column, then the rows of the block:
// a fixed order set by the shape alone. They are reduced in lane order at the end.
template <int kKH, int kKW, int kRows, int kStep>
[[gnu::always_inline]] inline void fixed_filter_gradient(const Conv2dShape& s, const PaddedPlane& p,
                                                         const float* x_channel,
                                                         int64_t x_image_stride,
                                                         const float* dy_channel,
                                                         int64_t dy_image_stride, bool accumulate,
                                                         float* dw_filter, float* scratch) {
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t row_stride = p.row_stride(), kernel_row_step = s.dilation_height * row_stride;
  const int64_t row_step = s.stride_height * row_stride;
  int64_t columns[kKW];
  for (int64_t kw = 0; kw < kKW; ++kw) columns[kw] = p.at(kw * s.dilation_width);
  Vec8 acc[kKH * kKW] = {};
  for (int64_t n = 0; n < s.batch; ++n) {
    pad_plane(x_channel + n * x_image_stride, s.in_height, s.in_width, p, scratch);
    const float* dy_plane = dy_channel + n * dy_image_stride;
    int64_t oh = 0;
    for (; oh + kRows <= OH; oh += kRows) {
      gradient_rows<kKH, kKW, kRows, kStep>(acc, scratch + oh * row_step, row_step, kernel_row_step,
                                            columns, dy_plane + oh * OW, OW);
    }
    for (; oh < OH; ++oh) {
      gradient_rows<kKH, kKW, 1, kStep>(acc, scratch + oh * row_step, row_step, kernel_row_step,
                                        columns, dy_plane + oh * OW, OW);
    }
  }
  for (int64_t tap = 0; tap < kKH * kKW; ++tap) {
    float sum = 0.0f;
    for (int64_t l = 0; l < kLanes; ++l) sum += acc[tap][l];
    dw_filter[tap] = accumulate ? dw_filter[tap] + sum : sum;
  }
}

CONVGEMM_PLANE_KERNEL void depthwise_backward_weights_filter(
    const Conv2dShape& s, const float* x_channel, int64_t x_image_stride, const float* dy_channel,
    int64_t dy_image_stride, bool accumulate, float* dw_filter, float* scratch) {
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t KH = s.kernel_height, KW = s.kernel_width;
  const int64_t sh = s.stride_height;
  const PaddedPlane p = forward_geometry(s);
  if (KH == 3 && KW == 3 && s.dilation_height == 1 && (sh == 1 || sh == 2)) {
    if (sh == 1) {
      fixed_filter_gradient<3, 3, 4, 1>(s, p, x_channel, x_image_stride, dy_channel,
                                        dy_image_stride, accumulate, dw_filter, scratch);
    } else {
      fixed_filter_gradient<3, 3, 4, 2>(s, p, x_channel, x_image_stride, dy_channel,
                                        dy_image_stride, accumulate, dw_filter, scratch);
    }
    return;
  }
  if (KH == 3 && KW == 3) {
    fixed_filter_gradient<3, 3, 1, 0>(s, p, x_channel, x_image_stride, dy_channel, dy_image_stride,
                                      accumulate, dw_filter, scratch);
    return;
  }
  if (KH == 5 && KW == 5) {
    fixed_filter_gradient<5, 5, 1, 0>(s, p, x_channel, x_image_stride, dy_channel, dy_image_stride,
                                      accumulate, dw_filter, scratch);
    return;
  }
  if (!accumulate) std::fill(dw_filter, dw_filter + KH * KW, 0.0f);
  // Per image, each tap's sum over the plane is one vector of partial sums, reduced in lane
  // order and added to dw: images, then lanes, in index order.
  for (int64_t n = 0; n < s.batch; ++n) {
    pad_plane(x_channel + n * x_image_stride, s.in_height, s.in_width, p, scratch);
    const float* dy_plane = dy_channel + n * dy_image_stride;
    for (int64_t kh = 0; kh < KH; ++kh) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        Vec8 acc = {};
        const int64_t tap_column = p.at(kw * s.dilation_width);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const float* dy_row = dy_plane + oh * OW;
          const float* src =
              scratch + (oh * sh + kh * s.dilation_height) * p.row_stride() + tap_column;
          Vec8 dy, values;
          int64_t ow = 0;
          for (; ow + kLanes <= OW; ow += kLanes) {
            load8(dy, dy_row + ow);
            load8(values, src + ow);
            acc += dy * values;
          }
          if (ow < OW) {  // lanes past the row are zero in dy, so what they read adds nothing
            load_partial(dy, dy_row + ow, OW - ow);
            load8(values, src + ow);
            acc += dy * values;
          }
        }
        float sum = 0.0f;
        for (int64_t l = 0; l < kLanes; ++l) sum += acc[l];
        dw_filter[kh * KW + kw] += sum;
      }
    }
  }
}

#undef CONVGEMM_PLANE_KERNEL

}  // namespace convgemm::detail
