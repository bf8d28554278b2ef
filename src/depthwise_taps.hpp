// Correlations of a PaddedPlane with a small filter, eight output columns by a few output rows
// at a time with every tap accumulated in registers: the forward pass and the stride-1
// backward_data pass (the latter with the flipped filter). Every output sums its taps in
// (kh, kw) order whatever the row blocking, so results do not depend on it.
//
// Header-only, used only from depthwise.cpp's target_clones'd kernels (see depthwise_plane.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "depthwise_plane.hpp"

namespace convgemm::detail::depthwise {

// What a correlation over a padded plane reads: filter [KH, KW], the row step and the
// dilations (the column step is the plane's phase count). A flipped filter is read as
// filter[KH-1-kh][KW-1-kw], i.e. with its flattened index reversed.
struct Correlation {
  const float* filter;
  int64_t kernel_h, kernel_w, step_h, dilation_h, dilation_w;
};

// The weights of a fixed-size kKH x kKW filter (3x3 and 5x5 are most of real networks), in
// a local array that no store can alias, so that they stay in registers across the plane.
template <int kKH, int kKW>
struct FixedWeights {
  float weights[kKH * kKW];

  void set(const float* filter, bool flipped) {
    constexpr int kLastTap = kKH * kKW - 1;
    for (int tap = 0; tap <= kLastTap; ++tap) weights[tap] = filter[flipped ? kLastTap - tap : tap];
  }
};

// Taps at any step and dilation: where each tap's first input sits relative to the output
// row's window, from a table.
template <int kKH, int kKW>
struct OffsetTaps : FixedWeights<kKH, kKW> {
  int64_t offsets[kKH * kKW];
  int64_t row_step;

  OffsetTaps(const PaddedPlane& p, const Correlation& k, bool flipped)
      : row_step(k.step_h * p.row_stride()) {
    this->set(k.filter, flipped);
    for (int64_t kh = 0; kh < kKH; ++kh) {
      for (int64_t kw = 0; kw < kKW; ++kw) {
        offsets[kh * kKW + kw] = kh * k.dilation_h * p.row_stride() + p.at(kw * k.dilation_w);
      }
    }
  }

  // acc[r] += the taps of output row r of the block, at the window of its row 0.
  template <int kRows>
  [[gnu::always_inline]] void accumulate(Vec8 (&acc)[kRows], const float* window) const {
#pragma GCC unroll 32
    for (int tap = 0; tap < kKH * kKW; ++tap) {
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        Vec8 values;
        load8(values, window + r * row_step + offsets[tap]);
        acc[r] += this->weights[tap] * values;
      }
    }
  }
};

// Taps of an undilated filter at the same step kStep (1 or 2) on both axes, the cases that
// matter: which padded row and run each tap reads is known at compile time, so the compiler
// keeps one pointer per input row (and run) in registers instead of a table of offsets, and
// output rows whose windows overlap share the loads of their common rows.
template <int kKH, int kKW, int kStep>
struct UnitTaps : FixedWeights<kKH, kKW> {
  int64_t row_stride, odd_run;

  UnitTaps(const PaddedPlane& p, const Correlation& k, bool flipped)
      : row_stride(p.row_stride()), odd_run(kStep == 2 ? p.phase_columns : 0) {
    this->set(k.filter, flipped);
  }

  // Input row by input row, each loaded vector goes at once to every output row that reads it
  // (kh = row - r * kStep): few values live at a time, and each output still sums its taps in
  // (kh, kw) order.
  template <int kRows>
  [[gnu::always_inline]] void accumulate(Vec8 (&acc)[kRows], const float* window) const {
    constexpr int kInputRows = (kRows - 1) * kStep + kKH;
#pragma GCC unroll 16
    for (int row = 0; row < kInputRows; ++row) {
#pragma GCC unroll 8
      for (int kw = 0; kw < kKW; ++kw) {
        Vec8 values;
        load8(values, window + row * row_stride + kw % kStep * odd_run + kw / kStep);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          const int kh = row - r * kStep;
          if (kh >= 0 && kh < kKH) acc[r] += this->weights[kh * kKW + kw] * values;
        }
      }
    }
  }
};

// Where a correlation's outputs go and what they start from: out[i][j] = (accumulate ?
// out[i][j] : init) + taps.
struct OutputPlane {
  float* data;
  int64_t rows, columns;
  bool accumulate;
  float init;
};

// Output rows [i, i + kRows) at columns [j, j + lanes): kFull = all eight lanes (the
// loop body), otherwise the row's last, partial vector. Every loop over rows unrolls, so that
// the accumulators live in registers.
template <int kRows, bool kFull, typename Taps>
[[gnu::always_inline]] inline void correlate_vector(const float* window, const Taps& taps,
                                                    int64_t i, int64_t j, int64_t lanes,
                                                    const OutputPlane& out) {
  Vec8 acc[kRows];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    const float* o = out.data + (i + r) * out.columns + j;
    if (!out.accumulate) {
      acc[r] = Vec8{} + out.init;
    } else if (kFull) {
      load8(acc[r], o);
    } else {
      load_partial(acc[r], o, lanes);
    }
  }
  taps.template accumulate<kRows>(acc, window + j);
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    float* o = out.data + (i + r) * out.columns + j;
    if (kFull) {
      store8(o, acc[r]);
    } else {
      store_partial(o, acc[r], lanes);
    }
  }
}

