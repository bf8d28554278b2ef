// Direct depthwise kernels (see kernels.hpp for why they are not GEMMs).
//
// Each task first copies its input plane into the slot's scratch with the zero padding written
// out (a PaddedPlane), so that every output reads its taps without bounds checks, and with the
// columns of a strided convolution de-interleaved by phase, so that the taps of eight
// neighbouring outputs are eight neighbouring floats. Outputs are then computed eight columns
// by a few rows at a time with all KH*KW taps accumulated in registers (each loaded input
// vector feeding every output row of the block that reads it). Sums run in tap order for every
// output, so results do not depend on threads, on the vector width or on the row blocking.
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
using Lanes8 = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));

// The kernels are compiled twice, for AVX2+FMA and for the baseline; the loader picks the one
// this CPU runs, so the library itself stays portable (no -march).
#define CONVGEMM_PLANE_KERNEL [[gnu::target_clones("arch=x86-64-v3", "default")]]

// Loads and stores go through references: returning a vector by value would change the ABI
// between the two clones (GCC's -Wpsabi), and everything here is inlined anyway.
[[gnu::always_inline]] inline void load8(Vec8& v, const float* src) {
  std::memcpy(&v, src, sizeof v);
}

[[gnu::always_inline]] inline void store8(float* dst, const Vec8& v) {
  std::memcpy(dst, &v, sizeof v);
}

// The first `lanes` floats of src, zeros after them (nothing past src + lanes is read).
[[gnu::always_inline]] inline void load_partial(Vec8& v, const float* src, int64_t lanes) {
  float values[kLanes] = {};
  std::copy(src, src + lanes, values);
  std::memcpy(&v, values, sizeof v);
}

[[gnu::always_inline]] inline void store_partial(float* dst, const Vec8& v, int64_t lanes) {
  float values[kLanes];
  std::memcpy(values, &v, sizeof v);
  std::copy(values, values + lanes, dst);
}

// The even- and odd-indexed floats of a and b taken as 16 consecutive floats. Written as an
// in-lane shuffle and a 64-bit permutation (vshufps + vpermpd with AVX2), which GCC does not
// find for the one-step shuffle (two vpermd with index vectors from memory and a blend).
[[gnu::always_inline]] inline void deinterleave(const Vec8& a, const Vec8& b, Vec8& even,
                                                Vec8& odd) {
  const Vec8 even_pairs = __builtin_shuffle(a, b, Lanes8{0, 2, 8, 10, 4, 6, 12, 14});
  const Vec8 odd_pairs = __builtin_shuffle(a, b, Lanes8{1, 3, 9, 11, 5, 7, 13, 15});
  even = __builtin_shuffle(even_pairs, Lanes8{0, 1, 4, 5, 2, 3, 6, 7});
  odd = __builtin_shuffle(odd_pairs, Lanes8{0, 1, 4, 5, 2, 3, 6, 7});
}

// The inverse: 16 consecutive floats alternating even[0], odd[0], even[1], ... as (low, high),
// by unpacking within 128-bit lanes and then swapping lanes.
[[gnu::always_inline]] inline void interleave(const Vec8& even, const Vec8& odd, Vec8& low,
                                              Vec8& high) {
  const Vec8 first = __builtin_shuffle(even, odd, Lanes8{0, 8, 1, 9, 4, 12, 5, 13});
  const Vec8 second = __builtin_shuffle(even, odd, Lanes8{2, 10, 3, 11, 6, 14, 7, 15});
  low = __builtin_shuffle(first, second, Lanes8{0, 1, 2, 3, 8, 9, 10, 11});
  high = __builtin_shuffle(first, second, Lanes8{4, 5, 6, 7, 12, 13, 14, 15});
}

// A zero-padded copy of a plane: logical element [r][c] = plane[r + row_origin][c +
// column_origin], or 0 outside the plane. Rows and columns cover every tap of every output, with
// the output width rounded up to whole vectors so that the last vector reads zeros, not past the
// buffer. A row is stored as `phases` runs (the correlation's column step): column c at
// (c % phases) * phase_columns + c / phases, so output j's tap at column j * phases + offset
// sits at at(offset) + j, contiguous in j.
// Two-phase planes (stride 2, the common strided case) round the runs up to whole vectors and
// keep one more row's worth of floats after the plane, where each row is first padded in
// logical order and then split into its runs by whole vectors.
struct PaddedPlane {
  int64_t rows, columns, row_origin, column_origin, phases, phase_columns;
  int64_t row_stride() const { return phases * phase_columns; }
  int64_t at(int64_t column) const { return column % phases * phase_columns + column / phases; }
  int64_t scratch_floats() const { return (rows + (phases == 2 ? 1 : 0)) * row_stride(); }
};

