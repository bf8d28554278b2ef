#pragma once
// The bias as the packed forward passes add it: to a finished tile of the output while it is in
// cache (packed_gemm's finish hook), one pass of exact additions, or, where a tile's reduction
// is one block, as the tile's first values (its start hook). Out of line and compiled for
// the widest vectors the CPU has (bias_write_back.cpp): a K = 64 layer (1x1, 64 channels) spent
// 16% of its forward in this pass when it ran four floats at a time.

#include <cstdint>

namespace convgemm::detail {

// y[i * ld + j] += bias[i] for i < rows, j < cols (nchw: a tile's rows are output channels).
void add_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols, const float* bias);

// y[i * ld + j] += bias[j] for i < rows, j < cols (nhwc: a tile's columns are output channels).
void add_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols, const float* bias);

// y[i * ld + j] = bias[i], and = bias[j]: a tile's first values where its reduction is one
// block (packed_gemm's start hook), so that the block adds to the bias in the micro-kernel.
void set_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols, const float* bias);
void set_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols, const float* bias);

// y[i * ld + j] = tile[i * tile_ld + j] (+ row_bias[i], + column_bias[j], where not null) for
// i < rows, j < cols, with stores that bypass the caches where a row's run is whole cache
// lines: a tile of an output too large to stay in cache, which a normal store would first read
// from memory. The stores are ordered with the caller's later ones only after
// finish_streaming_stores().
void stream_tile_rows(float* y, int64_t ld, int64_t rows, int64_t cols, const float* tile,
                      int64_t tile_ld, const float* row_bias, const float* column_bias);
void finish_streaming_stores();

}  // namespace convgemm::detail
