// Direct depthwise kernels (see kernels.hpp for why they are not GEMMs).
//
// Each task first copies its input plane into the slot's scratch with the zero padding written
// out (a PaddedPlane), so that every output reads its taps without bounds checks; outputs are
// then computed eight at a time with all KH*KW taps accumulated in registers. Sums run in tap
// order for every output, so results do not depend on threads or on the vector width.
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

// A zero-padded copy of a plane: padded[r][c] = plane[r + row_origin][c + column_origin], or 0
// outside the plane. Rows and columns cover every tap of every output, with the output width
// rounded up to whole vectors so that the last vector reads zeros, not past the buffer.
struct PaddedPlane {
  int64_t rows, columns, row_origin, column_origin;
};

// The padded plane a correlation with these steps and dilations needs to produce `out_rows` x
// `out_columns` outputs, reading tap (kh, kw) of output (i, j) at padded[i*step_h + kh*dil_h]
// [j*step_w + kw*dil_w].
PaddedPlane padded_geometry(int64_t out_rows, int64_t out_columns, int64_t step_h, int64_t step_w,
                            int64_t extent_h, int64_t extent_w, int64_t row_origin,
                            int64_t column_origin) {
  const int64_t vector_columns = ceil_div(out_columns, kLanes) * kLanes;
  return {(out_rows - 1) * step_h + extent_h, (vector_columns - 1) * step_w + extent_w, row_origin,
          column_origin};
}

void pad_plane(const float* plane, int64_t height, int64_t width, const PaddedPlane& p,
               float* padded) {
  for (int64_t r = 0; r < p.rows; ++r) {
    float* dst = padded + r * p.columns;
    const int64_t row = r + p.row_origin;
    if (row < 0 || row >= height) {
      std::fill(dst, dst + p.columns, 0.0f);
      continue;
    }
    // Columns c with 0 <= c + column_origin < width come from the plane, the rest are zeros.
    const int64_t begin = std::clamp<int64_t>(-p.column_origin, 0, p.columns);
    const int64_t end = std::clamp<int64_t>(width - p.column_origin, begin, p.columns);
    std::fill(dst, dst + begin, 0.0f);
    std::copy(plane + row * width + begin + p.column_origin,
              plane + row * width + end + p.column_origin, dst + begin);
    std::fill(dst + end, dst + p.columns, 0.0f);
  }
}

// What a correlation over a padded plane reads: filter [KH, KW], steps and dilations in padded
// coordinates. A flipped filter is read as filter[KH-1-kh][KW-1-kw], i.e. its flattened index
// reversed.
struct Correlation {
  const float* filter;
  int64_t kernel_h, kernel_w, step_h, step_w, dilation_h, dilation_w;
};

// Loads write through a reference: returning a vector by value would change the ABI between
// the two clones (GCC's -Wpsabi), and everything here is inlined anyway.
[[gnu::always_inline]] inline void load_partial(Vec8& v, const float* src, int64_t lanes) {
  float values[kLanes] = {};
  std::copy(src, src + lanes, values);
  std::memcpy(&v, values, sizeof v);
}

template <bool kUnitStep>
[[gnu::always_inline]] inline void load_strided(Vec8& v, const float* src, int64_t step) {
  if constexpr (kUnitStep) {
    std::memcpy(&v, src, sizeof v);
  } else {
    float lanes[kLanes];  // gathered through an array: GCC 12 misreads lane-wise vector writes
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] = src[l * step];
    std::memcpy(&v, lanes, sizeof v);
  }
}

