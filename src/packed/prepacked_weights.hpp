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

// forward's W_g (lanes its output channels, steps its K entries: an OIHW row and an OHWI row
// alike) for every group, `width` lanes per panel.
inline void prepack_filter(const Conv2dShape& s, const MicroKernel& kernel, WorkerPool& pool,
                           const float* w, int64_t width, float* packed) {
  const int64_t M = s.gemm_m(), K = s.gemm_k();
  prepack_weights(
      kernel, pool, s.groups, M, K, width,
      [&](int64_t g) {
        return LanesAcrossRows{w + g * M * K, K, /*per_image=*/K, 0};
      },
      packed);
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
