// ConvTranspose2d: the output size, hand-worked stamps, forward against naive on random shapes,
// backward_data by the adjoint identity, backward_weights by a random projection of the naive
// double forward, dbias = sum of dy, and finite differences of all three gradients.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/naive.hpp"
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

// Reduction lengths (the transposed passes are the convolution's passes with roles swapped):
// forward sums over C/G * KH * KW, backward_data over O/G * KH * KW, backward_weights over the
// input positions N * H * W, dbias over the output positions N * OH * OW.
int64_t forward_length(const ConvTranspose2dShape& s) {
  return s.in_channels / s.groups * s.kernel_height * s.kernel_width;
}
int64_t backward_data_length(const ConvTranspose2dShape& s) {
  return s.out_channels / s.groups * s.kernel_height * s.kernel_width;
}
int64_t out_plane(const ConvTranspose2dShape& s) { return s.out_height() * s.out_width(); }

Tensor plus(const Tensor& a, const Tensor& b) {
  Tensor sum(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
  return sum;
}

Tensor transposed_forward(const ConvTranspose2dShape& s, const Tensor& x, const Tensor& w,
                          const float* bias = nullptr, const Conv2dOptions& options = {}) {
  Tensor y = test::nan_tensor(s.output_elements());
  ConvTranspose2d(s, options).forward(x.data(), w.data(), bias, y.data());
  return y;
}

TEST(TransposedShape, OutputSizeFormula) {
  // (I - 1) * s - p_total + d * (K - 1) + output_padding + 1
  //   H: (4 - 1) * 2 - 2 + 1 * 2 + 1 + 1 = 8;  W: (3 - 1) * 1 - 0 + 2 * 2 + 1 + 1 = 8
  const ConvTranspose2dShape s{.in_height = 4,
                               .in_width = 3,
                               .kernel_height = 3,
                               .kernel_width = 3,
                               .stride_height = 2,
                               .stride_width = 1,
                               .pad_top = 1,
                               .pad_bottom = 1,
                               .output_padding_height = 1,
                               .output_padding_width = 1,
                               .dilation_width = 2};
  EXPECT_NO_THROW(s.validate());  // output_padding_width 1 < dilation_width 2 at stride 1
  EXPECT_EQ(s.out_height(), 8);
  EXPECT_EQ(s.out_width(), 8);
  EXPECT_EQ(s.weight_elements(), 9);
}

TEST(TransposedShape, InvertsTheConvolutionsOutputSize) {
  // For a convolution with input H, the transposed convolution of the same parameters with
  // output_padding = (H + p_total - d(K-1) - 1) mod stride maps OH back to H (PyTorch's rule),
  // and as_convolution() is that convolution again.
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 300; ++i) {
    const Conv2dShape c = test::random_valid_shape(rng);
    SCOPED_TRACE(c.to_string());
    const int64_t remainder_h =
        (c.in_height + c.pad_top + c.pad_bottom - c.dilation_height * (c.kernel_height - 1) - 1) %
        c.stride_height;
    const int64_t remainder_w =
        (c.in_width + c.pad_left + c.pad_right - c.dilation_width * (c.kernel_width - 1) - 1) %
        c.stride_width;
    const ConvTranspose2dShape t{.batch = c.batch,
                                 .in_channels = c.out_channels,
                                 .in_height = c.out_height(),
                                 .in_width = c.out_width(),
                                 .out_channels = c.in_channels,
                                 .kernel_height = c.kernel_height,
                                 .kernel_width = c.kernel_width,
                                 .stride_height = c.stride_height,
                                 .stride_width = c.stride_width,
                                 .pad_top = c.pad_top,
                                 .pad_bottom = c.pad_bottom,
                                 .pad_left = c.pad_left,
                                 .pad_right = c.pad_right,
                                 .output_padding_height = remainder_h,
                                 .output_padding_width = remainder_w,
                                 .dilation_height = c.dilation_height,
                                 .dilation_width = c.dilation_width,
                                 .groups = c.groups};
    ASSERT_NO_THROW(t.validate()) << t.to_string();
    EXPECT_EQ(t.out_height(), c.in_height);
    EXPECT_EQ(t.out_width(), c.in_width);
    Conv2dShape back = t.as_convolution();
    EXPECT_EQ(back.out_height(), t.in_height);
    EXPECT_EQ(back.out_width(), t.in_width);
    back.pad_bottom = c.pad_bottom;  // output_padding folded into the end padding, put back
    back.pad_right = c.pad_right;
    EXPECT_EQ(back, c);
  }
}

