// backward_data: hand-worked cases, naive on random shapes (both scatter orders: parallel waves
// and one task per image), the adjoint identity with forward, and finite differences in double.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <utility>
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
using ::testing::ElementsAreArray;

int64_t reduction_length(const Conv2dShape& s) {
  return s.gemm_m() * s.kernel_height * s.kernel_width;  // O/G * KH * KW
}

TEST(BackwardData, AllOnesScatterCountsTheWindowsOverEachPixel) {
  // 5x5 input, 3x3 kernel, no padding: a pixel in row i is covered by a_i = [1 2 3 2 1][i]
  // windows vertically and a_j horizontally. With dy and w all ones, dx[c][i][j] = O * a_i * a_j.
  const Conv2dShape s{.in_channels = 2,
                      .in_height = 5,
                      .in_width = 5,
                      .out_channels = 3,
                      .kernel_height = 3,
                      .kernel_width = 3};
  Tensor dx = test::nan_tensor(s.input_elements());
  Conv2d(s).backward_data(test::filled_tensor(s.output_elements(), 1.0f).data(),
                          test::filled_tensor(s.weight_elements(), 1.0f).data(), dx.data());
  const Tensor plane = {3, 6,  9,  6,  3,  //
                        6, 12, 18, 12, 6,  //
                        9, 18, 27, 18, 9,  //
                        6, 12, 18, 12, 6,  //
                        3, 6,  9,  6,  3};
  EXPECT_THAT(test::slice(dx, 0, 25), ElementsAreArray(plane));
  EXPECT_THAT(test::slice(dx, 25, 25), ElementsAreArray(plane));
}

TEST(BackwardData, StridedWindowsOverlapOnOnePixel) {
  // 1x5 input, 1x3 kernel w = [1 2 3], stride 2: windows cover pixels 0-2 and 2-4, so
  // dx = [1*1, 1*2, 1*3 + 10*1, 10*2, 10*3] for dy = [1 10]; padding 1 on the right adds a
  // third window (pixels 4, 5, 6) of which only pixel 4 exists: + 100*1.
  Conv2dShape s{.in_height = 1, .in_width = 5, .kernel_width = 3, .stride_width = 2};
  Tensor dx = test::nan_tensor(5);
  const Tensor w = {1, 2, 3};
  Conv2d(s).backward_data(Tensor{1, 10}.data(), w.data(), dx.data());
  EXPECT_THAT(dx, ElementsAreArray({1, 2, 13, 20, 30}));
  s.pad_right = 2;
  ASSERT_EQ(s.out_width(), 3);
  Conv2d(s).backward_data(Tensor{1, 10, 100}.data(), w.data(), dx.data());
  EXPECT_THAT(dx, ElementsAreArray({1, 2, 13, 20, 130}));
}

TEST(BackwardData, MatchesNaiveOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 1000; ++i) {
    const Conv2dShape shape = test::random_valid_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(shape.to_string());
    SCOPED_TRACE(test::describe(options));
    test::expect_backward_data_matches_naive(shape, options, rng);
    if (::testing::Test::HasFailure()) return;  // the first failing shape is the repro
  }
}

TEST(BackwardData, MatchesNaiveOnEveryShapeKind) {
  std::mt19937_64 rng(test::test_seed() + 1);
  for (test::ShapeKind kind : test::kAllShapeKinds)
    for (std::size_t block_bytes : {std::size_t{4}, std::size_t{0}})
      for (int repeat = 0; repeat < 2; ++repeat) {
        const Conv2dShape shape = test::random_valid_shape(rng, kind);
        SCOPED_TRACE(shape.to_string());
        test::expect_backward_data_matches_naive(
            shape, Conv2dOptions{.num_threads = 2, .block_bytes = block_bytes}, rng);
      }
}

