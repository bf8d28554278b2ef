#pragma once
// The field rules shared by Conv2dShape and ConvTranspose2dShape (their fields have the same
// names and the same ranges; only the output-size rules differ).

#include "convgemm/shape.hpp"

namespace convgemm::detail {

// Throws std::invalid_argument naming the first field out of range: sizes >= 1, strides and
// dilations >= 1, paddings >= 0, groups >= 1 dividing in_channels and out_channels.
void validate_fields(const Conv2dShape& shape);

}  // namespace convgemm::detail
