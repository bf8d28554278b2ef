#pragma once
// The --shape option: "N=8,C=64,H=56,W=56,O=64,K=3,pad=1,stride=1" and optionally groups=,
// dilation=, KH=, KW= (instead of K). N, C, H, W, O and the kernel size are required.

#include <string_view>

#include "convgemm/shape.hpp"

namespace convgemm::bench {

// Throws std::invalid_argument naming the bad key or value (or, through Conv2dShape::validate,
// the bad field), e.g. "--shape: unknown key 'Q' (known: N C H W O K KH KW pad stride groups
// dilation)".
Conv2dShape parse_shape_spec(std::string_view spec);

}  // namespace convgemm::bench
