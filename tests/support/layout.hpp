#pragma once
// Tensors moved between the layouts, so that an nhwc plan can be checked against the nchw naive
// loops on explicitly transposed copies: the oracle shares nothing with the nhwc fast path.
// Every function takes and returns the nchw order's tensor for nchw shapes unchanged.

#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/shape.hpp"
#include "support/tensors.hpp"

namespace convgemm::test {

// [a, b, c, d] -> [a, c, d, b] and back: activations NCHW <-> NHWC, filters OIHW <-> OHWI (and
// a transposed convolution's [C, O/G, KH, KW] <-> [C, KH, KW, O/G]).
Tensor channels_last(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d);
Tensor channels_first(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d);

// `s` with another layout (the same fields otherwise).
Conv2dShape with_layout(Conv2dShape s, Layout layout);
ConvTranspose2dShape with_layout(ConvTranspose2dShape s, Layout layout);

// A convolution's tensors, given in nchw order, in the order of s.layout (to_layout) or given
// in s.layout's order, in nchw order (from_layout).
enum class Role { input, weights, output };
Tensor to_layout(const Conv2dShape& s, Role role, const Tensor& nchw);
Tensor from_layout(const Conv2dShape& s, Role role, const Tensor& t);
// The same for a transposed convolution (input [N, C, H, W], weights [C, O/G, KH, KW]).
Tensor to_layout(const ConvTranspose2dShape& s, Role role, const Tensor& nchw);
Tensor from_layout(const ConvTranspose2dShape& s, Role role, const Tensor& t);

}  // namespace convgemm::test
