#include "bias_write_back.hpp"

#include <algorithm>
#include <cstdint>

#include <xmmintrin.h>

namespace convgemm::detail {

// One float addition per element in either clone, so the bits do not depend on the CPU.
#define CONVGEMM_WRITE_BACK [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]

CONVGEMM_WRITE_BACK void add_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols,
                                          const float* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    const float b = bias[i];
    for (int64_t j = 0; j < cols; ++j) row[j] += b;
  }
}

CONVGEMM_WRITE_BACK void add_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols,
                                             const float* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
  }
}

CONVGEMM_WRITE_BACK void set_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols,
                                          const float* bias) {
  for (int64_t i = 0; i < rows; ++i) std::fill(y + i * ld, y + i * ld + cols, bias[i]);
}

CONVGEMM_WRITE_BACK void set_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols,
                                             const float* bias) {
  for (int64_t i = 0; i < rows; ++i) std::copy(bias, bias + cols, y + i * ld);
}

// (SSE's streaming store, which every x86-64 CPU has: the write-combining buffers merge four
// of them into one line.)
CONVGEMM_WRITE_BACK void stream_tile_rows(float* y, int64_t ld, int64_t rows, int64_t cols,
                                          const float* tile, int64_t tile_ld, const float* row_bias,
                                          const float* column_bias) {
  constexpr int64_t kLine = 16;  // floats per cache line
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    const float* from = tile + i * tile_ld;
    int64_t j = 0;
    if (reinterpret_cast<std::uintptr_t>(row) % (kLine * sizeof(float)) == 0) {
      const __m128 row_add = _mm_set1_ps(row_bias != nullptr ? row_bias[i] : 0.0f);
      for (; j + kLine <= cols; j += kLine) {
        for (int64_t q = j; q < j + kLine; q += 4) {
          __m128 v = _mm_loadu_ps(from + q);
          if (row_bias != nullptr) v = _mm_add_ps(v, row_add);
          if (column_bias != nullptr) v = _mm_add_ps(v, _mm_loadu_ps(column_bias + q));
          _mm_stream_ps(row + q, v);
        }
      }
    }
    for (; j < cols; ++j) {
      float v = from[j];
      if (row_bias != nullptr) v += row_bias[i];
      if (column_bias != nullptr) v += column_bias[j];
      row[j] = v;
    }
  }
}

void finish_streaming_stores() { _mm_sfence(); }

}  // namespace convgemm::detail
