// Shapes with extreme field values on tiny tensors, where index arithmetic once overflowed: each
// found by the shape fuzzer (tests/fuzz) and kept here, at the largest values validate() accepts
// (a stride or dilation of 2^60, a padded extent of 2^60), so that the ordinary suite, and its
// sanitizer run, computes them against naive:: on every change.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include <limits>

#include "convgemm/detail/check.hpp"
#include "convgemm/conv2d.hpp"
#include "support/checks.hpp"
#include "support/seed.hpp"

namespace convgemm {
namespace {

constexpr int64_t kBound = Conv2dShape::kMaxCoordinate;

TEST(ExtremeFields, CeilAndFloorDivisionHoldAtTheInt64Limits) {
  // The tap ranges divide by the stride; ceil_div once computed (a + b - 1) / b, which overflowed
  // for the issue's stride of 2^63 - 1 (now refused, but the helpers must not depend on that).
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(detail::ceil_div(3, kMax), 1);
  EXPECT_EQ(detail::ceil_div(kMax, kMax), 1);
  EXPECT_EQ(detail::ceil_div(kMax - 1, kMax), 1);
  EXPECT_EQ(detail::ceil_div(0, kMax), 0);
  EXPECT_EQ(detail::ceil_div(-3, kMax), 0);
  EXPECT_EQ(detail::ceil_div(-kMax, kMax), -1);
  EXPECT_EQ(detail::ceil_div(kMax, 2), kMax / 2 + 1);
  EXPECT_EQ(detail::floor_div(-1, kMax), -1);
  EXPECT_EQ(detail::floor_div(-kMax, kMax), -1);
  EXPECT_EQ(detail::floor_div(-kMax, 2), -(kMax / 2) - 1);
  EXPECT_EQ(detail::floor_div(kMax, kMax), 1);
  EXPECT_EQ(detail::floor_div(5, 2), 2);
  EXPECT_EQ(detail::floor_div(-5, 2), -3);
  EXPECT_EQ(detail::ceil_div(-5, 2), -2);
  EXPECT_EQ(detail::ceil_div(5, 2), 3);
}

TEST(ExtremeFields, SamePaddingOnUnvalidatedFieldsLeavesTheRefusalToValidate) {
  // set_same_padding() runs before validate(): a kernel of INT64_MIN once overflowed in
  // kernel - 1 (found by the fuzzer; UBSan names it in the sanitized run).
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  Conv2dShape s{.kernel_height = kMin};
  s.set_same_padding();
  EXPECT_THAT([&] { s.validate(); }, ::testing::ThrowsMessage<std::invalid_argument>(
                                         ::testing::HasSubstr("kernel_height")));
  // A dilated kernel too wide for int64 is refused by the setter itself, by name.
  Conv2dShape wide{
      .in_height = 4, .kernel_height = 3, .dilation_height = std::numeric_limits<int64_t>::max()};
  EXPECT_THAT([&] { wide.set_same_padding(); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  ::testing::HasSubstr("dilation * (kernel - 1) overflows int64")));
}

void expect_all_passes_match_naive(const Conv2dShape& s) {
  SCOPED_TRACE(s.to_string());
  ASSERT_NO_THROW(s.validate());
  std::mt19937_64 rng(test::test_seed());
  for (const int threads : {1, 2}) {
    const Conv2dOptions options{.num_threads = threads};
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(s, options, rng);
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
  }
}

TEST(ExtremeFields, TheIssuesShapeAtTheLargestAcceptedStride) {
  // n1_c4_h5w3_o1_k4x1_s3x(2^63-1)_p3.0.0.0_d2x2_g1 gave 0 instead of -5: ceil_div's a + b - 1
  // overflowed in im2col's tap range. 2^63 - 1 is refused now; 2^60 must compute.
  expect_all_passes_match_naive({.in_channels = 4,
                                 .in_height = 5,
                                 .in_width = 3,
                                 .kernel_height = 4,
                                 .stride_height = 3,
                                 .stride_width = kBound,
                                 .pad_top = 3,
                                 .dilation_height = 2,
                                 .dilation_width = 2});
  // The same with the huge stride on the other axis: the plan's row-block rule multiplied it.
  expect_all_passes_match_naive({.in_channels = 4,
                                 .in_height = 5,
                                 .in_width = 3,
                                 .kernel_height = 4,
                                 .stride_height = kBound,
                                 .stride_width = 3,
                                 .pad_top = 3,
                                 .dilation_height = 2,
                                 .dilation_width = 2});
}

TEST(ExtremeFields, DepthwiseWithAHugeStrideOrDilationTakesTheGemmPath) {
  // The direct depthwise kernels' padded plane grows with stride x vector length: a stride of
  // 2^32 asked for a 2^35-float scratch plane.
  const Conv2dShape depthwise{.in_channels = 4,
                              .in_height = 7,
                              .in_width = 7,
                              .out_channels = 4,
                              .kernel_height = 3,
                              .kernel_width = 3,
                              .stride_width = int64_t{1} << 32,
                              .pad_top = 1,
                              .pad_bottom = 1,
                              .pad_left = 1,
                              .pad_right = 1,
                              .groups = 4};
  expect_all_passes_match_naive(depthwise);
  Conv2dShape widest = depthwise;
  widest.stride_width = kBound;
  expect_all_passes_match_naive(widest);
  // A dilated kernel as wide as the padded input, all but one tap in the padding.
  Conv2dShape dilated = depthwise;
  dilated.stride_width = 1;
  dilated.kernel_width = 2;
  dilated.pad_left = kBound - 8;
  dilated.pad_right = 0;
  dilated.dilation_width = kBound - 8 + 6;  // the second tap reads the last input column
  expect_all_passes_match_naive(dilated);
}

}  // namespace
}  // namespace convgemm
