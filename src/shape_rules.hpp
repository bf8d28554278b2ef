#pragma once
// The field rules shared by Conv2dShape and ConvTranspose2dShape (their fields have the same
// names and the same ranges; only the output-size rules differ).

#include <cstdint>
#include <limits>

#include "convgemm/shape.hpp"

namespace convgemm::detail {

// The largest GEMM dimension (M, N or K, and so any leading dimension) a shape may ask for: the
// range of a 32-bit integer, which every GEMM library the engine can call accepts (Debian's
// OpenBLAS takes `int`). It is the engine's own rule, so a shape is valid or not whatever the
// build links.
inline constexpr int64_t kMaxGemmDimension = std::numeric_limits<int32_t>::max();

// Throws std::invalid_argument naming the first field out of range: sizes >= 1, strides and
// dilations >= 1, paddings >= 0, groups >= 1 dividing in_channels and out_channels.
void validate_fields(const Conv2dShape& shape);

}  // namespace convgemm::detail
