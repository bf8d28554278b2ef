#include "skx_edge_tiles.hpp"

#include <array>

#include "../avx512.hpp"

namespace convgemm::detail {
namespace {

// Rows [16 * v, 16 * v + 16) of a tile whose first m rows are C's.
CONVGEMM_AVX512 __mmask16 rows_in(int v, int64_t m) {
  const int64_t rows = m - 16 * v;
  return rows >= 16 ? __mmask16(0xffff) : __mmask16((1u << rows) - 1u);
}

// `Vectors` 16-row vectors (m <= 16 * Vectors) by `Cols` columns: Vectors * Cols sums, held in
// registers (at most 24 of the 32).
template <int Vectors, int Cols>
CONVGEMM_AVX512 void edge_tile(int64_t depth, const float* a, const float* b, float beta, float* c,
                               int64_t cs_c, int64_t m) {
  __m512 sum[Vectors][Cols];
  for (int v = 0; v < Vectors; ++v) {
    for (int j = 0; j < Cols; ++j) sum[v][j] = _mm512_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t step = 0; step < depth; ++step) {
    const float* a_step = a + step * kSkxTileRows;
    const float* b_step = b + step * kSkxTileCols;
    __m512 rows[Vectors];
    for (int v = 0; v < Vectors; ++v) rows[v] = _mm512_load_ps(a_step + 16 * v);
    for (int j = 0; j < Cols; ++j) {
      const __m512 col = _mm512_set1_ps(b_step[j]);
      for (int v = 0; v < Vectors; ++v) sum[v][j] = _mm512_fmadd_ps(rows[v], col, sum[v][j]);
    }
  }
  for (int v = 0; v < Vectors; ++v) {
    const __mmask16 mask = rows_in(v, m);
    for (int j = 0; j < Cols; ++j) {
      float* column = c + j * cs_c + 16 * v;
      const __m512 out =
          beta == 0.0f ? sum[v][j] : _mm512_add_ps(_mm512_maskz_loadu_ps(mask, column), sum[v][j]);
      _mm512_mask_storeu_ps(column, mask, out);
    }
  }
}

template <int Vectors, int... Cols>
constexpr std::array<SkxEdgeTile, sizeof...(Cols)> tiles_of(std::integer_sequence<int, Cols...>) {
  return {&edge_tile<Vectors, Cols + 1>...};
}

constexpr auto kCols = std::make_integer_sequence<int, int(kSkxTileCols)>{};
constexpr std::array<std::array<SkxEdgeTile, kSkxTileCols>, 2> kTiles = {tiles_of<1>(kCols),
                                                                         tiles_of<2>(kCols)};

}  // namespace

SkxEdgeTile skx_edge_tile(int64_t m, int64_t n) {
  if ((m == kSkxTileRows && n == kSkxTileCols) || !cpu_has_avx512()) return nullptr;
  return kTiles[m > 16 ? 1 : 0][size_t(n - 1)];
}

}  // namespace convgemm::detail