TEST(TransposedShape, AsConvolutionMapsOutputBackToInput) {
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 300; ++i) {
    const ConvTranspose2dShape t = test::random_transposed_shape(rng);
    SCOPED_TRACE(t.to_string());
    const Conv2dShape c = t.as_convolution();
    EXPECT_EQ(c.in_height, t.out_height());
    EXPECT_EQ(c.in_width, t.out_width());
    EXPECT_EQ(c.out_height(), t.in_height);
    EXPECT_EQ(c.out_width(), t.in_width);
    EXPECT_EQ(c.weight_elements(), t.weight_elements());
  }
}

TEST(TransposedShape, ToStringNamesOutputPadding) {
  ConvTranspose2dShape a{.in_height = 3,
                         .in_width = 3,
                         .kernel_height = 3,
                         .kernel_width = 3,
                         .stride_height = 2,
                         .stride_width = 2};
  ConvTranspose2dShape b = a;
  b.output_padding_width = 1;
  EXPECT_EQ(a.to_string(), "transposed_n1_c1_h3w3_o1_k3x3_s2x2_p0.0.0.0_op0x0_d1x1_g1_nchw");
  EXPECT_NE(a.to_string(), b.to_string());
  EXPECT_EQ(a.to_string().find('\n'), std::string::npos);
}

TEST(Transposed, StrideTwoStampsTheKernelPerPixel) {
  // Each input pixel adds x * kernel at (2i, 2j); stride 2 = kernel size: no overlap.
  const ConvTranspose2dShape s{.in_height = 2,
                               .in_width = 2,
                               .kernel_height = 2,
                               .kernel_width = 2,
                               .stride_height = 2,
                               .stride_width = 2};
  const Tensor x = {1, 2, 3, 4}, w = {1, 10, 100, 1000};
  EXPECT_THAT(transposed_forward(s, x, w), ElementsAreArray({1, 10, 2, 20,          //
                                                             100, 1000, 200, 2000,  //
                                                             3, 30, 4, 40,          //
                                                             300, 3000, 400, 4000}));
  // output_padding 1 appends a row and a column that no tap reaches: only the bias lands there.
  ConvTranspose2dShape padded = s;
  padded.output_padding_height = padded.output_padding_width = 1;
  const float bias = 0.5f;
  const Tensor y = transposed_forward(padded, x, w, &bias);
  ASSERT_EQ(y.size(), 25u);
  EXPECT_THAT(test::slice(y, 0, 5), ElementsAreArray({1.5, 10.5, 2.5, 20.5, 0.5}));
  EXPECT_THAT(test::slice(y, 20, 5), ElementsAreArray({0.5, 0.5, 0.5, 0.5, 0.5}));
}

TEST(Transposed, StrideOneOverlapsTheStamps) {
  // y[r][c] = sum_{i,j} x[i][j] * k[r-i][c-j]:
  //   y00 = 1            y01 = 1*10 + 2*1 = 12                   y02 = 2*10 = 20
  //   y10 = 1*100 + 3*1  y11 = 1*1000 + 2*100 + 3*10 + 4*1 = 1234 y12 = 2*1000 + 4*10 = 2040
  //   y20 = 3*100        y21 = 3*1000 + 4*100 = 3400              y22 = 4*1000
  const ConvTranspose2dShape s{
      .in_height = 2, .in_width = 2, .kernel_height = 2, .kernel_width = 2};
  EXPECT_THAT(transposed_forward(s, {1, 2, 3, 4}, {1, 10, 100, 1000}),
              ElementsAreArray({1, 12, 20, 103, 1234, 2040, 300, 3400, 4000}));
}

