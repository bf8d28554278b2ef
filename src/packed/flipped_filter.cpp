#include "flipped_filter.hpp"

#include <algorithm>
#include <array>
#include <utility>

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

// The same with AVX-512 for filters of at most 16 taps, without a gather, for a whole filter row
// at once (every panel's lanes): 16 channels' taps are 16 * T contiguous floats, loaded as T
// vectors, and each output tap t picks its 16 channels (channel l's at l * T + t) from pairs of
// them with two-source permutes; the 16 channels then go to the panels they fall in. T is a
// template parameter so that the vectors stay in registers. (The gather, one per tap and 16
// lanes, was 62% of 3x3 512@7's backward_data at batch 1 on Zen 5: it is microcoded there.
// Permuting one 12-lane panel at a time with T known only at run time ran at 5 GB/s, slower
// than the scalar copy.)
constexpr int64_t kMaxPermutedTaps = 16;

// For tap t and window q (vectors 2q and 2q + 1 of 16 channels' taps): the permute's indices
// and the channels whose tap lies in that window.
template <int T>
struct TapWindows {
  static constexpr int kWindows = (T + 1) / 2;
  alignas(64) int32_t index[T][kWindows][16] = {};
  uint16_t channels[T][kWindows] = {};
};

template <int T>
constexpr TapWindows<T> tap_windows() {
  TapWindows<T> windows;
  for (int t = 0; t < T; ++t) {
    for (int channel = 0; channel < 16; ++channel) {
      const int at = channel * T + t, q = at / 32;
      windows.index[t][q][channel] = at % 32;
      windows.channels[t][q] = static_cast<uint16_t>(windows.channels[t][q] | (1u << channel));
    }
  }
  return windows;
}

template <int T>
inline constexpr TapWindows<T> kTapWindows = tap_windows<T>();

// Where 16 consecutive lanes of a panel row land: `count` masked stores, store s of the lanes
// mask[s] selects at offset[s] floats from that row of the first panel (lane i of the 16 at
// offset[s] + i), up to the last panel's end (its lanes past the filter's get zeros).
struct LaneStores {
  static constexpr int kMostStores = 17;  // width 1
  int count = 0;
  int64_t offset[kMostStores] = {};
  __mmask16 mask[kMostStores] = {};
};

// The stores of the 16 lanes from `first_lane`, lane `in_panel` of panel `panel`, up to `end`
// (without a division: one per group cost 11% of 3x3 512@7's backward_data at batch 1).
inline LaneStores lane_stores(int64_t first_lane, int64_t end, int64_t panel, int64_t in_panel,
                              int64_t width, int64_t panel_floats) {
  LaneStores stores;
  const int64_t last = std::min(first_lane + 16, end);
  for (int64_t lane = first_lane; lane < last; ++panel, in_panel = 0) {
    const int64_t stop = std::min(last, lane + width - in_panel);
    const auto from = static_cast<unsigned>(lane - first_lane);
    const auto to = static_cast<unsigned>(stop - first_lane);
    stores.mask[stores.count] = static_cast<__mmask16>(((1u << to) - 1) & ~((1u << from) - 1));
    stores.offset[stores.count] = panel * panel_floats + in_panel - (lane - first_lane);
    ++stores.count;
    lane = stop;
  }
  return stores;
}

// Filter row o's taps [tap_begin, tap_begin + run) of `lanes` channels (`row` at the first),
// reversed down their panels: panel p's row j, lane l (at dst + p * panel_floats + j * width + l)
// = row[(p * width + l) * T + T - 1 - (tap_begin + j)], zeros past `lanes`.
template <int T>
CONVGEMM_AVX512 void reverse_row_taps(const float* row, int64_t lanes, int64_t width,
                                      int64_t panel_floats, int64_t tap_begin, int64_t run,
                                      float* dst) {
  constexpr int kVectors = 2 * TapWindows<T>::kWindows;
  const TapWindows<T>& windows = kTapWindows<T>;
  const int64_t padded = (lanes + width - 1) / width * width;  // up to the last panel's end
  int64_t panel = 0, in_panel = 0;                             // where lane `first` is
  for (int64_t first = 0; first < padded; first += 16) {
    const int64_t valid = std::clamp<int64_t>(lanes - first, 0, 16) * T;
    __m512 taps[kVectors];
    for (int i = 0; i < kVectors; ++i) {
      const int64_t in_vector = std::clamp<int64_t>(valid - i * 16, 0, 16);
      // (No load at all past the filter's end: a masked load touching an unmapped page is slow
      // on AMD's cores even with no lane read.)
      taps[i] = in_vector == 0
                    ? _mm512_setzero_ps()
                    : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << in_vector) - 1),
                                            address(row, first * T + i * 16));
    }
    const LaneStores stores = lane_stores(first, padded, panel, in_panel, width, panel_floats);
    for (int64_t j = 0; j < run; ++j) {
      const int64_t t = T - 1 - (tap_begin + j);
      __m512 out = _mm512_permutex2var_ps(taps[0], _mm512_load_si512(windows.index[t][0]), taps[1]);
      for (int q = 1; q < TapWindows<T>::kWindows; ++q) {
        out = _mm512_mask_mov_ps(
            out, windows.channels[t][q],
            _mm512_permutex2var_ps(taps[2 * q], _mm512_load_si512(windows.index[t][q]),
                                   taps[2 * q + 1]));
      }
      for (int k = 0; k < stores.count; ++k) {
        _mm512_mask_storeu_ps(address(dst, stores.offset[k] + j * width), stores.mask[k], out);
      }
    }
    for (in_panel += 16; in_panel >= width; in_panel -= width) ++panel;
  }
}

using RowTaps = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);

template <std::size_t... T>
constexpr std::array<RowTaps, sizeof...(T)> row_taps_by_count(std::index_sequence<T...>) {
  return {&reverse_row_taps<static_cast<int>(T) + 1>...};
}
// reverse_row_taps<T> at [T - 1].
constexpr auto kRowTaps =
    row_taps_by_count(std::make_index_sequence<static_cast<std::size_t>(kMaxPermutedTaps)>());

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
  const RowTaps row_taps = cpu_has_avx512() && T <= kMaxPermutedTaps
                               ? kRowTaps[static_cast<std::size_t>(T - 1)]
                               : nullptr;
  const int64_t panel_floats = steps * width;
  for (int64_t k = step; k < step + steps;) {
    const int64_t o = k / T, tap_begin = k % T;
    const int64_t run = std::min(T - tap_begin, step + steps - k);
    const float* row = w_group + o * K + first * T;
    float* dst = buffer + (k - step) * width;
    if (row_taps != nullptr) {
      row_taps(row, lanes, width, panel_floats, tap_begin, run, dst);
    } else {
      for (int64_t panel = 0; panel * width < lanes; ++panel) {
        const int64_t used = std::min(width, lanes - panel * width);
        reverse_taps(row + panel * width * T + (T - 1 - tap_begin), T, used, width, run,
                     dst + panel * panel_floats);
      }
    }
    k += run;
  }
  return buffer;
}

}  // namespace convgemm::detail