// Output rows [i, i + kRows), eight columns at a time; `window` is output row i's.
template <int kRows, typename Taps>
[[gnu::always_inline]] inline void correlate_rows(const float* window, const Taps& taps, int64_t i,
                                                  const OutputPlane& out) {
  int64_t j = 0;
  for (; j + kLanes <= out.columns; j += kLanes) {
    correlate_vector<kRows, true>(window, taps, i, j, kLanes, out);
  }
  if (j < out.columns) correlate_vector<kRows, false>(window, taps, i, j, out.columns - j, out);
}

// Blocks of kRows output rows, then single rows. Four rows of 3x3 keep 4 accumulators and 9
// weights in registers; a stride-1 block loads 6 input rows instead of 12, a stride-2 block 9
// instead of 12, and the four rows' sums are independent chains of FMAs.
template <int kRows, typename Taps>
[[gnu::always_inline]] inline void correlate_blocked(const float* padded, int64_t row_step,
                                                     const Taps& taps, const OutputPlane& out) {
  int64_t i = 0;
  for (; i + kRows <= out.rows; i += kRows) {
    correlate_rows<kRows>(padded + i * row_step, taps, i, out);
  }
  for (; i < out.rows; ++i) correlate_rows<1>(padded + i * row_step, taps, i, out);
}

template <bool kFlipped, int kKH, int kKW>
[[gnu::always_inline]] inline void correlate_fixed(const float* padded, const PaddedPlane& p,
                                                   const Correlation& k, const OutputPlane& out) {
  const int64_t row_step = k.step_h * p.row_stride();
  if (k.dilation_h == 1 && k.dilation_w == 1 && k.step_h == 1 && p.phases == 1) {
    correlate_blocked<4>(padded, row_step, UnitTaps<kKH, kKW, 1>(p, k, kFlipped), out);
  } else if (k.dilation_h == 1 && k.dilation_w == 1 && k.step_h == 2 && p.phases == 2) {
    correlate_blocked<4>(padded, row_step, UnitTaps<kKH, kKW, 2>(p, k, kFlipped), out);
  } else {
    correlate_blocked<2>(padded, row_step, OffsetTaps<kKH, kKW>(p, k, kFlipped), out);
  }
}

// Any kernel size: one output vector at a time, taps read straight from the filter.
template <bool kFlipped>
[[gnu::always_inline]] inline void correlate_any(const float* padded, const PaddedPlane& p,
                                                 const Correlation& k, const OutputPlane& out) {
  const int64_t KH = k.kernel_h, KW = k.kernel_w, last_tap = KH * KW - 1;
  const int64_t row_stride = p.row_stride(), kernel_row_step = k.dilation_h * row_stride;
  for (int64_t i = 0; i < out.rows; ++i) {
    float* out_row = out.data + i * out.columns;
    const float* window = padded + i * k.step_h * row_stride;
    for (int64_t j = 0; j < out.columns; j += kLanes) {
      const int64_t lanes = std::min(kLanes, out.columns - j);
      Vec8 acc = Vec8{} + out.init;
      if (out.accumulate) {
        if (lanes == kLanes) {
          load8(acc, out_row + j);
        } else {
          load_partial(acc, out_row + j, lanes);
        }
      }
      for (int64_t kh = 0; kh < KH; ++kh) {
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t tap = kh * KW + kw;
          Vec8 values;
          load8(values, window + kh * kernel_row_step + p.at(kw * k.dilation_w) + j);
          acc += k.filter[kFlipped ? last_tap - tap : tap] * values;
        }
      }
      if (lanes == kLanes) {
        store8(out_row + j, acc);
      } else {
        store_partial(out_row + j, acc, lanes);
      }
    }
  }
}

// out[i][j] = (accumulate ? out[i][j] : init) + sum over (kh, kw) of filter(kh, kw) *
// padded[i*step_h + kh*dil_h][j*phases + kw*dil_w].
template <bool kFlipped>
[[gnu::always_inline]] inline void correlate(const float* padded, const PaddedPlane& p,
                                             const Correlation& k, const OutputPlane& out) {
  if (k.kernel_h == 3 && k.kernel_w == 3) {
    correlate_fixed<kFlipped, 3, 3>(padded, p, k, out);
  } else if (k.kernel_h == 5 && k.kernel_w == 5) {
    correlate_fixed<kFlipped, 5, 5>(padded, p, k, out);
  } else {
    correlate_any<kFlipped>(padded, p, k, out);
  }
}

}  // namespace convgemm::detail::depthwise
