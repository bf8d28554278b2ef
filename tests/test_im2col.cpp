// im2col / col2im: the lowering's layout on hand-worked cases, against the documented formula on
// random shapes, and the two as each other's adjoint; col2im's two forms against each other
// (white box: src/im2col.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "convgemm/im2col.hpp"
#include "im2col.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"
#include "support/tolerance.hpp"

namespace convgemm {
namespace {

using test::Tensor;
using ::testing::ElementsAreArray;

// Elements of one image group [C/G, H, W] and of its X_col [K x P].
int64_t image_elements(const Conv2dShape& s) {
  return s.in_channels / s.groups * s.in_height * s.in_width;
}
int64_t column_elements(const Conv2dShape& s) { return s.gemm_k() * s.gemm_p(); }

Tensor lowered(const Conv2dShape& s, const Tensor& image) {
  Tensor x_col = test::nan_tensor(column_elements(s));  // every entry must be written
  im2col(s, image.data(), x_col.data());
  return x_col;
}

Tensor row(const Tensor& x_col, int64_t r, int64_t columns) {
  return test::slice(x_col, r * columns, columns);
}

TEST(Im2col, PaddingTapsReadZero) {
  // x = [1 2 3; 4 5 6; 7 8 9], 3x3 kernel, padding 1: X_col is 9 x 9, row (kh, kw) holds
  // x[oh + kh - 1][ow + kw - 1] for the 9 outputs (oh, ow), 0 where that falls in the padding.
  Conv2dShape s{.in_height = 3, .in_width = 3, .kernel_height = 3, .kernel_width = 3};
  s.set_padding(1);
  const Tensor x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Tensor x_col = lowered(s, x);
  const float expected[9][9] = {
      {0, 0, 0, 0, 1, 2, 0, 4, 5},  // (0,0): up-left, top row and left column padding
      {0, 0, 0, 1, 2, 3, 4, 5, 6},  // (0,1): up
      {0, 0, 0, 2, 3, 0, 5, 6, 0},  // (0,2): up-right
      {0, 1, 2, 0, 4, 5, 0, 7, 8},  // (1,0): left
      {1, 2, 3, 4, 5, 6, 7, 8, 9},  // (1,1): the centre tap is the image itself
      {2, 3, 0, 5, 6, 0, 8, 9, 0},  // (1,2): right
      {0, 4, 5, 0, 7, 8, 0, 0, 0},  // (2,0): down-left
      {4, 5, 6, 7, 8, 9, 0, 0, 0},  // (2,1): down
      {5, 6, 0, 8, 9, 0, 0, 0, 0},  // (2,2): down-right
  };
  for (int64_t r = 0; r < 9; ++r) {
    EXPECT_THAT(row(x_col, r, 9), ElementsAreArray(expected[r])) << "X_col row " << r;
  }
}

TEST(Im2col, PaddingBeyondTheKernelGivesWholeZeroColumns) {
  // 2x2 input [1 2; 3 4], 1x1 kernel, stride 1, padding 2 on top and 1 on the left: the 4x3
  // output grid reads rows -2..1 and columns -1..1; only the last two rows see the image.
  const Conv2dShape s{.in_height = 2, .in_width = 2, .pad_top = 2, .pad_left = 1};
  const Tensor x_col = lowered(s, {1, 2, 3, 4});
  EXPECT_THAT(x_col, ElementsAreArray({0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 3, 4}));
}

TEST(Im2col, StridedAndDilatedTapsFollowTheLayoutFormula) {
  // 1 channel 5x6, kernel 2x2, stride 2x3, dilation 2x1, no padding: OH = (5-3)/2+1 = 2,
  // OW = (6-2)/3+1 = 2. x[i][j] = 10 i + j; entry (kh, kw), (oh, ow) = x[2 oh + 2 kh][3 ow + kw].
  const Conv2dShape s{.in_height = 5,
                      .in_width = 6,
                      .kernel_height = 2,
                      .kernel_width = 2,
                      .stride_height = 2,
                      .stride_width = 3,
                      .dilation_height = 2};
  Tensor x(30);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 6; ++j) x[std::size_t(i * 6 + j)] = float(10 * i + j);
  EXPECT_THAT(lowered(s, x), ElementsAreArray({0, 3, 20, 23,       // kh 0, kw 0
                                               1, 4, 21, 24,       // kh 0, kw 1
                                               20, 23, 40, 43,     // kh 1, kw 0
                                               21, 24, 41, 44}));  // kh 1, kw 1
}

TEST(Im2col, TwoChannelFirstColumnIsTheFirstReceptiveField) {
  // The 2-channel 5x5 input of Forward.TwoChannelFiveByFiveWithThreeFilters: x0 = 5i + j,
  // x1 = i - j. Column (0,0) of X_col is the 3x3 window at the origin, channel 0 then 1.
  const Conv2dShape s{
      .in_channels = 2, .in_height = 5, .in_width = 5, .kernel_height = 3, .kernel_width = 3};
  Tensor x(50);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) {
      x[std::size_t(i * 5 + j)] = float(5 * i + j);
      x[std::size_t(25 + i * 5 + j)] = float(i - j);
    }
  const Tensor x_col = lowered(s, x);
  ASSERT_EQ(x_col.size(), 18u * 9u);
  Tensor first_column;
  for (int r = 0; r < 18; ++r) first_column.push_back(x_col[std::size_t(r * 9)]);
  EXPECT_THAT(first_column, ElementsAreArray({0, 1, 2, 5, 6, 7, 10, 11, 12,     // channel 0
                                              0, -1, -2, 1, 0, -1, 2, 1, 0}));  // channel 1
}

