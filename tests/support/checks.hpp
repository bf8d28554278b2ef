#pragma once
// The fast path against the naive oracle, one function per pass, shared by the sweeps and by the
// thread, workspace and option tests. Each draws fresh random tensors from `rng`, starts every
// overwritten output as NaN, runs a Conv2d plan built with `options`, checks the reference is
// trusted and compares within tolerance.hpp's bound. Failures are non-fatal gtest failures;
// callers add SCOPED_TRACE(shape.to_string()) so that a failure names its shape.
// For an nhwc shape the tensors are drawn in nchw order, handed to the plan transposed and its
// results transposed back (support/layout.hpp), so the reference is always the nchw naive loop.

#include <random>

#include "convgemm/conv2d.hpp"
#include "convgemm/shape.hpp"

namespace convgemm::test {

void expect_forward_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                  std::mt19937_64& rng, bool with_bias);

// With options.accumulate_gradients, dx starts as random values instead, and must end as them
// plus the reference.
void expect_backward_data_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                        std::mt19937_64& rng);

// dw always; dbias too unless with_bias is false, in which case dbias is passed as nullptr.
// With options.accumulate_gradients, both start as random values, as dx does above.
void expect_backward_weights_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                           std::mt19937_64& rng, bool with_bias);

}  // namespace convgemm::test
