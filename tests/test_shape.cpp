// Conv2dShape: the formulas of the notes with their worked numbers, and the derived sizes.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "convgemm/shape.hpp"

namespace convgemm {
namespace {

// The nn-style constructor of the notes: Conv2d(in, out, kernel, stride, padding).
Conv2dShape layer(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t size,
                  int64_t stride = 1, int64_t pad = 0) {
  Conv2dShape s{.in_channels = in_channels,
                .in_height = size,
                .in_width = size,
                .out_channels = out_channels,
                .kernel_height = kernel,
                .kernel_width = kernel,
                .stride_height = stride,
                .stride_width = stride};
  s.set_padding(pad);
  return s;
}

TEST(Shape, PaddingOneKeepsThirtyTwoByThirtyTwo) {
  // (32 + 1 + 1 - 3) / 1 + 1 = 32
  const Conv2dShape s = layer(3, 16, /*kernel=*/3, /*size=*/32, /*stride=*/1, /*pad=*/1);
  EXPECT_EQ(s.out_height(), 32);
  EXPECT_EQ(s.out_width(), 32);
}

TEST(Shape, OutputSizeFloorsAndTakesEachPaddingSide) {
  // H: (7 + 2 + 0 - 3) / 2 + 1 = 4;  W: (10 + 0 + 3 - 2*(4-1) - 1) / 3 + 1 = floor(6/3) + 1 = 3
  const Conv2dShape s{.in_height = 7,
                      .in_width = 10,
                      .kernel_height = 3,
                      .kernel_width = 4,
                      .stride_height = 2,
                      .stride_width = 3,
                      .pad_top = 2,
                      .pad_bottom = 0,
                      .pad_left = 0,
                      .pad_right = 3,
                      .dilation_height = 1,
                      .dilation_width = 2};
  EXPECT_EQ(s.out_height(), 4);
  EXPECT_EQ(s.out_width(), 3);
}

TEST(Shape, OutputSizeCountsEveryWindowThatFits) {
  // The formula against counting window positions one by one, over a grid of every axis value.
  for (int64_t in = 1; in <= 9; ++in)
    for (int64_t kernel = 1; kernel <= 4; ++kernel)
      for (int64_t stride = 1; stride <= 3; ++stride)
        for (int64_t dilation = 1; dilation <= 3; ++dilation)
          for (int64_t pad_begin = 0; pad_begin <= 2; ++pad_begin)
            for (int64_t pad_end = 0; pad_end <= 3; ++pad_end) {
              const int64_t extent = dilation * (kernel - 1) + 1;
              if (extent > in + pad_begin + pad_end) continue;  // empty: an error, not a size
              int64_t windows = 0;  // windows start at -pad_begin + k*stride, end inside the pad
              for (int64_t start = -pad_begin; start + extent <= in + pad_end; start += stride) {
                ++windows;
              }
              const Conv2dShape s{.in_height = in,
                                  .in_width = 1,
                                  .kernel_height = kernel,
                                  .stride_height = stride,
                                  .pad_top = pad_begin,
                                  .pad_bottom = pad_end,
                                  .dilation_height = dilation};
              ASSERT_EQ(s.out_height(), windows) << s.to_string();
            }
}

TEST(Shape, ThreeByThreeConvFromSixtyFourToOneTwentyEightHas73856Parameters) {
  // 128 * 64 * 3 * 3 = 73,728 weights + 128 biases
  const Conv2dShape s = layer(64, 128, /*kernel=*/3, /*size=*/8);
  EXPECT_EQ(s.parameter_count(), 73'856);
  EXPECT_EQ(s.parameter_count(/*with_bias=*/false), 73'728);
  EXPECT_EQ(s.weight_elements(), 73'728);
  EXPECT_EQ(s.bias_elements(), 128);
}

TEST(Shape, DilationTwoThreeByThreeKernelSpansFiveByFive) {
  // Effective extent d*(k-1)+1 = 5: a 5x5 input gives one output, a 4x4 input none.
  Conv2dShape s{.in_height = 5,
                .in_width = 5,
                .kernel_height = 3,
                .kernel_width = 3,
                .dilation_height = 2,
                .dilation_width = 2};
  EXPECT_NO_THROW(s.validate());
  EXPECT_EQ(s.out_height(), 1);
  EXPECT_EQ(s.out_width(), 1);
  s.in_height = s.in_width = 4;
  EXPECT_THROW(s.validate(), std::invalid_argument);
  // With padding 2 the dilated kernel is 'same' again: (5 + 4 - 5) / 1 + 1 = 5.
  s.in_height = s.in_width = 5;
  s.set_padding(2);
  EXPECT_EQ(s.out_height(), 5);
  EXPECT_EQ(s.out_width(), 5);
}

TEST(Shape, DepthwiseSeparableNeedsFarFewerWeights) {
  // depthwise 3x3 on 64 channels: 64 * 9 = 576; pointwise 64 -> 128: 64 * 128 = 8,192
  Conv2dShape depthwise = layer(64, 64, /*kernel=*/3, /*size=*/16);
  depthwise.groups = 64;
  const Conv2dShape pointwise = layer(64, 128, /*kernel=*/1, /*size=*/16);
  const Conv2dShape standard = layer(64, 128, /*kernel=*/3, /*size=*/16);
  EXPECT_EQ(depthwise.weight_elements(), 576);
  EXPECT_EQ(pointwise.weight_elements(), 8'192);
  EXPECT_EQ(depthwise.weight_elements() + pointwise.weight_elements(), 8'768);
  EXPECT_EQ(standard.weight_elements(), 73'728);
}

TEST(Shape, FlopsAreTwiceTheMultiplyAddsOfEveryPass) {
  // ResNet-50 conv2_x 3x3: 2 * N * O * OH * OW * (C/G * KH * KW)
  //   = 2 * 1 * 64 * 56 * 56 * (64 * 3 * 3) = 231,211,008
  Conv2dShape s = layer(64, 64, /*kernel=*/3, /*size=*/56, /*stride=*/1, /*pad=*/1);
  EXPECT_DOUBLE_EQ(s.flops(), 231'211'008.0);
  EXPECT_DOUBLE_EQ(s.flops(Pass::forward), 231'211'008.0);
  EXPECT_DOUBLE_EQ(s.flops(Pass::backward_data), 231'211'008.0);
  EXPECT_DOUBLE_EQ(s.flops(Pass::backward_weights), 231'211'008.0);
  s.batch = 8;  // linear in the batch
  EXPECT_DOUBLE_EQ(s.flops(), 8 * 231'211'008.0);
  s.batch = 1;
  s.groups = 64;  // depthwise: K = 1 * 3 * 3, so 2 * 64 * 3136 * 9 = 3,612,672
  EXPECT_DOUBLE_EQ(s.flops(), 3'612'672.0);
  s.groups = 1;
  s.stride_height = s.stride_width = 2;  // 28 x 28 outputs: a quarter
  EXPECT_DOUBLE_EQ(s.flops(), 231'211'008.0 / 4);
}

TEST(Shape, GemmViewAndElementCounts) {
  // C = 6, G = 3, O = 9: M = 3, K = 2 * 2 * 3 = 12; 5x7 input, pad 1, 2x3 kernel -> 6x7 output
  Conv2dShape s{.batch = 2,
                .in_channels = 6,
                .in_height = 5,
                .in_width = 7,
                .out_channels = 9,
                .kernel_height = 2,
                .kernel_width = 3,
                .groups = 3};
  s.set_padding(1);
  EXPECT_EQ(s.out_height(), 6);
  EXPECT_EQ(s.out_width(), 7);
  EXPECT_EQ(s.gemm_m(), 3);
  EXPECT_EQ(s.gemm_k(), 12);
  EXPECT_EQ(s.gemm_p(), 42);
  EXPECT_EQ(s.input_elements(), 2 * 6 * 5 * 7);
  EXPECT_EQ(s.weight_elements(), 9 * 12);
  EXPECT_EQ(s.output_elements(), 2 * 9 * 42);
}

TEST(Shape, SetPaddingSetsBothAxes) {
  Conv2dShape s;
  s.set_padding(2, 3);
  EXPECT_EQ(s.pad_top, 2);
  EXPECT_EQ(s.pad_bottom, 2);
  EXPECT_EQ(s.pad_left, 3);
  EXPECT_EQ(s.pad_right, 3);
  s.set_padding(1);
  EXPECT_EQ(s.pad_top + s.pad_bottom + s.pad_left + s.pad_right, 4);
}

TEST(Shape, SamePaddingGivesCeilOfInputOverStride) {
  for (int64_t in = 1; in <= 12; ++in)
    for (int64_t kernel = 1; kernel <= 5; ++kernel)  // even kernels included
      for (int64_t stride = 1; stride <= 3; ++stride)
        for (int64_t dilation = 1; dilation <= 2; ++dilation) {
          Conv2dShape s{.in_height = in,
                        .in_width = in + 1,
                        .kernel_height = kernel,
                        .kernel_width = kernel,
                        .stride_height = stride,
                        .stride_width = stride,
                        .dilation_height = dilation,
                        .dilation_width = dilation};
          s.set_same_padding();
          SCOPED_TRACE(s.to_string());
          ASSERT_NO_THROW(s.validate());
          EXPECT_EQ(s.out_height(), (in + stride - 1) / stride);
          EXPECT_EQ(s.out_width(), (in + 1 + stride - 1) / stride);
          // The odd tap goes to the bottom/right.
          EXPECT_TRUE(s.pad_bottom == s.pad_top || s.pad_bottom == s.pad_top + 1);
          EXPECT_TRUE(s.pad_right == s.pad_left || s.pad_right == s.pad_left + 1);
        }
}

TEST(Shape, SamePaddingWorkedCases) {
  // Even kernel 4, stride 1, in 8: total pad 3 -> top 1, bottom 2.
  Conv2dShape even{.in_height = 8, .in_width = 8, .kernel_height = 4, .kernel_width = 4};
  even.set_same_padding();
  EXPECT_EQ(even.pad_top, 1);
  EXPECT_EQ(even.pad_bottom, 2);
  EXPECT_EQ(even.out_height(), 8);
  // 3x3, stride 2, in 8: out 4, total pad (4-1)*2 + 3 - 8 = 1 -> top 0, bottom 1.
  Conv2dShape strided{.in_height = 8,
                      .in_width = 7,
                      .kernel_height = 3,
                      .kernel_width = 3,
                      .stride_height = 2,
                      .stride_width = 2};
  strided.set_same_padding();
  EXPECT_EQ(strided.pad_top, 0);
  EXPECT_EQ(strided.pad_bottom, 1);
  EXPECT_EQ(strided.out_height(), 4);
  // in 7: out 4, total pad 3*2 + 3 - 7 = 2 -> 1 and 1.
  EXPECT_EQ(strided.pad_left, 1);
  EXPECT_EQ(strided.pad_right, 1);
  EXPECT_EQ(strided.out_width(), 4);
  // 1x1 stride 2: no padding is ever needed.
  Conv2dShape pointwise{.in_height = 9, .in_width = 9, .stride_height = 2, .stride_width = 2};
  pointwise.set_same_padding();
  EXPECT_EQ(pointwise.pad_top + pointwise.pad_bottom + pointwise.pad_left + pointwise.pad_right, 0);
  EXPECT_EQ(pointwise.out_height(), 5);
}

TEST(Shape, ToStringIsTheDocumentedOneLiner) {
  Conv2dShape s = layer(64, 64, /*kernel=*/3, /*size=*/56, /*stride=*/1, /*pad=*/1);
  s.batch = 8;
  EXPECT_EQ(s.to_string(), "n8_c64_h56w56_o64_k3x3_s1x1_p1.1.1.1_d1x1_g1_nchw");
}

TEST(Shape, ToStringIsOneLineAndDistinguishesEveryField) {
  const Conv2dShape base{.batch = 2,
                         .in_channels = 6,
                         .in_height = 9,
                         .in_width = 10,
                         .out_channels = 12,
                         .kernel_height = 3,
                         .kernel_width = 2,
                         .stride_height = 2,
                         .stride_width = 1,
                         .pad_top = 1,
                         .pad_bottom = 0,
                         .pad_left = 2,
                         .pad_right = 1,
                         .dilation_height = 1,
                         .dilation_width = 2,
                         .groups = 2};
  std::vector<Conv2dShape> variants(17, base);
  int64_t* fields[] = {
      &variants[1].batch,        &variants[2].in_channels,      &variants[3].in_height,
      &variants[4].in_width,     &variants[5].out_channels,     &variants[6].kernel_height,
      &variants[7].kernel_width, &variants[8].stride_height,    &variants[9].stride_width,
      &variants[10].pad_top,     &variants[11].pad_bottom,      &variants[12].pad_left,
      &variants[13].pad_right,   &variants[14].dilation_height, &variants[15].dilation_width,
      &variants[16].groups};
  for (int64_t* field : fields) *field += 1;  // variant i differs from base in field i only
  std::set<std::string> names;
  for (const Conv2dShape& v : variants) {
    const std::string name = v.to_string();
    EXPECT_EQ(name.find('\n'), std::string::npos) << name;
    EXPECT_EQ(name.find(' '), std::string::npos) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), variants.size()) << "two shapes share a name";
  // Swapped values must not collide either: 12x3 vs 1x23 style ambiguities.
  Conv2dShape a = base, b = base;
  a.in_height = 12;
  a.in_width = 3;
  b.in_height = 1;
  b.in_width = 23;
  EXPECT_NE(a.to_string(), b.to_string());
}

TEST(Shape, EqualityComparesEveryField) {
  Conv2dShape a = layer(3, 8, 3, 10), b = a;
  EXPECT_EQ(a, b);
  b.pad_right = 1;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace convgemm
