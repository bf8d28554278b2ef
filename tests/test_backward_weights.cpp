// backward_weights: a hand-worked case, naive on random shapes (dw and dbias, dbias == nullptr),
// and finite differences in double of the loss with respect to the weights and the bias.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/naive.hpp"
#include "plan.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/finite_differences.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"
#include "support/tolerance.hpp"

namespace convgemm {
namespace {

using test::Tensor;
using test::TensorD;
using ::testing::Each;
using ::testing::ElementsAreArray;

TEST(BackwardWeights, OnesGradientSumsEachTapsWindow) {
  // The input of Forward.TwoChannelFiveByFiveWithThreeFilters (x0 = 5i + j, x1 = i - j), dy all
  // ones on the 3x3 output: dw[o][c][kh][kw] = sum over the 3x3 block of x_c starting at
  // (kh, kw), the same for every o:  c = 0: 45 kh + 9 kw + 54;  c = 1: 9 kh - 9 kw.
  // dbias[o] = number of outputs per channel = 9.
  const Conv2dShape s{.in_channels = 2,
                      .in_height = 5,
                      .in_width = 5,
                      .out_channels = 3,
                      .kernel_height = 3,
                      .kernel_width = 3};
  Tensor x(50);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) {
      x[std::size_t(i * 5 + j)] = float(5 * i + j);
      x[std::size_t(25 + i * 5 + j)] = float(i - j);
    }
  Tensor dw = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(3);
  Conv2d(s).backward_weights(x.data(), test::filled_tensor(s.output_elements(), 1.0f).data(),
                             dw.data(), dbias.data());
  const Tensor per_output = {54, 63, 72,  99, 108, 117, 144, 153, 162,  // c = 0
                             0,  -9, -18, 9,  0,   -9,  18,  9,   0};   // c = 1
  for (int o = 0; o < 3; ++o) {
    EXPECT_THAT(test::slice(dw, o * 18, 18), ElementsAreArray(per_output)) << "o = " << o;
  }
  EXPECT_THAT(dbias, Each(9.0f));
}

TEST(BackwardWeights, MatchesNaiveOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 1000; ++i) {
    const Conv2dShape shape = test::random_valid_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(shape.to_string());
    SCOPED_TRACE(test::describe(options));
    test::expect_backward_weights_matches_naive(shape, options, rng, /*with_bias=*/i % 3 != 0);
    if (::testing::Test::HasFailure()) return;  // the first failing shape is the repro
  }
}

TEST(BackwardWeights, MatchesNaiveOnEveryShapeKind) {
  std::mt19937_64 rng(test::test_seed() + 1);
  for (test::ShapeKind kind : test::kAllShapeKinds)
    for (std::size_t block_bytes : {std::size_t{4}, std::size_t{0}})
      for (bool with_bias : {false, true}) {
        const Conv2dShape shape = test::random_valid_shape(rng, kind);
        SCOPED_TRACE(shape.to_string());
        test::expect_backward_weights_matches_naive(
            shape, Conv2dOptions{.num_threads = 2, .block_bytes = block_bytes}, rng, with_bias);
      }
}

TEST(BackwardWeights, PointwisePanelsOfOutputChannelsMatchNaive) {
  // A pointwise dW is split by output channels rather than by X_col rows: 70 channels per group
  // make two panels of 35.
  const Conv2dShape shape{.batch = 3,
                          .in_channels = 12,
                          .in_height = 9,
                          .in_width = 7,
                          .out_channels = 140,
                          .groups = 2};
  const detail::Blocking blocking = detail::choose_blocking(shape, {}, /*threads=*/2);
  EXPECT_GT(blocking.weight_channel_panels, 1);
  std::mt19937_64 rng(test::test_seed());
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    test::expect_backward_weights_matches_naive(shape, {.num_threads = threads}, rng,
                                                /*with_bias=*/true);
  }
}

TEST(BackwardWeights, NullBiasGradientLeavesDwUnchanged) {
  // dbias == nullptr skips the bias sum and nothing else: dw has the same bits either way.
  std::mt19937_64 rng(test::test_seed());
  Conv2dShape s{.batch = 3,
                .in_channels = 5,
                .in_height = 9,
                .in_width = 8,
                .out_channels = 7,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor dy = test::random_tensor(rng, s.output_elements());
  Tensor dw_with = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(7);
  Tensor dw_without = test::nan_tensor(s.weight_elements());
  Conv2d conv(s);
  conv.backward_weights(x.data(), dy.data(), dw_with.data(), dbias.data());
  conv.backward_weights(x.data(), dy.data(), dw_without.data(), nullptr);
  EXPECT_TRUE(test::bitwise_equal(dw_with, dw_without));
}

TEST(BackwardWeights, MatchesFiniteDifferencesOfTheDoubleForward) {
  // loss(w, b) = sum(naive_forward(x, w, b) * r) in double; its gradients are
  // backward_weights(x, r): dw and dbias.
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& s : test::finite_difference_shapes()) {
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.bias_elements());
    const Tensor r = test::random_tensor(rng, s.output_elements());
    const TensorD x_d = test::to_double(x), r_d = test::to_double(r);
    TensorD w_d = test::to_double(w), bias_d = test::to_double(bias);
    TensorD y_d(r.size());
    const auto loss = [&] {
      naive::conv2d_forward(s, x_d.data(), w_d.data(), bias_d.data(), y_d.data());
      return test::dot(y_d, r_d);
    };
    const TensorD numeric_dw = test::central_differences(w_d, loss);
    const TensorD numeric_dbias = test::central_differences(bias_d, loss);

    Tensor dw = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(s.bias_elements());
    Conv2d(s).backward_weights(x.data(), r.data(), dw.data(), dbias.data());

    TensorD abs_dw(dw.size()), abs_dbias(dbias.size()), abs_y(r.size());
    naive::conv2d_backward_weights(s, test::abs_of(x_d).data(), test::abs_of(r_d).data(),
                                   abs_dw.data(), abs_dbias.data());
    // sum |y * r| over the loss's terms, bounded for every perturbed w and b by |.| + step.
    TensorD perturbed_abs_w = test::abs_of(w_d), perturbed_abs_bias = test::abs_of(bias_d);
    for (double& v : perturbed_abs_w) v += test::kFiniteDifferenceStep;
    for (double& v : perturbed_abs_bias) v += test::kFiniteDifferenceStep;
    naive::conv2d_forward(s, test::abs_of(x_d).data(), perturbed_abs_w.data(),
                          perturbed_abs_bias.data(), abs_y.data());
    const double fd_error = test::central_difference_error(s.gemm_k() + 1 + s.output_elements(),
                                                           test::dot(abs_y, test::abs_of(r_d)),
                                                           test::kFiniteDifferenceStep);
    const int64_t k = s.batch * s.gemm_p();  // N * OH * OW
    EXPECT_TRUE(test::reference_is_trusted(numeric_dw, abs_dw));
    EXPECT_TRUE(test::matches_reference(dw, numeric_dw, abs_dw, k, fd_error)) << "dw";
    EXPECT_TRUE(test::matches_reference(dbias, numeric_dbias, abs_dbias, k, fd_error)) << "dbias";
  }
}

}  // namespace
}  // namespace convgemm
