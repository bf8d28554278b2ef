// Forward: hand-worked cases with exact numbers, then the fast path against naive on hundreds of
// random shapes and options, and the stride property.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "convgemm/conv2d.hpp"
#include "convgemm/naive.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"
#include "support/tolerance.hpp"

namespace convgemm {
namespace {

using test::Tensor;
using ::testing::ElementsAreArray;

// Runs the fast path (a plan and the free function) and the reference; all three must agree
// exactly, because every input and every partial sum here is a small integer.
Tensor forward_exact(const Conv2dShape& s, const Tensor& x, const Tensor& w,
                     const float* bias = nullptr) {
  Tensor y = test::nan_tensor(s.output_elements());
  Conv2d conv(s);
  conv.forward(x.data(), w.data(), bias, y.data());
  Tensor from_free_function = test::nan_tensor(s.output_elements());
  conv2d_forward(s, x.data(), w.data(), bias, from_free_function.data());
  Tensor reference = test::nan_tensor(s.output_elements());
  naive::conv2d_forward(s, x.data(), w.data(), bias, reference.data());
  EXPECT_TRUE(test::bitwise_equal(y, from_free_function));
  EXPECT_TRUE(test::bitwise_equal(y, reference));
  return y;
}

TEST(Forward, TwoByTwoKernelWorkedExample) {
  // x = [0 1 2; 3 4 5; 6 7 8], k = [0 1; 2 3]:
  //   y[0][0] = 0*0 + 1*1 + 2*3 + 3*4 = 19     y[0][1] = 0*1 + 1*2 + 2*4 + 3*5 = 25
  //   y[1][0] = 0*3 + 1*4 + 2*6 + 3*7 = 37     y[1][1] = 0*4 + 1*5 + 2*7 + 3*8 = 43
  const Conv2dShape s{.in_height = 3, .in_width = 3, .kernel_height = 2, .kernel_width = 2};
  EXPECT_THAT(forward_exact(s, {0, 1, 2, 3, 4, 5, 6, 7, 8}, {0, 1, 2, 3}),
              ElementsAreArray({19, 25, 37, 43}));
}

TEST(Forward, TwoChannelFiveByFiveWithThreeFilters) {
  // Input: channel 0 x0[i][j] = 5i + j (0..24), channel 1 x1[i][j] = i - j. Three 3x3x2
  // filters, stride 1, no padding: output 3 x 3 x 3, y[o][r][c] with window origin (r, c).
  //  A: ones on channel 0, zeros on channel 1 -> the 3x3 window sum of x0:
  //     sum_{i=r..r+2, j=c..c+2} (5i + j) = 3*5*(3r+3) + 3*(3c+3) = 45r + 9c + 54
  //  B: centre tap 1 on channel 0, ones on channel 1 -> x0[r+1][c+1] + window sum of x1:
  //     (5r + c + 6) + (3*(3r+3) - 3*(3c+3)) = 14r - 8c + 6
  //  C: channel 0 top-left 1 and bottom-right -1, channel 1 centre 2 ->
  //     x0[r][c] - x0[r+2][c+2] + 2*x1[r+1][c+1] = -12 + 2(r - c)
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
  // w [O=3, C=2, 3, 3]
  const Tensor w = {1, 1, 1, 1, 1, 1, 1, 1, 1,  0, 0, 0, 0, 0, 0, 0, 0, 0,   // A
                    0, 0, 0, 0, 1, 0, 0, 0, 0,  1, 1, 1, 1, 1, 1, 1, 1, 1,   // B
                    1, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 2, 0, 0, 0, 0};  // C
  EXPECT_THAT(forward_exact(s, x, w), ElementsAreArray({
                                          54,  63,  72,  99,  108, 117, 144, 153, 162,  // A
                                          6,   -2,  -10, 20,  12,  4,   34,  26,  18,   // B
                                          -12, -14, -16, -10, -12, -14, -8,  -10, -12,  // C
                                      }));
  // A bias adds per output channel.
  const Tensor bias = {1, -2, 100};
  const Tensor y = forward_exact(s, x, w, bias.data());
  EXPECT_EQ(y[0], 55);
  EXPECT_EQ(y[9 + 4], 10);
  EXPECT_EQ(y[18 + 8], 88);
}

TEST(Forward, AllOnesKernelCountsTheTapsInsideTheImage) {
  // Caffe's check: ones in, ones as weights, padding 1: each output is C times the number of
  // its 3x3 taps that land in the image: 4 at corners, 6 on edges, 9 inside; here C = 3.
  Conv2dShape s{.in_channels = 3,
                .in_height = 4,
                .in_width = 5,
                .out_channels = 2,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  const Tensor y = forward_exact(s, test::filled_tensor(s.input_elements(), 1.0f),
                                 test::filled_tensor(s.weight_elements(), 1.0f));
  const Tensor plane = {12, 18, 18, 18, 12,  //
                        18, 27, 27, 27, 18,  //
                        18, 27, 27, 27, 18,  //
                        12, 18, 18, 18, 12};
  EXPECT_THAT(test::slice(y, 0, 20), ElementsAreArray(plane));
  EXPECT_THAT(test::slice(y, 20, 20), ElementsAreArray(plane));
}

TEST(Forward, GroupsSeeOnlyTheirOwnChannels) {
  // 4 channels valued 1, 2, 3, 4 everywhere, 2 groups, 1x1 kernel of ones, O = 4: outputs of
  // group 0 sum channels 0-1 (= 3), of group 1 channels 2-3 (= 7).
  const Conv2dShape s{
      .in_channels = 4, .in_height = 2, .in_width = 2, .out_channels = 4, .groups = 2};
  Tensor x;
  for (float c : {1.0f, 2.0f, 3.0f, 4.0f})
    for (int i = 0; i < 4; ++i) x.push_back(c);
  EXPECT_THAT(forward_exact(s, x, test::filled_tensor(s.weight_elements(), 1.0f)),
              ElementsAreArray({3, 3, 3, 3, 3, 3, 3, 3, 7, 7, 7, 7, 7, 7, 7, 7}));
}

TEST(Forward, OutputsThatSeeOnlyPaddingAreExactlyTheBias) {
  // A 1-row input with padding 1 above and below and stride 2: output row 0 reads input row -1,
  // row 1 reads row 1, both padding. Every output is the bias alone, every dx and dw exactly 0,
  // dbias still the sum of dy. (The random generator avoids such shapes: their references are
  // all zeros, which its trust check refuses.) Depthwise and dense variants.
  std::mt19937_64 rng(test::test_seed());
  for (int64_t groups : {int64_t{7}, int64_t{1}}) {
    const Conv2dShape s{.batch = 2,
                        .in_channels = 7,
                        .in_height = 1,
                        .in_width = 14,
                        .out_channels = 7,
                        .kernel_height = 1,
                        .kernel_width = 4,
                        .stride_height = 2,
                        .stride_width = 2,
                        .pad_top = 1,
                        .pad_bottom = 1,
                        .pad_left = 0,
                        .pad_right = 2,
                        .dilation_height = 2,
                        .dilation_width = 3,
                        .groups = groups};
    SCOPED_TRACE(s.to_string());
    ASSERT_EQ(s.out_height(), 2);
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.bias_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    Conv2d conv(s, {.num_threads = 2});
    Tensor y = test::nan_tensor(s.output_elements()), dx = test::nan_tensor(s.input_elements());
    Tensor dw = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(7);
    conv.forward(x.data(), w.data(), bias.data(), y.data());
    conv.backward_data(dy.data(), w.data(), dx.data());
    conv.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());
    const int64_t plane = s.gemm_p();
    for (int64_t i = 0; i < s.output_elements(); ++i) {
      ASSERT_EQ(y[std::size_t(i)], bias[std::size_t(i / plane % 7)]) << i;
    }
    EXPECT_EQ(dx, test::filled_tensor(s.input_elements(), 0.0f));
    EXPECT_EQ(dw, test::filled_tensor(s.weight_elements(), 0.0f));
    EXPECT_TRUE(test::matches_reference(dbias, test::channel_sums(dy, s.batch, 7, plane),
                                        test::channel_sums(test::abs_of(dy), s.batch, 7, plane),
                                        s.batch * plane, /*extra=*/0.0));
  }
}

TEST(Forward, MatchesNaiveOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 1000; ++i) {
    const Conv2dShape shape = test::random_valid_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(shape.to_string());
    SCOPED_TRACE(test::describe(options));
    test::expect_forward_matches_naive(shape, options, rng, /*with_bias=*/i % 2 == 0);
    if (::testing::Test::HasFailure()) return;  // the first failing shape is the repro
  }
}

TEST(Forward, MatchesNaiveOnEveryShapeKind) {
  // Every kind of the generator with and without bias, on one-row blocks and on the default.
  std::mt19937_64 rng(test::test_seed() + 1);
  for (test::ShapeKind kind : test::kAllShapeKinds)
    for (std::size_t block_bytes : {std::size_t{4}, std::size_t{0}})
      for (bool with_bias : {false, true}) {
        const Conv2dShape shape = test::random_valid_shape(rng, kind);
        SCOPED_TRACE(shape.to_string());
        test::expect_forward_matches_naive(
            shape, Conv2dOptions{.num_threads = 2, .block_bytes = block_bytes}, rng, with_bias);
      }
}

TEST(Forward, StrideTwoIsStrideOneThenEverySecondRowAndColumn) {
  // With the same padding and dilation, output (oh, ow) at stride 2 reads the window that output
  // (2 oh, 2 ow) reads at stride 1. Both sides are the fast path: each pays its rounding once.
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 150; ++i) {
    Conv2dShape strided = test::random_valid_shape(rng, test::ShapeKind::general);
    strided.stride_height = 2;
    strided.stride_width = 2;
    Conv2dShape dense = strided;
    dense.stride_height = dense.stride_width = 1;
    SCOPED_TRACE(strided.to_string());
    const Tensor x = test::random_tensor(rng, strided.input_elements());
    const Tensor w = test::random_tensor(rng, strided.weight_elements());
    Tensor y_strided = test::nan_tensor(strided.output_elements());
    Tensor y_dense = test::nan_tensor(dense.output_elements());
    Conv2d(strided).forward(x.data(), w.data(), nullptr, y_strided.data());
    Conv2d(dense).forward(x.data(), w.data(), nullptr, y_dense.data());
    Tensor abs_dense(y_dense.size());
    naive::conv2d_forward(dense, test::abs_of(x).data(), test::abs_of(w).data(), nullptr,
                          abs_dense.data());

    const int64_t OH = strided.out_height(), OW = strided.out_width();
    const int64_t DH = dense.out_height(), DW = dense.out_width();
    Tensor subsampled, abs_subsampled;
    for (int64_t plane = 0; plane < strided.batch * strided.out_channels; ++plane)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const auto at = std::size_t((plane * DH + 2 * oh) * DW + 2 * ow);
          subsampled.push_back(y_dense[at]);
          abs_subsampled.push_back(abs_dense[at]);
        }
    ASSERT_TRUE(test::matches_reference(y_strided, subsampled, abs_subsampled, strided.gemm_k()));
  }
}

TEST(Forward, OverwritesWhateverTheOutputHeld) {
  // Not even accumulate_gradients makes forward add: it concerns gradients only.
  std::mt19937_64 rng(test::test_seed());
  const Conv2dShape s{.batch = 2,
                      .in_channels = 3,
                      .in_height = 6,
                      .in_width = 5,
                      .out_channels = 4,
                      .kernel_height = 3,
                      .kernel_width = 2};
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor w = test::random_tensor(rng, s.weight_elements());
  Tensor clean = test::nan_tensor(s.output_elements());
  Conv2d(s).forward(x.data(), w.data(), nullptr, clean.data());
  Tensor dirty = test::filled_tensor(s.output_elements(), 1e30f);
  Conv2d(s, {.accumulate_gradients = true}).forward(x.data(), w.data(), nullptr, dirty.data());
  EXPECT_TRUE(test::bitwise_equal(dirty, clean));
}

}  // namespace
}  // namespace convgemm