TEST(Transposed, ForwardMatchesNaiveOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 600; ++i) {
    const ConvTranspose2dShape s = test::random_transposed_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    const bool with_bias = i % 2 == 0;
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.out_channels);
    const Tensor y = transposed_forward(s, x, w, with_bias ? bias.data() : nullptr, options);
    Tensor reference(y.size()), abs_terms(y.size());
    naive::conv_transpose2d_forward(s, x.data(), w.data(), with_bias ? bias.data() : nullptr,
                                    reference.data());
    naive::conv_transpose2d_forward(s, test::abs_of(x).data(), test::abs_of(w).data(),
                                    with_bias ? test::abs_of(bias).data() : nullptr,
                                    abs_terms.data());
    ASSERT_TRUE(test::reference_is_trusted(reference, abs_terms));
    ASSERT_TRUE(
        test::matches_reference(y, reference, abs_terms, forward_length(s) + (with_bias ? 1 : 0)));
  }
}

TEST(Transposed, OutputPaddingBelowDilationAtStrideOne) {
  // PyTorch also accepts output_padding < dilation: at stride 1 the extra rows are reachable
  // only through the dilated taps' gaps; check this case on its own against naive.
  std::mt19937_64 rng(test::test_seed());
  for (int64_t dilation = 2; dilation <= 3; ++dilation)
    for (int64_t output_padding = 1; output_padding < dilation; ++output_padding) {
      const ConvTranspose2dShape s{.batch = 2,
                                   .in_channels = 4,
                                   .in_height = 5,
                                   .in_width = 4,
                                   .out_channels = 6,
                                   .kernel_height = 3,
                                   .kernel_width = 2,
                                   .pad_top = 1,
                                   .pad_bottom = 2,
                                   .pad_left = 0,
                                   .pad_right = 1,
                                   .output_padding_height = output_padding,
                                   .output_padding_width = output_padding,
                                   .dilation_height = dilation,
                                   .dilation_width = dilation,
                                   .groups = 2};
      SCOPED_TRACE(s.to_string());
      const Tensor x = test::random_tensor(rng, s.input_elements());
      const Tensor w = test::random_tensor(rng, s.weight_elements());
      const Tensor y = transposed_forward(s, x, w, nullptr, {.num_threads = 2, .block_bytes = 4});
      Tensor reference(y.size()), abs_terms(y.size());
      naive::conv_transpose2d_forward(s, x.data(), w.data(), nullptr, reference.data());
      naive::conv_transpose2d_forward(s, test::abs_of(x).data(), test::abs_of(w).data(), nullptr,
                                      abs_terms.data());
      EXPECT_TRUE(test::reference_is_trusted(reference, abs_terms));
      EXPECT_TRUE(test::matches_reference(y, reference, abs_terms, forward_length(s)));
    }
}

TEST(Transposed, BackwardDataIsAdjointOfForward) {
  // <convT(x), dy> = <x, backward_data(dy)>, both from the engine's float outputs.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 400; ++i) {
    const ConvTranspose2dShape s = test::random_transposed_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    ConvTranspose2d conv(s, options);
    Tensor y = test::nan_tensor(s.output_elements()), dx = test::nan_tensor(s.input_elements());
    conv.forward(x.data(), w.data(), nullptr, y.data());
    conv.backward_data(dy.data(), w.data(), dx.data());
    Tensor abs_y(y.size());
    naive::conv_transpose2d_forward(s, test::abs_of(x).data(), test::abs_of(w).data(), nullptr,
                                    abs_y.data());
    const double abs_inner = test::dot(abs_y, test::abs_of(dy));
    ASSERT_GT(abs_inner, 0.0);
    ASSERT_TRUE(
        test::near(test::dot(y, dy), test::dot(x, dx),
                   test::adjoint_tolerance(forward_length(s), backward_data_length(s), abs_inner)));
  }
}

