// Direct depthwise kernels (see kernels.hpp for why they are not GEMMs).
//
// Each task first copies its input plane into the slot's scratch with the zero padding written
// out (a PaddedPlane), so that every output reads its taps without bounds checks, and with the
// columns of a strided convolution de-interleaved by phase, so that the taps of eight
// neighbouring outputs are eight neighbouring floats. Outputs are then computed eight at a time
// with all KH*KW taps accumulated in registers. Sums run in tap order for every output, so
// results do not depend on threads or on the vector width.
#include <algorithm>
#include <cstring>

#include "check.hpp"
#include "kernels.hpp"

namespace convgemm::detail {
namespace {

constexpr int64_t kLanes = 8;
// Eight floats in one GCC vector: one AVX register in the x86-64-v3 clone, two SSE registers in
// the baseline one. memcpy keeps unaligned loads and stores well-defined.
using Vec8 = float __attribute__((vector_size(kLanes * sizeof(float))));

// The kernels are compiled twice, for AVX2+FMA and for the baseline; the loader picks the one
// this CPU runs, so the library itself stays portable (no -march).
#define CONVGEMM_PLANE_KERNEL [[gnu::target_clones("arch=x86-64-v3", "default")]]

// A zero-padded copy of a plane: logical element [r][c] = plane[r + row_origin][c +
// column_origin], or 0 outside the plane. Rows and columns cover every tap of every output, with
// the output width rounded up to whole vectors so that the last vector reads zeros, not past the
// buffer. A row is stored as `phases` runs (the correlation's column step): column c at
// (c % phases) * phase_columns + c / phases, so output j's tap at column j * phases + offset
// sits at at(offset) + j, contiguous in j.
struct PaddedPlane {
  int64_t rows, columns, row_origin, column_origin, phases, phase_columns;
  int64_t row_stride() const { return phases * phase_columns; }
  int64_t at(int64_t column) const { return column % phases * phase_columns + column / phases; }
};

// The padded plane a correlation with these steps and dilations needs to produce `out_rows` x
// `out_columns` outputs, reading tap (kh, kw) of output (i, j) at padded[i*step_h + kh*dil_h]
// [j*step_w + kw*dil_w].
PaddedPlane padded_geometry(int64_t out_rows, int64_t out_columns, int64_t step_h, int64_t step_w,
                            int64_t extent_h, int64_t extent_w, int64_t row_origin,
                            int64_t column_origin) {
  const int64_t vector_columns = ceil_div(out_columns, kLanes) * kLanes;
  const int64_t columns = (vector_columns - 1) * step_w + extent_w;
  return {(out_rows - 1) * step_h + extent_h, columns, row_origin, column_origin, step_w,
          ceil_div(columns, step_w)};
}

[[gnu::always_inline]] inline void pad_plane(const float* plane, int64_t height, int64_t width,
                                             const PaddedPlane& p, float* padded) {
  // Columns c with 0 <= c + column_origin < width come from the plane, the rest are zeros.
  const int64_t begin = std::clamp<int64_t>(-p.column_origin, 0, p.columns);
  const int64_t end = std::clamp<int64_t>(width - p.column_origin, begin, p.columns);
  for (int64_t r = 0; r < p.rows; ++r) {
    float* dst = padded + r * p.row_stride();
    const int64_t row = r + p.row_origin;
    if (row < 0 || row >= height) {
      std::fill(dst, dst + p.row_stride(), 0.0f);
      continue;
    }
    const float* src = plane + row * width;  // logical column c reads src[c + column_origin]
    if (p.phases == 1) {
      std::fill(dst, dst + begin, 0.0f);
      std::copy(src + begin + p.column_origin, src + end + p.column_origin, dst + begin);
      std::fill(dst + end, dst + p.row_stride(), 0.0f);
    } else {
      for (int64_t phase = 0; phase < p.phases; ++phase) {
        // Run position q holds column q * phases + phase; [q_begin, q_end) are inside the plane.
        float* run = dst + phase * p.phase_columns;
        const int64_t q_begin =
            std::clamp<int64_t>(ceil_div(begin - phase, p.phases), 0, p.phase_columns);
        const int64_t q_end =
            std::clamp<int64_t>(ceil_div(end - phase, p.phases), q_begin, p.phase_columns);
        const float* column = src + p.column_origin + phase;
        std::fill(run, run + q_begin, 0.0f);
        const float* from = column + q_begin * p.phases;
        for (int64_t q = q_begin; q < q_end; ++q, from += p.phases) run[q] = *from;
        std::fill(run + q_end, run + p.phase_columns, 0.0f);
      }
    }
  }
}

// Loads write through a reference: returning a vector by value would change the ABI between
// the two clones (GCC's -Wpsabi), and everything here is inlined anyway.
[[gnu::always_inline]] inline void load8(Vec8& v, const float* src) {
  std::memcpy(&v, src, sizeof v);
}

[[gnu::always_inline]] inline void load_partial(Vec8& v, const float* src, int64_t lanes) {
  float values[kLanes] = {};
  std::copy(src, src + lanes, values);
  std::memcpy(&v, values, sizeof v);
}

// What a correlation over a padded plane reads: filter [KH, KW], the row step and the
// dilations (the column step is the plane's phase count). A flipped filter is read as
// filter[KH-1-kh][KW-1-kw], i.e. with its flattened index reversed.
struct Correlation {
  const float* filter;
  int64_t kernel_h, kernel_w, step_h, dilation_h, dilation_w;
};

// out[i][j] = (accumulate ? out[i][j] : init) + sum over (kh, kw) of filter(kh, kw) *
// padded[i*step_h + kh*dil_h][j*phases + kw*dil_w], for an out_rows x out_columns plane.
// kKH, kKW > 0 fix the kernel size at compile time (3x3 and 5x5 are most of real networks):
// the tap loops unroll and the weights, copied to a local array that no store can alias, stay
// in registers across the whole plane.
template <bool kFlipped, int kKH, int kKW>
[[gnu::always_inline]] inline void correlate_plane(const float* padded, const PaddedPlane& p,
                                                   const Correlation& k, int64_t out_rows,
                                                   int64_t out_columns, bool accumulate, float init,
                                                   float* out) {
  constexpr bool kFixed = kKH > 0 && kKW > 0;
  const int64_t KH = kFixed ? kKH : k.kernel_h, KW = kFixed ? kKW : k.kernel_w;
  const int64_t last_tap = KH * KW - 1;
  float fixed_weights[kFixed ? kKH * kKW : 1] = {};
  if constexpr (kFixed) {
    for (int64_t tap = 0; tap <= last_tap; ++tap) {
      fixed_weights[tap] = k.filter[kFlipped ? last_tap - tap : tap];
    }
  }
  // Where each kernel column's taps start within a stored row (divisions out of the loops).
  int64_t fixed_columns[kFixed ? kKW : 1] = {};
  if constexpr (kFixed) {
    for (int64_t kw = 0; kw < kKW; ++kw) fixed_columns[kw] = p.at(kw * k.dilation_w);
  }
  const int64_t row_stride = p.row_stride(), kernel_row_step = k.dilation_h * row_stride;
  for (int64_t i = 0; i < out_rows; ++i) {
    float* out_row = out + i * out_columns;
    const float* window = padded + i * k.step_h * row_stride;
    for (int64_t j = 0; j < out_columns; j += kLanes) {
      const int64_t lanes = std::min(kLanes, out_columns - j);
      Vec8 acc = Vec8{} + init;
      if (accumulate) {
        if (lanes == kLanes) {
          load8(acc, out_row + j);
        } else {
          load_partial(acc, out_row + j, lanes);
        }
      }
#pragma GCC unroll 8
      for (int64_t kh = 0; kh < KH; ++kh) {
#pragma GCC unroll 8
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t tap = kh * KW + kw;
          Vec8 values;
          const int64_t column = kFixed ? fixed_columns[kw] : p.at(kw * k.dilation_w);
          load8(values, window + kh * kernel_row_step + column + j);
          if constexpr (kFixed) {
            acc += fixed_weights[tap] * values;
          } else {
            acc += k.filter[kFlipped ? last_tap - tap : tap] * values;
          }
        }
      }
      if (lanes == kLanes) {
        std::memcpy(out_row + j, &acc, sizeof acc);
      } else {
        for (int64_t l = 0; l < lanes; ++l) out_row[j + l] = acc[l];
      }
    }
  }
}

template <bool kFlipped>
[[gnu::always_inline]] inline void correlate(const float* padded, const PaddedPlane& p,
                                             const Correlation& k, int64_t out_rows,
                                             int64_t out_columns, bool accumulate, float init,
                                             float* out) {
  if (k.kernel_h == 3 && k.kernel_w == 3) {
    correlate_plane<kFlipped, 3, 3>(padded, p, k, out_rows, out_columns, accumulate, init, out);
  } else if (k.kernel_h == 5 && k.kernel_w == 5) {
    correlate_plane<kFlipped, 5, 5>(padded, p, k, out_rows, out_columns, accumulate, init, out);
  } else {
    correlate_plane<kFlipped, 0, 0>(padded, p, k, out_rows, out_columns, accumulate, init, out);
  }
}

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

}  // namespace

