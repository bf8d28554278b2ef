// The vector type of the depthwise kernels and the zero-padded plane copies they read.
//
// Header-only and included only by depthwise.cpp: everything here is inline (always_inline for
// what runs per vector), so that both target_clones of each kernel compile it for their own ISA
// (AVX2+FMA or the baseline) instead of calling one shared baseline copy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "convgemm/detail/check.hpp"

namespace convgemm::detail::depthwise {

constexpr int64_t kLanes = 8;
// Eight floats in one GCC vector: one AVX register in the x86-64-v3 clone, two SSE registers in
// the baseline one. memcpy keeps unaligned loads and stores well-defined.
using Vec8 = float __attribute__((vector_size(kLanes * sizeof(float))));

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
  const Vec8 even_pairs = __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14);
  const Vec8 odd_pairs = __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
  even = __builtin_shufflevector(even_pairs, even_pairs, 0, 1, 4, 5, 2, 3, 6, 7);
  odd = __builtin_shufflevector(odd_pairs, odd_pairs, 0, 1, 4, 5, 2, 3, 6, 7);
}

// The inverse: 16 consecutive floats alternating even[0], odd[0], even[1], ... as (low, high),
// by unpacking within 128-bit lanes and then swapping lanes.
[[gnu::always_inline]] inline void interleave(const Vec8& even, const Vec8& odd, Vec8& low,
                                              Vec8& high) {
  const Vec8 first = __builtin_shufflevector(even, odd, 0, 8, 1, 9, 4, 12, 5, 13);
  const Vec8 second = __builtin_shufflevector(even, odd, 2, 10, 3, 11, 6, 14, 7, 15);
  low = __builtin_shufflevector(first, second, 0, 1, 2, 3, 8, 9, 10, 11);
  high = __builtin_shufflevector(first, second, 4, 5, 6, 7, 12, 13, 14, 15);
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
inline PaddedPlane padded_geometry(int64_t out_rows, int64_t out_columns, int64_t step_h,
                                   int64_t step_w, int64_t extent_h, int64_t extent_w,
                                   int64_t row_origin, int64_t column_origin) {
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

}  // namespace convgemm::detail::depthwise