TEST(Im2col, OneByOneStrideOneIsTheImageItself) {
  std::mt19937_64 rng(test::test_seed());
  const Conv2dShape s{.in_channels = 3, .in_height = 4, .in_width = 5, .out_channels = 2};
  const Tensor image = test::random_tensor(rng, image_elements(s));
  EXPECT_TRUE(test::bitwise_equal(lowered(s, image), image));
}

TEST(Im2col, MatchesTheLayoutFormulaOnRandomShapes) {
  // X_col[(c*KH + kh)*KW + kw][oh*OW + ow] = x[c][ih][iw], 0 outside (im2col.hpp), element by
  // element; values are exact copies, so the comparison is exact.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 400; ++i) {
    const Conv2dShape s = test::random_valid_shape(rng);
    SCOPED_TRACE(s.to_string());
    const Tensor image = test::random_tensor(rng, image_elements(s));
    const Tensor x_col = lowered(s, image);
    const int64_t KH = s.kernel_height, KW = s.kernel_width, OH = s.out_height(),
                  OW = s.out_width(), H = s.in_height, W = s.in_width;
    Tensor expected(x_col.size());
    for (int64_t c = 0; c < s.in_channels / s.groups; ++c)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
              const int64_t iw = ow * s.stride_width - s.pad_left + kw * s.dilation_width;
              const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
              expected[std::size_t(((c * KH + kh) * KW + kw) * OH * OW + oh * OW + ow)] =
                  inside ? image[std::size_t((c * H + ih) * W + iw)] : 0.0f;
            }
    ASSERT_TRUE(test::bitwise_equal(x_col, expected));
  }
}

TEST(Col2im, AddsIntoTheImage) {
  // 1 channel 3x3, 2x2 kernel, stride 1: X_col of all ones scatters the number of windows that
  // cover each pixel, [1 2 1; 2 4 2; 1 2 1], on top of what the image held (col2im accumulates).
  const Conv2dShape s{.in_height = 3, .in_width = 3, .kernel_height = 2, .kernel_width = 2};
  const Tensor ones = test::filled_tensor(column_elements(s), 1.0f);
  Tensor image = test::filled_tensor(9, 10.0f);
  col2im(s, ones.data(), image.data());
  EXPECT_THAT(image, ElementsAreArray({11, 12, 11, 12, 14, 12, 11, 12, 11}));
}

TEST(Col2im, IsTheAdjointOfIm2col) {
  // <im2col(x), c> = <x, col2im(c)>. The left side is exact (im2col copies; the dot is in
  // double); col2im sums at most KH*KW entries per pixel in float (tolerance.hpp).
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 400; ++i) {
    const Conv2dShape s = test::random_valid_shape(rng);
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, image_elements(s));
    const Tensor c = test::random_tensor(rng, column_elements(s));
    Tensor scattered = test::filled_tensor(image_elements(s), 0.0f);
    col2im(s, c.data(), scattered.data());
    const double lhs = test::dot(lowered(s, x), c);
    const double rhs = test::dot(x, scattered);
    const double abs_inner = test::dot(lowered(s, test::abs_of(x)), test::abs_of(c));
    ASSERT_TRUE(test::near(lhs, rhs, test::tolerance(s.kernel_height * s.kernel_width, abs_inner)));
  }
}

TEST(Col2im, BothFormsAddTheSameBitsInTheSameOrder) {
  // col2im_block's AVX-512 form (image row by image row) against the portable one (X_col row by
  // row) on random blocks of random shapes, half of them made column stride 1 so that it takes
  // them: every element must get the same additions in the same order, so the bits are equal.
  // A tenth of the image starts as -0, which only an addition of +0 would change.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  int avx512_cases = 0;
  for (int i = 0; i < 400; ++i) {
    Conv2dShape s = test::random_valid_shape(rng);
    if (i % 2 == 0) s.stride_width = 1;
    SCOPED_TRACE(s.to_string());
    const int64_t K = s.gemm_k(), OH = s.out_height();
    auto below = [&](int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng); };
    const int64_t k_begin = below(K), k_end = k_begin + 1 + below(K - k_begin);
    const int64_t oh_begin = below(OH), oh_end = oh_begin + 1 + below(OH - oh_begin);
    const detail::ColumnBlock block{k_begin, k_end, oh_begin, oh_end};
    const int64_t ld = block.columns(s) + below(3);
    const Tensor x_col = test::random_tensor(rng, (k_end - k_begin) * ld);
    Tensor image = test::random_tensor(rng, image_elements(s));
    for (float& v : image) {
      if (below(10) == 0) v = -0.0f;
    }
    Tensor portable = image, avx512 = image;
    detail::col2im_block_portable(s, x_col.data(), block, portable.data(), ld);
    if (!detail::col2im_block_avx512(s, x_col.data(), block, avx512.data(), ld)) continue;
    ++avx512_cases;
    ASSERT_TRUE(test::bitwise_equal(avx512, portable));
  }
  if (avx512_cases == 0) GTEST_SKIP() << "this CPU has no AVX-512 form of col2im";
}

}  // namespace
}  // namespace convgemm