int64_t depthwise_scratch_floats(const Conv2dShape& s) {
  const PaddedPlane forward = forward_geometry(s);
  int64_t floats = forward.rows * forward.row_stride();
  if (gathers(s)) {
    const PaddedPlane gather = gather_geometry(s);
    floats = std::max(floats, gather.rows * gather.row_stride());
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
  correlate</*kFlipped=*/false>(scratch, p,
                                {filter, s.kernel_height, s.kernel_width, s.stride_height,
                                 s.dilation_height, s.dilation_width},
                                s.out_height(), s.out_width(), accumulate,
                                bias != nullptr ? *bias : 0.0f, y_plane);
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
      correlate</*kFlipped=*/true>(scratch, p, k, H, W, accumulate || f > 0, 0.0f, dx_plane);
    }
    return;
  }
  if (!accumulate) std::fill(dx_plane, dx_plane + H * W, 0.0f);
  // Strided: scatter each dy row through each tap (no output pixel is written by two taps of
  // the same row, so the inner loop has no dependence).
  for (int64_t f = 0; f < filter_count; ++f) {
    const float* dy_plane = dy_planes + f * OH * OW;
    for (int64_t kh = 0; kh < KH; ++kh) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        const TapRange t = tap_range(s, kw);
        const float weight = filters[(f * KH + kh) * KW + kw];
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
}

