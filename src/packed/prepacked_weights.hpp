#pragma once
// Packing a filter once per call, shared by the tasks of both layouts' passes.

#include <algorithm>
#include <cstdint>

#include "../parallel.hpp"
#include "convgemm/shape.hpp"
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

// How a forward convolution `s` (or backward_data's, on the flipped filter) gets its filter:
// runs tasks(filter_of) with filter_of(g) the operand of group g's filter, either
// `operand_of(g)` itself, which the tasks pack (in_tasks), or its panels packed once into
// `packed` (`width` lanes wide) beforehand, unless `already_packed` says they are there.
template <class OperandOfGroup, class Tasks>
void with_filter(const Conv2dShape& s, const MicroKernel& kernel, WorkerPool& pool, bool in_tasks,
                 bool already_packed, int64_t width, const OperandOfGroup& operand_of,
                 float* packed, const Tasks& tasks) {
  if (in_tasks) {
    tasks(operand_of);
    return;
  }
  const int64_t M = s.gemm_m(), K = s.gemm_k();
  if (!already_packed) prepack_weights(kernel, pool, s.groups, M, K, width, operand_of, packed);
  tasks([&](int64_t g) {
    return PrepackedPanels{packed + g * prepacked_floats(M, K, width),
                           (M + width - 1) / width * width, kernel.kc};
  });
}

}  // namespace convgemm::detail
