#pragma once
// Packing a filter once per call, shared by the tasks of both layouts' passes.

#include <algorithm>
#include <cstdint>

#include "../parallel.hpp"
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

}  // namespace convgemm::detail
