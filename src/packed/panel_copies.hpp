#pragma once
// The small copies every packer is made of (operands.cpp, nhwc_operands.cpp): runs of a source
// into panel rows, four lanes transposed into four panel columns, zeros. Inline, because each
// run is short (at most a panel's width or a chunk) and a call per run cost more than the copy.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../im2col.hpp"

namespace convgemm::detail::panel {

// Zeros in the last panel's lanes past `lanes`, for every step (micro_kernel.hpp's format).
inline void zero_padding_lanes(float* buffer, int64_t lanes, int64_t steps, int64_t width) {
  const int64_t used = lanes % width;
  if (used == 0) return;
  float* panel = buffer + lanes / width * steps * width;
  for (int64_t t = 0; t < steps; ++t)
    std::fill(panel + t * width + used, panel + (t + 1) * width, 0.0f);
}

// Operands whose lanes are the source's rows (each lane a contiguous run of steps) are packed
// four lanes at a time through a 4x4 transpose, kChunk steps at a time, so that the panel rows
// being filled stay in cache until every lane is in. (Writing lane by lane, `width` floats
// apart, touched a new cache line per float: 44% of backward_weights' time went into that
// gather.) Runs that need zeros or a stride are assembled in a tile of kChunk steps first.
inline constexpr int64_t kChunk = 64;
inline constexpr int64_t kMaxWidth = 64;       // BLIS's single-precision tiles are at most 32 wide
inline constexpr int64_t kFloatsPerLine = 16;  // floats per 64-byte cache line (prefetches)

// Four floats: one SSE register, which every x86-64 CPU has (the library is built without
// -march); GCC turns the shuffles below into unpcklps/unpckhps/movlhps/movhlps.
using Vec4 = float __attribute__((vector_size(4 * sizeof(float))));

// Four lanes into four adjacent columns of a panel `width` wide: dst[j * width + i] = lane[i][j]
// for j < count. Four steps at a time through registers (a 4x4 transpose); runs shorter than
// four one by one.
inline void transpose_four_lanes(const float* const lane[4], int64_t count, int64_t width,
                                 float* dst) {
  const auto four_rows = [&](int64_t j) {
    Vec4 v0, v1, v2, v3;
    __builtin_memcpy(&v0, lane[0] + j, sizeof v0);
    __builtin_memcpy(&v1, lane[1] + j, sizeof v1);
    __builtin_memcpy(&v2, lane[2] + j, sizeof v2);
    __builtin_memcpy(&v3, lane[3] + j, sizeof v3);
    const Vec4 t0 = __builtin_shufflevector(v0, v1, 0, 4, 1, 5);
    const Vec4 t1 = __builtin_shufflevector(v0, v1, 2, 6, 3, 7);
    const Vec4 t2 = __builtin_shufflevector(v2, v3, 0, 4, 1, 5);
    const Vec4 t3 = __builtin_shufflevector(v2, v3, 2, 6, 3, 7);
    const Vec4 w0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    const Vec4 w1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    const Vec4 w2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    const Vec4 w3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    __builtin_memcpy(dst + (j + 0) * width, &w0, sizeof w0);
    __builtin_memcpy(dst + (j + 1) * width, &w1, sizeof w1);
    __builtin_memcpy(dst + (j + 2) * width, &w2, sizeof w2);
    __builtin_memcpy(dst + (j + 3) * width, &w3, sizeof w3);
  };
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) four_rows(j);
  if (j == count) return;
  // The last rows: the four ending at count where there are four (rows written twice get the
  // same floats; nothing outside the runs is read), else one by one. A 3-channel layer's kernel
  // row is a 15-float run: its last three rows had been a scalar copy each.
  if (count >= 4) {
    four_rows(count - 4);
    return;
  }
  for (; j < count; ++j) {
    for (int i = 0; i < 4; ++i) dst[j * width + i] = lane[i][j];
  }
}

// A strided row into a panel's lanes: contiguous for stride 1, else im2col's gather. Runs are
// short (at most a panel's width), so stride 1 copies four floats at a time inline rather than
// calling memmove for each.
inline void copy_strided(const float* src, int64_t stride, int64_t count, float* dst) {
  if (stride != 1) {
    gather_strided(src, stride, count, dst);
    return;
  }
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    Vec4 v;
    __builtin_memcpy(&v, src + j, sizeof v);
    __builtin_memcpy(dst + j, &v, sizeof v);
  }
  for (; j < count; ++j) dst[j] = src[j];
}

// Zeros for `count` lanes of a run (padding taps), inline for the same reason.
inline void zero_lanes(float* dst, int64_t count) {
  for (int64_t j = 0; j < count; ++j) dst[j] = 0.0f;
}

// Calls f(std::integral_constant<int64_t, W>{}) with W = width for BLIS's single-precision
// tile sides, so that the packing loops see their width at compile time, and W = 0 otherwise.
template <class F>
inline void with_static_width(int64_t width, F&& f) {
  switch (width) {
    case 4:
      return f(std::integral_constant<int64_t, 4>{});
    case 6:
      return f(std::integral_constant<int64_t, 6>{});
    case 8:
      return f(std::integral_constant<int64_t, 8>{});
    case 12:
      return f(std::integral_constant<int64_t, 12>{});
    case 16:
      return f(std::integral_constant<int64_t, 16>{});
    case 32:
      return f(std::integral_constant<int64_t, 32>{});
    default:
      return f(std::integral_constant<int64_t, 0>{});
  }
}

}  // namespace convgemm::detail::panel
