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

void expect_backward_data_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                        std::mt19937_64& rng) {
  const Tensor dy = random_tensor(rng, shape.output_elements());
  const Tensor w = random_tensor(rng, shape.weight_elements());
  const bool accumulate = options.accumulate_gradients;
  const Tensor prior = accumulate ? random_tensor(rng, shape.input_elements())
                                  : filled_tensor(shape.input_elements(), 0.0f);
  Tensor dx = accumulate ? to_layout(shape, Role::input, prior) : nan_tensor(prior.size());
  Conv2d conv(shape, options);
  conv.backward_data(to_layout(shape, Role::output, dy).data(),
                     to_layout(shape, Role::weights, w).data(), dx.data());
  dx = from_layout(shape, Role::input, dx);

  const Conv2dShape nchw = with_layout(shape, Layout::nchw);
  Tensor reference(dx.size()), abs_terms(dx.size());
  naive::conv2d_backward_data(nchw, dy.data(), w.data(), reference.data());
  const Tensor abs_dy = abs_of(dy), abs_w = abs_of(w);
  naive::conv2d_backward_data(nchw, abs_dy.data(), abs_w.data(), abs_terms.data());
  EXPECT_TRUE(reference_is_trusted(reference, abs_terms));
  // Accumulating, the prior is one more term of the sum.
  for (std::size_t i = 0; i < dx.size(); ++i) {
    reference[i] += prior[i];
    abs_terms[i] += std::abs(prior[i]);
  }
  const int64_t k = shape.gemm_m() * shape.kernel_height * shape.kernel_width;
  EXPECT_TRUE(matches_reference(dx, reference, abs_terms, k + (accumulate ? 1 : 0)));
}

void expect_backward_weights_matches_naive(const Conv2dShape& shape, const Conv2dOptions& options,
                                           std::mt19937_64& rng, bool with_bias) {
  const Tensor x = random_tensor(rng, shape.input_elements());
  const Tensor dy = random_tensor(rng, shape.output_elements());
  Tensor dw = nan_tensor(shape.weight_elements());
  Tensor dbias = nan_tensor(shape.bias_elements());
  Conv2d conv(shape, options);
  conv.backward_weights(to_layout(shape, Role::input, x).data(),
                        to_layout(shape, Role::output, dy).data(), dw.data(),
                        with_bias ? dbias.data() : nullptr);
  dw = from_layout(shape, Role::weights, dw);

  const Conv2dShape nchw = with_layout(shape, Layout::nchw);
  Tensor reference_dw(dw.size()), abs_dw(dw.size());
  Tensor reference_dbias(dbias.size()), abs_dbias(dbias.size());
  naive::conv2d_backward_weights(nchw, x.data(), dy.data(), reference_dw.data(),
                                 reference_dbias.data());
  const Tensor abs_x = abs_of(x), abs_dy = abs_of(dy);
  naive::conv2d_backward_weights(nchw, abs_x.data(), abs_dy.data(), abs_dw.data(),
                                 abs_dbias.data());
  const int64_t k = shape.batch * shape.gemm_p();
  EXPECT_TRUE(reference_is_trusted(reference_dw, abs_dw)) << "dw";
  EXPECT_TRUE(matches_reference(dw, reference_dw, abs_dw, k)) << "dw";
  if (with_bias) {
    EXPECT_TRUE(reference_is_trusted(reference_dbias, abs_dbias)) << "dbias";
    EXPECT_TRUE(matches_reference(dbias, reference_dbias, abs_dbias, k)) << "dbias";
  }
}

}  // namespace convgemm::test