TEST(BackwardData, MatchesNaiveWhenBlocksOverlapTooMuchForWaves) {
  // One-row blocks of a tall kernel at stride 1: blocks two apart still share input rows, so the
  // plan must run each image's blocks in one task (plan.hpp). Check it really does, then check
  // the result; and the wave path on a short kernel beside it.
  std::mt19937_64 rng(test::test_seed());
  const Conv2dOptions tiny{.num_threads = 3, .block_bytes = 4};
  Conv2dShape tall{.batch = 3,
                   .in_channels = 4,
                   .in_height = 12,
                   .in_width = 7,
                   .out_channels = 6,
                   .kernel_height = 5,
                   .kernel_width = 3,
                   .groups = 2};
  tall.set_padding(2, 1);
  Conv2dShape dilated = tall;
  dilated.kernel_height = 3;
  dilated.dilation_height = 3;
  dilated.stride_height = 2;
  Conv2dShape short_kernel = tall;
  short_kernel.kernel_height = 2;
  for (const auto& [shape, waves] :
       {std::pair{tall, false}, std::pair{dilated, false}, std::pair{short_kernel, true}}) {
    SCOPED_TRACE(shape.to_string());
    const detail::Blocking blocking = detail::choose_blocking(shape, tiny, tiny.num_threads);
    EXPECT_EQ(blocking.rows_per_block, 1);
    EXPECT_EQ(blocking.blocks_per_image, shape.out_height());
    EXPECT_EQ(blocking.data_waves, waves);
    test::expect_backward_data_matches_naive(shape, tiny, rng);
  }
}

TEST(BackwardData, IsAdjointOfForward) {
  // <conv(x), dy> = <x, backward_data(dy)>, both sides from the engine's float outputs, the
  // inner products in double; each side errs by its own pass's rounding (tolerance.hpp).
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 400; ++i) {
    const Conv2dShape s = test::random_valid_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    Tensor y = test::nan_tensor(s.output_elements()), dx = test::nan_tensor(s.input_elements());
    Conv2d conv(s, options);
    conv.forward(x.data(), w.data(), nullptr, y.data());
    conv.backward_data(dy.data(), w.data(), dx.data());
    Tensor abs_y(y.size());
    naive::conv2d_forward(s, test::abs_of(x).data(), test::abs_of(w).data(), nullptr, abs_y.data());
    const double abs_inner = test::dot(abs_y, test::abs_of(dy));
    ASSERT_GT(abs_inner, 0.0);
    ASSERT_TRUE(test::near(test::dot(y, dy), test::dot(x, dx),
                           test::adjoint_tolerance(s.gemm_k(), reduction_length(s), abs_inner)));
  }
}

TEST(BackwardData, MatchesFiniteDifferencesOfTheDoubleForward) {
  // loss(x) = sum(naive_forward(x, w) * r) in double; its gradient is backward_data(r).
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& s : test::finite_difference_shapes()) {
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor r = test::random_tensor(rng, s.output_elements());
    TensorD x_d = test::to_double(x);
    const TensorD w_d = test::to_double(w), r_d = test::to_double(r);
    TensorD y_d(r.size());
    const auto loss = [&] {
      naive::conv2d_forward(s, x_d.data(), w_d.data(), nullptr, y_d.data());
      return test::dot(y_d, r_d);
    };
    const TensorD numeric = test::central_differences(x_d, loss);

    Tensor dx = test::nan_tensor(s.input_elements());
    Conv2d(s).backward_data(r.data(), w.data(), dx.data());
    TensorD abs_terms(dx.size()), abs_y(r.size());
    naive::conv2d_backward_data(s, test::abs_of(r_d).data(), test::abs_of(w_d).data(),
                                abs_terms.data());
    // sum |y * r| over the loss's terms, bounded for every perturbed x by |x| + step.
    TensorD perturbed_abs_x = test::abs_of(x_d);
    for (double& v : perturbed_abs_x) v += test::kFiniteDifferenceStep;
    naive::conv2d_forward(s, perturbed_abs_x.data(), test::abs_of(w_d).data(), nullptr,
                          abs_y.data());
    const double loss_abs = test::dot(abs_y, test::abs_of(r_d));
    const double fd_error = test::central_difference_error(s.gemm_k() + s.output_elements(),
                                                           loss_abs, test::kFiniteDifferenceStep);
    EXPECT_TRUE(test::reference_is_trusted(numeric, abs_terms));
    EXPECT_TRUE(test::matches_reference(dx, numeric, abs_terms, reduction_length(s), fd_error));
  }
}

}  // namespace
}  // namespace convgemm