TEST(Transposed, BackwardWeightsMatchesARandomProjectionOfTheNaiveForward) {
  // The loss <convT(x; w), dy> is linear in w, so for any v: <dw, v> = <naive(x; v), dy>, the
  // right side in double. dbias is the per-channel sum of dy, checked element by element.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 400; ++i) {
    const ConvTranspose2dShape s = test::random_transposed_shape(rng);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    const Tensor v = test::random_tensor(rng, s.weight_elements());
    Tensor dw = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(s.out_channels);
    ConvTranspose2d(s, options).backward_weights(x.data(), dy.data(), dw.data(), dbias.data());

    TensorD y_v(dy.size()), abs_y_v(dy.size());
    naive::conv_transpose2d_forward(s, test::to_double(x).data(), test::to_double(v).data(),
                                    nullptr, y_v.data());
    naive::conv_transpose2d_forward(s, test::abs_of(test::to_double(x)).data(),
                                    test::abs_of(test::to_double(v)).data(), nullptr,
                                    abs_y_v.data());
    const TensorD dy_d = test::to_double(dy);
    const double abs_inner = test::dot(abs_y_v, test::abs_of(dy_d));
    const int64_t k = s.batch * s.in_height * s.in_width;
    ASSERT_TRUE(test::near(test::dot(dw, v), test::dot(y_v, dy_d), test::tolerance(k, abs_inner)))
        << "dw";

    const TensorD reference_dbias = test::channel_sums(dy, s.batch, s.out_channels, out_plane(s));
    const TensorD abs_dbias =
        test::channel_sums(test::abs_of(dy), s.batch, s.out_channels, out_plane(s));
    ASSERT_TRUE(test::matches_reference(dbias, reference_dbias, abs_dbias, s.batch * out_plane(s),
                                        /*extra=*/0.0))
        << "dbias";
  }
}

TEST(Transposed, PassesAreTheConvolutionsPassesWithRolesSwapped) {
  // Without output_padding, as_convolution() is a valid convolution, and the same engine on the
  // same blocks must give the same bits: transposed forward = conv backward_data, transposed
  // backward_data = conv forward, transposed dw = conv dw with x and dy swapped.
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 60; ++i) {
    ConvTranspose2dShape t = test::random_transposed_shape(rng);
    t.output_padding_height = t.output_padding_width = 0;
    if (t.out_height() < 1 || t.out_width() < 1) continue;  // the padding needed the extra row
    const Conv2dShape c = t.as_convolution();
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(t.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, t.input_elements());
    const Tensor w = test::random_tensor(rng, t.weight_elements());
    const Tensor dy = test::random_tensor(rng, t.output_elements());
    ConvTranspose2d transposed(t, options);
    Conv2d conv(c, options);
    Tensor y_t = test::nan_tensor(t.output_elements()), y_c = test::nan_tensor(c.input_elements());
    transposed.forward(x.data(), w.data(), nullptr, y_t.data());
    conv.backward_data(x.data(), w.data(), y_c.data());
    EXPECT_TRUE(test::bitwise_equal(y_t, y_c)) << "forward";
    Tensor dx_t = test::nan_tensor(t.input_elements()),
           dx_c = test::nan_tensor(c.output_elements());
    transposed.backward_data(dy.data(), w.data(), dx_t.data());
    conv.forward(dy.data(), w.data(), nullptr, dx_c.data());
    EXPECT_TRUE(test::bitwise_equal(dx_t, dx_c)) << "backward_data";
    Tensor dw_t = test::nan_tensor(t.weight_elements()),
           dw_c = test::nan_tensor(c.weight_elements());
    transposed.backward_weights(x.data(), dy.data(), dw_t.data(), nullptr);
    conv.backward_weights(dy.data(), x.data(), dw_c.data(), nullptr);
    EXPECT_TRUE(test::bitwise_equal(dw_t, dw_c)) << "backward_weights";
  }
}

