#pragma once
// Central differences in double, for gradient checks against the naive forward passes.

#include <functional>

#include "support/tensors.hpp"

namespace convgemm::test {

// A power of two, so that value +- step is exact for the |values| <= 1 the tests use.
inline constexpr double kFiniteDifferenceStep = 1.0 / 16;

// d loss / d at[i] for every i, as (loss(at[i] + step) - loss(at[i] - step)) / (2 step); `at`
// is perturbed in place (the loss reads it) and restored after each element.
TensorD central_differences(TensorD& at, const std::function<double()>& loss,
                            double step = kFiniteDifferenceStep);

}  // namespace convgemm::test
