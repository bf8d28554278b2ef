#pragma once
// Tensors of the tests: contiguous std::vector buffers filled from the seeded generator, and the
// element-wise transforms the checks need (absolute values for tolerances, double copies for the
// finite-difference and inner-product checks).

#include <cstdint>
#include <random>
#include <vector>

namespace convgemm::test {

using Tensor = std::vector<float>;
using TensorD = std::vector<double>;

// Uniform in [-1, 1): signs mixed so that cancellation happens, magnitudes near 1 so that the
// tolerance is neither trivially loose nor zero.
Tensor random_tensor(std::mt19937_64& rng, int64_t elements);

// Quiet NaN everywhere: an output the pass forgets to write then fails every comparison.
Tensor nan_tensor(int64_t elements);

// `value` everywhere, for sentinels and hand-worked inputs.
Tensor filled_tensor(int64_t elements, float value);

Tensor abs_of(const Tensor& t);
TensorD abs_of(const TensorD& t);
TensorD to_double(const Tensor& t);

// <a, b> accumulated in double; sum of all elements in double.
double dot(const Tensor& a, const Tensor& b);
double dot(const TensorD& a, const TensorD& b);
double sum_of(const Tensor& t);

// Sum over n and the plane of t [N, channels, plane], one value per channel, in double (dbias).
TensorD channel_sums(const Tensor& t, int64_t batch, int64_t channels, int64_t plane);

// Elements [begin, begin + count) of t, e.g. the images of a part of the batch.
Tensor slice(const Tensor& t, int64_t begin, int64_t count);

}  // namespace convgemm::test
