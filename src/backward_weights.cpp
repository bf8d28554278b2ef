#include <algorithm>
#include <cassert>
#include <type_traits>

#include "gemm.hpp"
#include "kernels.hpp"

namespace convgemm::detail {

void backward_weights_block(GemmLibrary gemm, const Conv2dShape& s, const float* x_group,
                            const float* dy_group, const ColumnBlock& block, int64_t m_begin,
                            int64_t m_end, float beta, float* dw_group, float* scratch) {
  const int64_t K = s.gemm_k(), P = s.gemm_p();
  const int64_t columns = block.columns(s), first_column = block.oh_begin * s.out_width();
  const int64_t panel = block.k_end - block.k_begin;

  // Rows [k_begin, k_end) of the block of X_col: for a pointwise kernel they are input channels.
  const float* x_col = x_group + block.k_begin * P + first_column;
  int64_t ld_x_col = P;
  if (!is_pointwise(s)) {
    im2col_block(s, x_group, block, scratch);
    x_col = scratch;
    ld_x_col = columns;
  }
  sgemm(gemm, Transpose::no, Transpose::yes, m_end - m_begin, panel, columns,
        dy_group + m_begin * P + first_column, /*lda=*/P, x_col, ld_x_col, beta,
        dw_group + m_begin * K + block.k_begin, /*ldc=*/K);
}

// Compiled for the widest vectors this CPU runs, as channel_sums_nhwc below (built for the
// baseline, its eight lanes were four SSE2 pairs: 13% of 1x1 64->256's backward_weights at
// batch 8 went into this sum).
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]] double channel_sum(
    const float* t, int64_t channels, int64_t plane, int64_t channel, int64_t begin,
    int64_t steps) {
  // 32 double lanes: independent chains the compiler turns into vector adds, four AVX-512 ones
  // side by side (one chain of eight lanes waited on each add's latency; one scalar chain ran
  // at a quarter of the memory speed).
  constexpr int64_t kLanes = 32;
  double lanes[kLanes] = {};
  for (int64_t step = begin, end = begin + steps; step < end;) {
    const int64_t n = step / plane, p_begin = step % plane;
    const int64_t p_end = std::min(plane, p_begin + (end - step));
    const float* values = t + (n * channels + channel) * plane;
    int64_t p = p_begin;
    for (; p < p_end && p % kLanes != 0; ++p) lanes[p % kLanes] += values[p];
    for (; p + kLanes <= p_end; p += kLanes) {
      for (int64_t lane = 0; lane < kLanes; ++lane) lanes[lane] += values[p + lane];
    }
    for (; p < p_end; ++p) lanes[p % kLanes] += values[p];
    step += p_end - p_begin;
  }
  for (int64_t half = kLanes / 2; half >= 1; half /= 2) {
    for (int64_t lane = 0; lane < half; ++lane) lanes[lane] += lanes[lane + half];
  }
  return lanes[0];
}

// The widest vectors this CPU runs (the library is built without -march): the double adds are
// exact roundings of the same operations in the same order in every clone, so the sums do not
// depend on the CPU.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]] void channel_sums_nhwc(
    const float* t, int64_t rows, int64_t channels, int64_t begin, int64_t count, double* sums) {
  // One double chain per channel over the rows in order, the channels side by side (vector adds
  // across channels): the same order whatever range a channel is summed in. A whole range has
  // a fixed count, so its chains stay in registers.
  assert(count <= kChannelsPerSum);
  double lanes[kChannelsPerSum] = {};
  const auto add_rows = [&](auto count_of_range) {
    for (int64_t row = 0; row < rows; ++row) {
      const float* values = t + row * channels + begin;
      for (int64_t c = 0; c < count_of_range; ++c) lanes[c] += values[c];
    }
  };
  if (count == kChannelsPerSum) {
    add_rows(std::integral_constant<int64_t, kChannelsPerSum>{});
  } else {
    add_rows(count);
  }
  for (int64_t c = 0; c < count; ++c) sums[c] = lanes[c];
}

}  // namespace convgemm::detail
