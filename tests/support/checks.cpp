#include "support/checks.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "convgemm/naive.hpp"
#include "support/compare.hpp"
#include "support/layout.hpp"
#include "support/tensors.hpp"

namespace convgemm::test {

void expect_forward_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                  std::mt19937_64& rng, bool with_bias) {
  const Tensor x = random_tensor(rng, shape.input_elements());
  const Tensor w = random_tensor(rng, shape.weight_elements());
  const Tensor bias = random_tensor(rng, shape.bias_elements());
  const float* bias_or_null = with_bias ? bias.data() : nullptr;
  Tensor y = nan_tensor(shape.output_elements());
  Conv2d conv(shape, options);
  conv.forward(to_layout(shape, Role::input, x).data(), to_layout(shape, Role::weights, w).data(),
               bias_or_null, y.data());
  y = from_layout(shape, Role::output, y);

  const Conv2dShape nchw = with_layout(shape, Layout::nchw);
  Tensor reference(y.size()), abs_terms(y.size());
  naive::conv2d_forward(nchw, x.data(), w.data(), bias_or_null, reference.data());
  const Tensor abs_x = abs_of(x), abs_w = abs_of(w), abs_bias = abs_of(bias);
  naive::conv2d_forward(nchw, abs_x.data(), abs_w.data(), with_bias ? abs_bias.data() : nullptr,
                        abs_terms.data());
  EXPECT_TRUE(reference_is_trusted(reference, abs_terms));
  // The bias is one more term of the sum.
  EXPECT_TRUE(matches_reference(y, reference, abs_terms, shape.gemm_k() + (with_bias ? 1 : 0)));
}

namespace {

// What an accumulating pass adds to: random values as large as the sum's own terms (1 + their
// magnitudes), so that a prior left out misses by far more than the tolerance even where a
// long reduction makes that tolerance wide. Zeros when not accumulating.
Tensor prior_for(bool accumulate, std::mt19937_64& rng, const Tensor& abs_terms) {
  if (!accumulate) return filled_tensor(static_cast<int64_t>(abs_terms.size()), 0.0f);
  Tensor prior = random_tensor(rng, static_cast<int64_t>(abs_terms.size()));
  for (std::size_t i = 0; i < prior.size(); ++i) prior[i] *= 1.0f + abs_terms[i];
  return prior;
}

// The prior is one more term of each sum.
void add_prior(const Tensor& prior, Tensor& reference, Tensor& abs_terms) {
  for (std::size_t i = 0; i < prior.size(); ++i) {
    reference[i] += prior[i];
    abs_terms[i] += std::abs(prior[i]);
  }
}

}  // namespace

void expect_backward_data_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                        std::mt19937_64& rng) {
  const Tensor dy = random_tensor(rng, shape.output_elements());
  const Tensor w = random_tensor(rng, shape.weight_elements());
  const Conv2dShape nchw = with_layout(shape, Layout::nchw);
  Tensor reference(shape.input_elements()), abs_terms(reference.size());
  naive::conv2d_backward_data(nchw, dy.data(), w.data(), reference.data());
  const Tensor abs_dy = abs_of(dy), abs_w = abs_of(w);
  naive::conv2d_backward_data(nchw, abs_dy.data(), abs_w.data(), abs_terms.data());
  EXPECT_TRUE(reference_is_trusted(reference, abs_terms));

  const bool accumulate = options.accumulate_gradients;
  const Tensor prior = prior_for(accumulate, rng, abs_terms);
  Tensor dx =
      accumulate ? to_layout(shape, Role::input, prior) : nan_tensor(shape.input_elements());
  Conv2d conv(shape, options);
  conv.backward_data(to_layout(shape, Role::output, dy).data(),
                     to_layout(shape, Role::weights, w).data(), dx.data());
  dx = from_layout(shape, Role::input, dx);
  add_prior(prior, reference, abs_terms);
  const int64_t k = shape.gemm_m() * shape.kernel_height * shape.kernel_width;
  EXPECT_TRUE(matches_reference(dx, reference, abs_terms, k + (accumulate ? 1 : 0)));
}

void expect_backward_weights_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                           std::mt19937_64& rng, bool with_bias) {
  const Tensor x = random_tensor(rng, shape.input_elements());
  const Tensor dy = random_tensor(rng, shape.output_elements());
  const Conv2dShape nchw = with_layout(shape, Layout::nchw);
  Tensor reference_dw(shape.weight_elements()), abs_dw(reference_dw.size());
  Tensor reference_dbias(shape.bias_elements()), abs_dbias(reference_dbias.size());
  naive::conv2d_backward_weights(nchw, x.data(), dy.data(), reference_dw.data(),
                                 reference_dbias.data());
  const Tensor abs_x = abs_of(x), abs_dy = abs_of(dy);
  naive::conv2d_backward_weights(nchw, abs_x.data(), abs_dy.data(), abs_dw.data(),
                                 abs_dbias.data());
  EXPECT_TRUE(reference_is_trusted(reference_dw, abs_dw)) << "dw";
  if (with_bias) {
    EXPECT_TRUE(reference_is_trusted(reference_dbias, abs_dbias)) << "dbias";
  }

  const bool accumulate = options.accumulate_gradients;
  const Tensor prior_dw = prior_for(accumulate, rng, abs_dw);
  const Tensor prior_dbias = prior_for(accumulate, rng, abs_dbias);
  Tensor dw =
      accumulate ? to_layout(shape, Role::weights, prior_dw) : nan_tensor(shape.weight_elements());
  Tensor dbias = accumulate ? prior_dbias : nan_tensor(shape.bias_elements());
  Conv2d conv(shape, options);
  conv.backward_weights(to_layout(shape, Role::input, x).data(),
                        to_layout(shape, Role::output, dy).data(), dw.data(),
                        with_bias ? dbias.data() : nullptr);
  dw = from_layout(shape, Role::weights, dw);
  add_prior(prior_dw, reference_dw, abs_dw);
  add_prior(prior_dbias, reference_dbias, abs_dbias);
  const int64_t k = shape.batch * shape.gemm_p() + (accumulate ? 1 : 0);
  EXPECT_TRUE(matches_reference(dw, reference_dw, abs_dw, k)) << "dw";
  if (with_bias) {
    EXPECT_TRUE(matches_reference(dbias, reference_dbias, abs_dbias, k)) << "dbias";
  }
}

}  // namespace convgemm::test