std::vector<ConvTranspose2dShape> finite_difference_shapes() {
  const ConvTranspose2dShape strided{.batch = 2,
                                     .in_channels = 3,
                                     .in_height = 3,
                                     .in_width = 4,
                                     .out_channels = 2,
                                     .kernel_height = 3,
                                     .kernel_width = 3,
                                     .stride_height = 2,
                                     .stride_width = 2,
                                     .pad_top = 1,
                                     .pad_bottom = 1,
                                     .pad_left = 1,
                                     .pad_right = 0,
                                     .output_padding_height = 1,
                                     .output_padding_width = 0};
  const ConvTranspose2dShape dilated{.batch = 1,
                                     .in_channels = 2,
                                     .in_height = 4,
                                     .in_width = 3,
                                     .out_channels = 3,
                                     .kernel_height = 2,
                                     .kernel_width = 3,
                                     .stride_height = 1,
                                     .stride_width = 2,
                                     .pad_top = 0,
                                     .pad_bottom = 2,
                                     .pad_left = 2,
                                     .pad_right = 1,
                                     .output_padding_height = 1,
                                     .output_padding_width = 1,
                                     .dilation_height = 3,
                                     .dilation_width = 2};
  const ConvTranspose2dShape grouped{.batch = 2,
                                     .in_channels = 4,
                                     .in_height = 3,
                                     .in_width = 3,
                                     .out_channels = 6,
                                     .kernel_height = 2,
                                     .kernel_width = 2,
                                     .stride_height = 3,
                                     .stride_width = 1,
                                     .pad_top = 1,
                                     .pad_bottom = 0,
                                     .pad_left = 0,
                                     .pad_right = 1,
                                     .output_padding_height = 2,
                                     .output_padding_width = 0,
                                     .groups = 2};
  return {strided, dilated, grouped};
}

TEST(Transposed, GradientsMatchFiniteDifferencesOfTheDoubleNaiveForward) {
  // loss(x, w, b) = sum(naive_T(x, w, b) * r). The per-element abs_terms of each gradient are
  // the finite differences of the same loss on absolute values (a linear loss's derivative is
  // exactly its sum of |terms|).
  std::mt19937_64 rng(test::test_seed());
  for (const ConvTranspose2dShape& s : finite_difference_shapes()) {
    SCOPED_TRACE(s.to_string());
    ASSERT_NO_THROW(s.validate());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.out_channels);
    const Tensor r = test::random_tensor(rng, s.output_elements());
    TensorD x_d = test::to_double(x), w_d = test::to_double(w), bias_d = test::to_double(bias);
    TensorD r_d = test::to_double(r), y_d(r.size());
    const auto loss = [&] {
      naive::conv_transpose2d_forward(s, x_d.data(), w_d.data(), bias_d.data(), y_d.data());
      return test::dot(y_d, r_d);
    };
    const TensorD numeric_dx = test::central_differences(x_d, loss);
    const TensorD numeric_dw = test::central_differences(w_d, loss);
    const TensorD numeric_dbias = test::central_differences(bias_d, loss);
    x_d = test::abs_of(x_d);
    w_d = test::abs_of(w_d);
    bias_d = test::abs_of(bias_d);
    r_d = test::abs_of(r_d);
    const TensorD abs_dx = test::central_differences(x_d, loss);
    const TensorD abs_dw = test::central_differences(w_d, loss);
    const TensorD abs_dbias = test::central_differences(bias_d, loss);
    // sum |y * r| at the largest perturbation, for the rounding of the loss itself
    for (TensorD* t : {&x_d, &w_d, &bias_d})
      for (double& v : *t) v += test::kFiniteDifferenceStep;
    const double fd_error = test::central_difference_error(
        forward_length(s) + 1 + s.output_elements(), loss(), test::kFiniteDifferenceStep);

    ConvTranspose2d conv(s);
    Tensor dx = test::nan_tensor(s.input_elements()), dw = test::nan_tensor(s.weight_elements());
    Tensor dbias = test::nan_tensor(s.out_channels);
    conv.backward_data(r.data(), w.data(), dx.data());
    conv.backward_weights(x.data(), r.data(), dw.data(), dbias.data());
    EXPECT_TRUE(test::reference_is_trusted(numeric_dx, abs_dx));
    EXPECT_TRUE(test::reference_is_trusted(numeric_dw, abs_dw));
    EXPECT_TRUE(test::matches_reference(dx, numeric_dx, abs_dx, backward_data_length(s), fd_error))
        << "dx";
    EXPECT_TRUE(test::matches_reference(dw, numeric_dw, abs_dw, s.batch * s.in_height * s.in_width,
                                        fd_error))
        << "dw";
    EXPECT_TRUE(
        test::matches_reference(dbias, numeric_dbias, abs_dbias, s.batch * out_plane(s), fd_error))
        << "dbias";
  }
}