// The padded plane a correlation with these steps and dilations needs to produce `out_rows` x
// `out_columns` outputs, reading tap (kh, kw) of output (i, j) at padded[i*step_h + kh*dil_h]
// [j*step_w + kw*dil_w].
PaddedPlane padded_geometry(int64_t out_rows, int64_t out_columns, int64_t step_h, int64_t step_w,
                            int64_t extent_h, int64_t extent_w, int64_t row_origin,
                            int64_t column_origin) {
  const int64_t vector_columns = ceil_div(out_columns, kLanes) * kLanes;
  const int64_t columns = (vector_columns - 1) * step_w + extent_w;
  const int64_t runs = ceil_div(columns, step_w);
  return {(out_rows - 1) * step_h + extent_h,
          columns,
          row_origin,
          column_origin,
          step_w,
          step_w == 2 ? ceil_div(runs, kLanes) * kLanes : runs};
}

// Inline copies for the short rows of a plane, where calls to memmove and memset would cost
// more than the copying.
[[gnu::always_inline]] inline void copy_floats(float* dst, const float* src, int64_t count) {
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    Vec8 v;
    load8(v, src + i);
    store8(dst + i, v);
  }
  for (; i < count; ++i) dst[i] = src[i];
}

[[gnu::always_inline]] inline void fill_zeros(float* dst, int64_t count) {
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) store8(dst + i, Vec8{});
  for (; i < count; ++i) dst[i] = 0.0f;
}

// Splits a logical row of 2 * runs floats (runs a multiple of 8) into its even and odd
// columns, 16 floats at a time.
[[gnu::always_inline]] inline void split_phases(const float* row, int64_t runs, float* even,
                                                float* odd) {
  for (int64_t q = 0; q < runs; q += kLanes) {
    Vec8 a, b, e, o;
    load8(a, row + 2 * q);
    load8(b, row + 2 * q + kLanes);
    deinterleave(a, b, e, o);
    store8(even + q, e);
    store8(odd + q, o);
  }
}

[[gnu::always_inline]] inline void pad_plane(const float* plane, int64_t height, int64_t width,
                                             const PaddedPlane& p, float* padded) {
  // Columns c with 0 <= c + column_origin < width come from the plane, the rest are zeros.
  const int64_t begin = std::clamp<int64_t>(-p.column_origin, 0, p.columns);
  const int64_t end = std::clamp<int64_t>(width - p.column_origin, begin, p.columns);
  // A two-phase row is padded in logical order in the row buffer past the plane, then split:
  // the buffer's zero borders are the same for every row, so they are written once.
  float* row_buffer = padded + p.rows * p.row_stride();
  if (p.phases == 2) {
    fill_zeros(row_buffer, begin);
    fill_zeros(row_buffer + end, p.row_stride() - end);
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    float* dst = padded + r * p.row_stride();
    const int64_t row = r + p.row_origin;
    if (row < 0 || row >= height) {
      fill_zeros(dst, p.row_stride());
      continue;
    }
    const float* src = plane + row * width;  // logical column c reads src[c + column_origin]
    if (p.phases == 1) {
      fill_zeros(dst, begin);
      copy_floats(dst + begin, src + begin + p.column_origin, end - begin);
      fill_zeros(dst + end, p.row_stride() - end);
    } else if (p.phases == 2) {
      copy_floats(row_buffer + begin, src + begin + p.column_origin, end - begin);
      split_phases(row_buffer, p.phase_columns, dst, dst + p.phase_columns);
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
// weights in registers; a stride-1 block loads 6 input rows instead of 12.
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
    correlate_blocked<1>(padded, row_step, UnitTaps<kKH, kKW, 2>(p, k, kFlipped), out);
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

// ---- Stride-2 backward_data as a gather ------------------------------------------------------
//
// With stride 2 and no dilation, dx[ih][iw] = sum of w[kh][kw] * dy[oh][ow] over the taps with
// 2*oh = ih + pt - kh and 2*ow = iw + pl - kw: only the kh of the parity of ih + pt, and the kw
// of the parity of iw + pl, reach a pixel. A dx row is computed 16 columns at a time as two
// vectors, one per column parity t (dx columns 2c + t), each a unit-step correlation of a dy
// row with its own kw; the two are interleaved into 16 consecutive floats. Each pixel thus sums
// exactly its own taps (no multiplications by zero, no scatter), in (kh, kw) order.

bool gathers_stride_two(const Conv2dShape& s) {
  return s.stride_height == 2 && s.stride_width == 2 && s.dilation_height == 1 &&
         s.dilation_width == 1;
}

// dy padded for the stride-2 gather: rows from oh = floor((pt - (KH-1)) / 2) to the last one
// dx row H-1 reads; columns c + (pl + t - kw) / 2 for c below 8 per 16-column block of dx.
PaddedPlane stride_two_geometry(const Conv2dShape& s) {
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

bool uses_stride_two_gather(const Conv2dShape& s) {
  return gathers_stride_two(s) && ((s.kernel_height == 3 && s.kernel_width == 3) ||
                                   (s.kernel_height == 5 && s.kernel_width == 5));
}

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
