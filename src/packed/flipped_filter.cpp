#include "flipped_filter.hpp"

#include <algorithm>
#include <optional>

#include "../avx512.hpp"

namespace convgemm::detail {
namespace {

// One filter row's taps [tap_begin, tap_begin + run) of one panel's lanes, reversed down the
// panel: dst[j * width + lane] = src[lane * T - j] for lane < used (zeros up to width). Scalar,
// one float at a time (every x86-64 CPU, and filters of more than 16 taps).
void reverse_taps(const float* src, int64_t T, int64_t used, int64_t width, int64_t run,
                  float* dst) {
  for (int64_t lane = 0; lane < used; ++lane) {
    for (int64_t j = 0; j < run; ++j) dst[j * width + lane] = src[lane * T - j];
  }
  for (int64_t j = 0; j < run; ++j) std::fill(dst + j * width + used, dst + (j + 1) * width, 0.0f);
}

// The same with AVX-512 for filters of at most 16 taps, without a gather: 16 lanes' taps are
// 16 * T contiguous floats, loaded as T vectors, and each output tap t picks its 16 lanes (lane
// l's at l * T + t) from pairs of them with two-source permutes. (The gather, one per tap and 16
// lanes, was 62% of 3x3 512@7's backward_data at batch 1 on Zen 5: it is microcoded there.)
constexpr int64_t kMaxPermutedTaps = 16;

// For tap t and window q (vectors 2q and 2q + 1 of the 16 lanes' taps): the permute's indices
// and the lanes whose tap lies in that window.
struct TapPermutes {
  int64_t taps = 0, windows = 0;
  alignas(64) int32_t index[kMaxPermutedTaps][kMaxPermutedTaps / 2][16] = {};
  uint16_t lanes[kMaxPermutedTaps][kMaxPermutedTaps / 2] = {};

  explicit TapPermutes(int64_t T) : taps(T), windows((T + 1) / 2) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t lane = 0; lane < 16; ++lane) {
        const int64_t at = lane * T + t, q = at / 32;
        index[t][q][lane] = static_cast<int32_t>(at % 32);
        lanes[t][q] = static_cast<uint16_t>(lanes[t][q] | (1u << lane));
      }
    }
  }
};

CONVGEMM_AVX512 void reverse_taps_permuted(const TapPermutes& permutes, const float* lanes_taps,
                                           int64_t used, int64_t width, int64_t tap_begin,
                                           int64_t run, float* dst) {
  constexpr int64_t kLanes = 16;
  const int64_t T = permutes.taps;
  __m512 taps[kMaxPermutedTaps + 1];
  for (int64_t v = 0; v * kLanes < width; ++v) {
    const int64_t lane = v * kLanes;
    const auto in_panel = static_cast<__mmask16>((1u << std::min(kLanes, width - lane)) - 1);
    // This group's lanes below `used`: floats [0, valid) of its 16 * T.
    const int64_t valid = std::clamp<int64_t>(used - lane, 0, kLanes) * T;
    const float* group = address(lanes_taps, lane * T);
    for (int64_t i = 0; i < T; ++i) {
      const int64_t in_vector = std::clamp<int64_t>(valid - i * kLanes, 0, kLanes);
      const auto read = static_cast<__mmask16>((1u << in_vector) - 1);
      // (No load at all past the filter's end: a masked load touching an unmapped page is slow
      // on AMD's cores even with no lane read.)
      taps[i] = in_vector == 0 ? _mm512_setzero_ps()
                               : _mm512_maskz_loadu_ps(read, address(group, i * kLanes));
    }
    taps[T] = _mm512_setzero_ps();
    for (int64_t j = 0; j < run; ++j) {
      const int64_t t = T - 1 - (tap_begin + j);
      __m512 out = _mm512_setzero_ps();
      for (int64_t q = 0; q < permutes.windows; ++q) {
        const __m512i index = _mm512_load_si512(permutes.index[t][q]);
        out = _mm512_mask_mov_ps(out, permutes.lanes[t][q],
                                 _mm512_permutex2var_ps(taps[2 * q], index, taps[2 * q + 1]));
      }
      _mm512_mask_storeu_ps(dst + j * width + lane, in_panel, out);
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
  const bool avx512 = cpu_has_avx512() && T <= kMaxPermutedTaps;
  const std::optional<TapPermutes> permutes =
      avx512 ? std::optional<TapPermutes>(std::in_place, T) : std::nullopt;
  for (int64_t k = step; k < step + steps;) {
    const int64_t o = k / T, tap_begin = k % T;
    const int64_t run = std::min(T - tap_begin, step + steps - k);
    for (int64_t panel = 0; panel * width < lanes; ++panel) {
      const int64_t lane_begin = first + panel * width;
      const int64_t used = std::min(width, lanes - panel * width);
      const float* lanes_taps = w_group + o * K + lane_begin * T;
      float* dst = buffer + panel * steps * width + (k - step) * width;
      if (permutes) {
        reverse_taps_permuted(*permutes, lanes_taps, used, width, tap_begin, run, dst);
      } else {
        reverse_taps(lanes_taps + (T - 1 - tap_begin), T, used, width, run, dst);
      }
    }
    k += run;
  }
  return buffer;
}

}  // namespace convgemm::detail
