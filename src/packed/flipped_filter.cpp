#include "flipped_filter.hpp"

#include <algorithm>

#include "../avx512.hpp"

namespace convgemm::detail {
namespace {

// One filter row's taps [tap_begin, tap_begin + run) of one panel's lanes, reversed down the
// panel: dst[j * width + lane] = src[lane * T - j] for lane < used (zeros up to width). Scalar,
// one float at a time (every x86-64 CPU), or one masked gather per tap and 16 lanes.
void reverse_taps(const float* src, int64_t T, int64_t used, int64_t width, int64_t run,
                  float* dst) {
  for (int64_t lane = 0; lane < used; ++lane) {
    for (int64_t j = 0; j < run; ++j) dst[j * width + lane] = src[lane * T - j];
  }
  for (int64_t j = 0; j < run; ++j) std::fill(dst + j * width + used, dst + (j + 1) * width, 0.0f);
}

CONVGEMM_AVX512 void reverse_taps_avx512(const float* src, int64_t T, int64_t used, int64_t width,
                                         int64_t run, float* dst) {
  constexpr int64_t kLanes = 16;
  const __m512i lane_offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int>(T)));
  for (int64_t v = 0; v * kLanes < width; ++v) {
    const int64_t lane = v * kLanes;
    const auto in_panel = static_cast<__mmask16>((1u << std::min(kLanes, width - lane)) - 1);
    const auto read =
        static_cast<__mmask16>(used > lane ? (1u << std::min(kLanes, used - lane)) - 1 : 0u);
    for (int64_t j = 0; j < run; ++j) {
      const float* base = address(src, lane * T - j);
      const __m512 taps =
          _mm512_mask_i32gather_ps(_mm512_setzero_ps(), read, lane_offsets, base, 4);
      _mm512_mask_storeu_ps(dst + j * width + lane, in_panel, taps);
    }
  }
}

// Output channels per group the forward convolution needs at least: its gather costs the same
// per position whatever their count, and with few it dominates (measured 2026-12-04, the
// textbook's 3 input channels, 5x5: 19 GFLOP/s that way, 76 through col2im).
constexpr int64_t kMinForwardOutputs = 32;

}  // namespace

bool data_gradient_fits_a_forward(const Conv2dShape& s) {
  const int64_t extent_h = (s.kernel_height - 1) * s.dilation_height;
  const int64_t extent_w = (s.kernel_width - 1) * s.dilation_width;
  return s.stride_height == 1 && s.stride_width == 1 && s.pad_top <= extent_h &&
         s.pad_bottom <= extent_h && s.pad_left <= extent_w && s.pad_right <= extent_w;
}

bool data_gradient_is_a_forward(const Conv2dShape& s) {
  return data_gradient_fits_a_forward(s) && s.in_channels / s.groups >= kMinForwardOutputs;
}

Conv2dShape data_gradient_forward_shape(const Conv2dShape& s) {
  const int64_t extent_h = (s.kernel_height - 1) * s.dilation_height;
  const int64_t extent_w = (s.kernel_width - 1) * s.dilation_width;
  return Conv2dShape{.batch = s.batch,
                     .in_channels = s.out_channels,
                     .in_height = s.out_height(),
                     .in_width = s.out_width(),
                     .out_channels = s.in_channels,
                     .kernel_height = s.kernel_height,
                     .kernel_width = s.kernel_width,
                     .pad_top = extent_h - s.pad_top,
                     .pad_bottom = extent_h - s.pad_bottom,
                     .pad_left = extent_w - s.pad_left,
                     .pad_right = extent_w - s.pad_right,
                     .dilation_height = s.dilation_height,
                     .dilation_width = s.dilation_width,
                     .groups = s.groups,
                     .layout = s.layout};
}

const float* FlippedFilter::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                   int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t T = s.kernel_height * s.kernel_width, M = s.gemm_m(), K = s.gemm_k();
  const int64_t group_channels = s.in_channels / s.groups;
  if (s.layout == Layout::nhwc) {
    // Step k' = (tap', o): its lanes are C/G contiguous floats of tap T-1-tap' in OHWI row o.
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t k = step + t, o = k % M, tap = T - 1 - k / M;
      const float* lane_zero = w_group + o * K + tap * group_channels;
      for (int64_t panel = 0; panel * width < lanes; ++panel) {
        const int64_t used = std::min(width, lanes - panel * width);
        const float* src = lane_zero + first + panel * width;
        float* dst = buffer + panel * steps * width + t * width;
        std::copy(src, src + used, dst);
        std::fill(dst + used, dst + width, 0.0f);
      }
    }
    return buffer;
  }
  // Steps k' = (o, tap'): in OIHW row o, each lane (channel) holds its T taps contiguously, so
  // a panel takes one filter row at a time, each lane's taps read in order and written in
  // reverse down the panel's column. Every panel takes row o before any takes row o + 1: the
  // lanes of a row are then read in one sequential sweep (panel by panel, each row was a new
  // page: 42% of 3x3 512@7's backward_data at batch 1 went into that packing).
  // (The gather's offsets, lane * T for 16 lanes, are 32-bit.)
  const bool avx512 = cpu_has_avx512() && T * width < (int64_t{1} << 31);
  for (int64_t k = step; k < step + steps;) {
    const int64_t o = k / T, tap_begin = k % T;
    const int64_t run = std::min(T - tap_begin, step + steps - k);
    for (int64_t panel = 0; panel * width < lanes; ++panel) {
      const int64_t lane_begin = first + panel * width;
      const int64_t used = std::min(width, lanes - panel * width);
      const float* src = w_group + o * K + lane_begin * T + (T - 1 - tap_begin);
      float* dst = buffer + panel * steps * width + (k - step) * width;
      if (avx512) {
        reverse_taps_avx512(src, T, used, width, run, dst);
      } else {
        reverse_taps(src, T, used, width, run, dst);
      }
    }
    k += run;
  }
  return buffer;
}

}  // namespace convgemm::detail