TEST(Transposed, AccumulateAddsToTheGradients) {
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 60; ++i) {
    const ConvTranspose2dShape s = test::random_transposed_shape(rng);
    Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    Tensor dx = test::nan_tensor(s.input_elements()), dw = test::nan_tensor(s.weight_elements());
    Tensor dbias = test::nan_tensor(s.out_channels);
    ConvTranspose2d(s, options).backward_data(dy.data(), w.data(), dx.data());
    ConvTranspose2d(s, options).backward_weights(x.data(), dy.data(), dw.data(), dbias.data());

    options.accumulate_gradients = true;
    const Tensor prior_dx = test::random_tensor(rng, s.input_elements());
    const Tensor prior_dw = test::random_tensor(rng, s.weight_elements());
    const Tensor prior_dbias = test::random_tensor(rng, s.out_channels);
    Tensor acc_dx = prior_dx, acc_dw = prior_dw, acc_dbias = prior_dbias;
    ConvTranspose2d accumulating(s, options);
    accumulating.backward_data(dy.data(), w.data(), acc_dx.data());
    accumulating.backward_weights(x.data(), dy.data(), acc_dw.data(), acc_dbias.data());
    // dbias is a double sum rounded once, then added: exactly prior + dbias.
    for (std::size_t j = 0; j < dbias.size(); ++j) {
      ASSERT_EQ(acc_dbias[j], prior_dbias[j] + dbias[j]) << j;
    }
    // dx and dw take the prior through the GEMM's beta: one more term in their sums. Their
    // sum |terms| come from the same passes on |inputs| (naive has no transposed gradients;
    // with every term positive, that pass's own rounding is relative and far below the bound).
    Tensor abs_dx = test::nan_tensor(s.input_elements());
    Tensor abs_dw = test::nan_tensor(s.weight_elements());
    ConvTranspose2d(s).backward_data(test::abs_of(dy).data(), test::abs_of(w).data(),
                                     abs_dx.data());
    ConvTranspose2d(s).backward_weights(test::abs_of(x).data(), test::abs_of(dy).data(),
                                        abs_dw.data(), nullptr);
    ASSERT_TRUE(test::matches_reference(acc_dx, plus(prior_dx, dx),
                                        plus(test::abs_of(prior_dx), abs_dx),
                                        backward_data_length(s) + 1))
        << "dx";
    ASSERT_TRUE(test::matches_reference(acc_dw, plus(prior_dw, dw),
                                        plus(test::abs_of(prior_dw), abs_dw),
                                        s.batch * s.in_height * s.in_width + 1))
        << "dw";
  }
}

TEST(Transposed, FreeFunctionsMatchThePlan) {
  std::mt19937_64 rng(test::test_seed());
  const ConvTranspose2dShape s = finite_difference_shapes()[0];
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor w = test::random_tensor(rng, s.weight_elements());
  const Tensor dy = test::random_tensor(rng, s.output_elements());
  const Tensor bias = test::random_tensor(rng, s.out_channels);
  ConvTranspose2d plan(s);
  EXPECT_EQ(plan.shape(), s);
  Tensor y1 = test::nan_tensor(s.output_elements()), y2 = y1;
  plan.forward(x.data(), w.data(), bias.data(), y1.data());
  conv_transpose2d_forward(s, x.data(), w.data(), bias.data(), y2.data());
  EXPECT_TRUE(test::bitwise_equal(y1, y2));
  Tensor dx1 = test::nan_tensor(s.input_elements()), dx2 = dx1;
  plan.backward_data(dy.data(), w.data(), dx1.data());
  conv_transpose2d_backward_data(s, dy.data(), w.data(), dx2.data());
  EXPECT_TRUE(test::bitwise_equal(dx1, dx2));
  Tensor dw1 = test::nan_tensor(s.weight_elements()), dw2 = dw1;
  Tensor db1 = test::nan_tensor(s.out_channels), db2 = db1;
  plan.backward_weights(x.data(), dy.data(), dw1.data(), db1.data());
  conv_transpose2d_backward_weights(s, x.data(), dy.data(), dw2.data(), db2.data());
  EXPECT_TRUE(test::bitwise_equal(dw1, dw2));
  EXPECT_TRUE(test::bitwise_equal(db1, db2));
}

}  // namespace
}  // namespace convgemm
