// Stride-2 backward_data of a depthwise convolution as a gather over a padded dy plane.
//
// Header-only, used only from depthwise.cpp's target_clones'd kernels (see depthwise_plane.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "convgemm/detail/check.hpp"
#include "convgemm/shape.hpp"
#include "depthwise_plane.hpp"

namespace convgemm::detail::depthwise {

// With stride 2 and no dilation, dx[ih][iw] = sum of w[kh][kw] * dy[oh][ow] over the taps with
// 2*oh = ih + pt - kh and 2*ow = iw + pl - kw: only the kh of the parity of ih + pt, and the kw
// of the parity of iw + pl, reach a pixel. A dx row is computed 16 columns at a time as two
// vectors, one per column parity t (dx columns 2c + t), each a unit-step correlation of a dy
// row with its own kw; the two are interleaved into 16 consecutive floats. Each pixel thus sums
// exactly its own taps (no multiplications by zero, no scatter), in (kh, kw) order.

inline bool gathers_stride_two(const Conv2dShape& s) {
  return s.stride_height == 2 && s.stride_width == 2 && s.dilation_height == 1 &&
         s.dilation_width == 1;
}

// dy padded for the stride-2 gather: rows from oh = floor((pt - (KH-1)) / 2) to the last one
// dx row H-1 reads; columns c + (pl + t - kw) / 2 for c below 8 per 16-column block of dx.
inline PaddedPlane stride_two_geometry(const Conv2dShape& s) {
  const int64_t row_origin = floor_div(s.pad_top - (s.kernel_height - 1), 2);
  const int64_t last_row = floor_div(s.in_height - 1 + s.pad_top, 2);
  const int64_t column_origin = floor_div(s.pad_left - (s.kernel_width - 1), 2);
  const int64_t last_offset = floor_div(s.pad_left + 1, 2);
  const int64_t columns = ceil_div(s.in_width, 2 * kLanes) * kLanes + last_offset - column_origin;
  return {last_row - row_origin + 1, columns, row_origin, column_origin, 1, columns};
}

// The taps of one dx row parity (kh = kKh0, kKh0 + 2, ...) of a kKH x kKW filter, as seen
// from the 16-column block: weight, dy row (relative to the first tap's) and dy column offset
// of each tap, in (kh, kw) order, and which of the two column parities it feeds.
template <int kKH, int kKW, int kKh0>
struct ParityTaps {
  static constexpr int kRowsUsed = (kKH - kKh0 + 1) / 2;
  static constexpr int kCount = kRowsUsed * kKW;
  float weights[kCount > 0 ? kCount : 1];
  int64_t offsets[kCount > 0 ? kCount : 1];

  // kKw0 = pl % 2: the kw that feed the even columns t = 0 (kw of the parity of pl).
  template <int kKw0>
  static constexpr int parity(int tap) {
    return (tap % kKW + kKw0) % 2;
  }

