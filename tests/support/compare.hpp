#pragma once
// Comparisons that report like a test should: how many elements differ, and the first few with
// their index, both values and the tolerance that was allowed.

#include <gtest/gtest.h>

#include <cstdint>

#include "support/tensors.hpp"

namespace convgemm::test {

// |actual[i] - reference[i]| <= tolerance(k, abs_terms[i]) for every i (NaN fails), where
// abs_terms is the same pass run on absolute values (tolerance.hpp).
::testing::AssertionResult matches_reference(const Tensor& actual, const Tensor& reference,
                                             const Tensor& abs_terms, int64_t k);
// The same against a double reference (finite differences), with `extra` added to every bound.
::testing::AssertionResult matches_reference(const Tensor& actual, const TensorD& reference,
                                             const TensorD& abs_terms, int64_t k, double extra);

// benchdnn's trust check: a reference that is (nearly) all zeros cannot catch a wrong result.
// Elements with no terms at all (abs_terms == 0: every tap in the padding) are zero by
// construction and not counted; of the others, random data leaves none exactly zero, so more
// than 1% zeros (or no such element at all) means the test itself is broken.
::testing::AssertionResult reference_is_trusted(const Tensor& reference, const Tensor& abs_terms);
::testing::AssertionResult reference_is_trusted(const TensorD& reference, const TensorD& abs_terms);

// Same size and the same bits (memcmp), reporting the first differing element.
::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b);

// |a - b| <= bound, with the three numbers in the message.
::testing::AssertionResult near(double a, double b, double bound);

}  // namespace convgemm::test
