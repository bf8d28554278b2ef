#pragma once
// Packing a filter once per call, shared by the tasks of both layouts' passes.

#include <algorithm>
#include <cstdint>

#include "../parallel.hpp"
#include "convgemm/shape.hpp"
#include "flipped_filter.hpp"
#include "micro_kernel.hpp"
#include "operands.hpp"

namespace convgemm::detail {

// Packs every group's weight operand (`weights_of(g)`: `lanes` lanes over `depth` steps) into
// `packed` in PrepackedPanels's order, group g at g * prepacked_floats(lanes, depth, width),
// one task per (group, reduction block of kernel.kc steps).
template <class WeightsOfGroup>
void prepack_weights(const MicroKernel& kernel, WorkerPool& pool, int64_t groups, int64_t lanes,
                     int64_t depth, int64_t width, const WeightsOfGroup& weights_of,
                     float* packed) {
  const int64_t k_blocks = (depth + kernel.kc - 1) / kernel.kc;
  const int64_t lane_count = (lanes + width - 1) / width * width;
  const int64_t group_floats = prepacked_floats(lanes, depth, width);
  pool.run(groups * k_blocks, [&](int64_t task, int) {
    const int64_t g = task / k_blocks, step = task % k_blocks * kernel.kc;
    weights_of(g).panels(0, lanes, step, std::min(kernel.kc, depth - step), width,
                         packed + g * group_floats + step * lane_count);
  });
}

// forward's W_g as an operand: lanes its output channels, steps its K entries (an OIHW row and
// an OHWI row alike).
inline LanesAcrossRows filter_rows(const Conv2dShape& s, const float* w, int64_t g) {
  const int64_t M = s.gemm_m(), K = s.gemm_k();
  return LanesAcrossRows{w + g * M * K, K, /*per_image=*/K, /*image_stride=*/0};
}

// forward's filter for every group, `width` lanes per panel, packed at `packed`...
inline void prepack_filter(const Conv2dShape& s, const MicroKernel& kernel, WorkerPool& pool,
                           const float* w, int64_t width, float* packed) {
  prepack_weights(
      kernel, pool, s.groups, s.gemm_m(), s.gemm_k(), width,
      [&](int64_t g) { return filter_rows(s, w, g); }, packed);
}

// ... and there, group g's panels (of `s`'s filter, or of the flipped filter below when `s` is
// backward_data's forward convolution).
inline PrepackedPanels prepacked_filter(const Conv2dShape& s, const MicroKernel& kernel,
                                        const float* packed, int64_t width, int64_t g) {
  const int64_t M = s.gemm_m();
  return PrepackedPanels{packed + g * prepacked_floats(M, s.gemm_k(), width),
                         (M + width - 1) / width * width, kernel.kc};
}

// The flipped filter W'_g of backward_data's forward convolution (flipped_filter.hpp) for every
// group of `s` (the original convolution), `width` lanes per panel.
inline void prepack_flipped_filter(const Conv2dShape& s, const MicroKernel& kernel,
                                   WorkerPool& pool, const float* w, int64_t width, float* packed) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), T = s.kernel_height * s.kernel_width;
  prepack_weights(
      kernel, pool, s.groups, s.in_channels / s.groups, M * T, width,
      [&](int64_t g) {
        return FlippedFilter{&s, w + g * M * K};
      },
      packed);
}

}  // namespace convgemm::detail