  void set(const float* filter, int64_t pad_left, int64_t row_stride, int64_t column_origin) {
    for (int m = 0; m < kRowsUsed; ++m) {
      for (int kw = 0; kw < kKW; ++kw) {
        const int tap = m * kKW + kw;
        const int64_t t = (kw + pad_left) % 2;
        weights[tap] = filter[(kKh0 + 2 * m) * kKW + kw];
        // dy row oh - m of the row's first tap; column c + (pl + t - kw) / 2.
        offsets[tap] = -m * row_stride + (pad_left + t - kw) / 2 - column_origin;
      }
    }
  }
};

// Sums the taps of one dx row block into its even and odd columns: `dy` points at column c of
// the dy row read by the first tap.
template <int kKH, int kKW, int kKh0, int kKw0>
[[gnu::always_inline]] inline void accumulate_parity_taps(Vec8& even, Vec8& odd, const float* dy,
                                                          const ParityTaps<kKH, kKW, kKh0>& t) {
  using Taps = ParityTaps<kKH, kKW, kKh0>;
#pragma GCC unroll 32
  for (int tap = 0; tap < Taps::kCount; ++tap) {
    Vec8 values;
    load8(values, dy + t.offsets[tap]);
    if (Taps::template parity<kKw0>(tap) == 0) {
      even += t.weights[tap] * values;
    } else {
      odd += t.weights[tap] * values;
    }
  }
}

// dx row `ih` (of parity kKh0 = (ih + pt) % 2) += its taps, 16 columns at a time;
// `dy_row` is the padded dy row oh = (ih + pt - kKh0) / 2 read by the row's first tap.
template <int kKH, int kKW, int kKh0, int kKw0>
[[gnu::always_inline]] inline void gather_row(const float* dy_row,
                                              const ParityTaps<kKH, kKW, kKh0>& taps, int64_t width,
                                              bool accumulate, float* dx_row) {
  constexpr int64_t kBlock = 2 * kLanes;
  for (int64_t iw = 0; iw < width; iw += kBlock) {
    const int64_t columns = std::min(kBlock, width - iw);
    Vec8 even = {}, odd = {};
    if (accumulate) {
      float values[kBlock] = {};
      std::copy(dx_row + iw, dx_row + iw + columns, values);
      Vec8 low, high;
      load8(low, values);
      load8(high, values + kLanes);
      deinterleave(low, high, even, odd);
    }
    accumulate_parity_taps<kKH, kKW, kKh0, kKw0>(even, odd, dy_row + iw / 2, taps);
    Vec8 low, high;
    interleave(even, odd, low, high);
    if (columns == kBlock) {
      store8(dx_row + iw, low);
      store8(dx_row + iw + kLanes, high);
    } else {
      float values[kBlock];
      store8(values, low);
      store8(values + kLanes, high);
      std::copy(values, values + columns, dx_row + iw);
    }
  }
}

// All dx rows of parity kKh0: ih with (ih + pt) % 2 == kKh0.
template <int kKH, int kKW, int kKh0, int kKw0>
[[gnu::always_inline]] inline void gather_rows_of_parity(const Conv2dShape& s, const float* padded,
                                                         const PaddedPlane& p, const float* filter,
                                                         bool accumulate, float* dx_plane) {
  if constexpr (ParityTaps<kKH, kKW, kKh0>::kCount == 0) {  // a 1-row kernel: odd rows get none
    for (int64_t ih = (kKh0 + s.pad_top) % 2; ih < s.in_height && !accumulate; ih += 2) {
      std::fill(dx_plane + ih * s.in_width, dx_plane + (ih + 1) * s.in_width, 0.0f);
    }
  } else {
    ParityTaps<kKH, kKW, kKh0> taps;
    taps.set(filter, s.pad_left, p.row_stride(), p.column_origin);
    for (int64_t ih = (kKh0 + s.pad_top) % 2; ih < s.in_height; ih += 2) {
      const int64_t oh = (ih + s.pad_top - kKh0) / 2;
      gather_row<kKH, kKW, kKh0, kKw0>(padded + (oh - p.row_origin) * p.row_stride(), taps,
                                       s.in_width, accumulate, dx_plane + ih * s.in_width);
    }
  }
}

template <int kKH, int kKW, int kKw0>
[[gnu::always_inline]] inline void gather_stride_two_fixed(const Conv2dShape& s,
                                                           const float* padded,
                                                           const PaddedPlane& p,
                                                           const float* filter, bool accumulate,
                                                           float* dx_plane) {
  gather_rows_of_parity<kKH, kKW, 0, kKw0>(s, padded, p, filter, accumulate, dx_plane);
  gather_rows_of_parity<kKH, kKW, 1, kKw0>(s, padded, p, filter, accumulate, dx_plane);
}

// The fixed-size gathers (3x3, 5x5); false for other sizes.
[[gnu::always_inline]] inline bool gather_stride_two(const Conv2dShape& s, const float* padded,
                                                     const PaddedPlane& p, const float* filter,
                                                     bool accumulate, float* dx_plane) {
  const bool odd_left = s.pad_left % 2 == 1;
  if (s.kernel_height == 3 && s.kernel_width == 3) {
    if (odd_left) {
      gather_stride_two_fixed<3, 3, 1>(s, padded, p, filter, accumulate, dx_plane);
    } else {
      gather_stride_two_fixed<3, 3, 0>(s, padded, p, filter, accumulate, dx_plane);
    }
    return true;
  }
  if (s.kernel_height == 5 && s.kernel_width == 5) {
    if (odd_left) {
      gather_stride_two_fixed<5, 5, 1>(s, padded, p, filter, accumulate, dx_plane);
    } else {
      gather_stride_two_fixed<5, 5, 0>(s, padded, p, filter, accumulate, dx_plane);
    }
    return true;
  }
  return false;
}

inline bool uses_stride_two_gather(const Conv2dShape& s) {
  return gathers_stride_two(s) && ((s.kernel_height == 3 && s.kernel_width == 3) ||
                                   (s.kernel_height == 5 && s.kernel_width == 5));
}

}  // namespace convgemm::detail::depthwise