// out[i][j] = (accumulate ? out[i][j] : init) + sum over (kh, kw) of filter(kh, kw) *
// padded[i*step_h + kh*dil_h][j*step_w + kw*dil_w], for an out_rows x out_columns plane.
// kKH, kKW > 0 fix the kernel size at compile time (3x3 and 5x5 are most of real networks):
// the tap loops unroll and the weights, copied to a local array that no store can alias, stay
// in registers across the whole plane.
template <bool kFlipped, bool kUnitStep, int kKH, int kKW>
[[gnu::always_inline]] inline void correlate_plane(const float* padded, int64_t padded_columns,
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
  const int64_t step_w = k.step_w, row_step = k.dilation_h * padded_columns, dw = k.dilation_w;
  for (int64_t i = 0; i < out_rows; ++i) {
    float* out_row = out + i * out_columns;
    const float* window = padded + i * k.step_h * padded_columns;
    for (int64_t j = 0; j < out_columns; j += kLanes) {
      const int64_t lanes = std::min(kLanes, out_columns - j);
      Vec8 acc = Vec8{} + init;
      if (accumulate) {
        if (lanes == kLanes) {
          std::memcpy(&acc, out_row + j, sizeof acc);
        } else {
          load_partial(acc, out_row + j, lanes);
        }
      }
      const float* src = window + j * step_w;
#pragma GCC unroll 8
      for (int64_t kh = 0; kh < KH; ++kh) {
#pragma GCC unroll 8
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t tap = kh * KW + kw;
          Vec8 values = {};
          load_strided<kUnitStep>(values, src + kh * row_step + kw * dw, step_w);
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

template <bool kFlipped, bool kUnitStep>
[[gnu::always_inline]] inline void correlate(const float* padded, int64_t padded_columns,
                                             const Correlation& k, int64_t out_rows,
                                             int64_t out_columns, bool accumulate, float init,
                                             float* out) {
  if (k.kernel_h == 3 && k.kernel_w == 3) {
    correlate_plane<kFlipped, kUnitStep, 3, 3>(padded, padded_columns, k, out_rows, out_columns,
                                               accumulate, init, out);
  } else if (k.kernel_h == 5 && k.kernel_w == 5) {
    correlate_plane<kFlipped, kUnitStep, 5, 5>(padded, padded_columns, k, out_rows, out_columns,
                                               accumulate, init, out);
  } else {
    correlate_plane<kFlipped, kUnitStep, 0, 0>(padded, padded_columns, k, out_rows, out_columns,
                                               accumulate, init, out);
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
  int64_t floats = forward.rows * forward.columns;
  if (gathers(s)) {
    const PaddedPlane gather = gather_geometry(s);
    floats = std::max(floats, gather.rows * gather.columns);
  }
  return floats;
}

CONVGEMM_PLANE_KERNEL void depthwise_forward_plane(const Conv2dShape& s, const float* x_plane,
                                                   const float* filter, const float* bias,
                                                   bool accumulate, float* y_plane,
                                                   float* scratch) {
  const PaddedPlane p = forward_geometry(s);
  pad_plane(x_plane, s.in_height, s.in_width, p, scratch);
  const Correlation k{filter,         s.kernel_height,   s.kernel_width,  s.stride_height,
                      s.stride_width, s.dilation_height, s.dilation_width};
  const float init = bias != nullptr ? *bias : 0.0f;
  if (accumulate && bias != nullptr) {  // y += bias + sum: the bias joins y first
    for (int64_t i = 0; i < s.out_height() * s.out_width(); ++i) y_plane[i] += *bias;
  }
  if (s.stride_width == 1) {
    correlate<false, true>(scratch, p.columns, k, s.out_height(), s.out_width(), accumulate, init,
                           y_plane);
  } else {
    correlate<false, false>(scratch, p.columns, k, s.out_height(), s.out_width(), accumulate, init,
                            y_plane);
  }
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
      const Correlation k{filters + f * KH * KW, KH, KW, 1, 1, s.dilation_height, s.dilation_width};
      correlate<true, true>(scratch, p.columns, k, H, W, accumulate || f > 0, 0.0f, dx_plane);
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

CONVGEMM_PLANE_KERNEL void depthwise_backward_weights_filter(
    const Conv2dShape& s, const float* x_channel, int64_t x_image_stride, const float* dy_channel,
    int64_t dy_image_stride, bool accumulate, float* dw_filter, float* scratch) {
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t KH = s.kernel_height, KW = s.kernel_width;
  const int64_t sh = s.stride_height, sw = s.stride_width;
  const PaddedPlane p = forward_geometry(s);
  if (!accumulate) std::fill(dw_filter, dw_filter + KH * KW, 0.0f);
  // Per image, each tap's sum over the plane is one vector of partial sums, reduced in lane
  // order and added to dw: images, then lanes, in index order.
  for (int64_t n = 0; n < s.batch; ++n) {
    pad_plane(x_channel + n * x_image_stride, s.in_height, s.in_width, p, scratch);
    const float* dy_plane = dy_channel + n * dy_image_stride;
    for (int64_t kh = 0; kh < KH; ++kh) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        Vec8 acc = {};
        for (int64_t oh = 0; oh < OH; ++oh) {
          const float* dy_row = dy_plane + oh * OW;
          const float* src =
              scratch + (oh * sh + kh * s.dilation_height) * p.columns + kw * s.dilation_width;
          int64_t ow = 0;
          Vec8 dy = {}, values = {};
          if (sw == 1) {
            for (; ow + kLanes <= OW; ow += kLanes) {
              load_strided<true>(dy, dy_row + ow, 1);
              load_strided<true>(values, src + ow, 1);
              acc += dy * values;
            }
          } else {
            for (; ow + kLanes <= OW; ow += kLanes) {
              load_strided<true>(dy, dy_row + ow, 1);
              load_strided<false>(values, src + ow * sw, sw);
              acc += dy * values;
            }
          }
          if (ow < OW) {  // lanes past the row are zero in dy, so what they read adds nothing
            load_partial(dy, dy_row + ow, OW - ow);
            load_strided<false>(values, src + ow * sw, sw);
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