// The weight gradient of a fixed kKH x kKW filter: one vector of partial sums per tap, all kept in
// registers, so each dy vector is loaded once for every tap. Lanes hold sums over images, rows
// and every eighth column in index order; they are reduced in lane order at the end.
template <int kKH, int kKW>
[[gnu::always_inline]] inline void fixed_filter_gradient(const Conv2dShape& s, const PaddedPlane& p,
                                                         const float* x_channel,
                                                         int64_t x_image_stride,
                                                         const float* dy_channel,
                                                         int64_t dy_image_stride, bool accumulate,
                                                         float* dw_filter, float* scratch) {
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t row_stride = p.row_stride(), kernel_row_step = s.dilation_height * row_stride;
  int64_t columns[kKW];
  for (int64_t kw = 0; kw < kKW; ++kw) columns[kw] = p.at(kw * s.dilation_width);
  Vec8 acc[kKH * kKW] = {};
  for (int64_t n = 0; n < s.batch; ++n) {
    pad_plane(x_channel + n * x_image_stride, s.in_height, s.in_width, p, scratch);
    const float* dy_plane = dy_channel + n * dy_image_stride;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* dy_row = dy_plane + oh * OW;
      const float* window = scratch + oh * s.stride_height * row_stride;
      for (int64_t ow = 0; ow < OW; ow += kLanes) {
        Vec8 dy;  // lanes past the row stay zero, so what they read adds nothing
        if (ow + kLanes <= OW) {
          load8(dy, dy_row + ow);
        } else {
          load_partial(dy, dy_row + ow, OW - ow);
        }
#pragma GCC unroll 8
        for (int64_t kh = 0; kh < kKH; ++kh) {
#pragma GCC unroll 8
          for (int64_t kw = 0; kw < kKW; ++kw) {
            Vec8 values;
            load8(values, window + kh * kernel_row_step + columns[kw] + ow);
            acc[kh * kKW + kw] += dy * values;
          }
        }
      }
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
  if (KH == 3 && KW == 3) {
    fixed_filter_gradient<3, 3>(s, p, x_channel, x_image_stride, dy_channel, dy_image_stride,
                                accumulate, dw_filter, scratch);
    return;
  }
  if (KH == 5 && KW == 5) {
    fixed_filter_gradient<5, 5>(s, p, x_channel, x_image_stride, dy_channel, dy_image_stride,
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
