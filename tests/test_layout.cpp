// Channels-last (Layout::nhwc): every pass, against the nchw naive loops on explicitly
// transposed copies (support/layout.hpp), so the oracle shares nothing with the nhwc path: the
// sweeps over every shape kind, the channel runs' edges, accumulation, the adjoint identity,
// finite differences, transposed convolution, and the named errors. (The packed driver's
// bitwise contract runs in both layouts in test_packed.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/naive.hpp"
#include "kernels.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/finite_differences.hpp"
#include "support/layout.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"
#include "support/tolerance.hpp"

namespace convgemm {
namespace {

using test::Role;
using test::Tensor;
using test::TensorD;

constexpr Layout kNhwc = Layout::nhwc;

class Nhwc : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gemm_backend_available(GemmBackend::packed)) GTEST_SKIP() << "built without BLIS";
  }
};

// The message of the std::invalid_argument that `f` throws ("" if it throws none).
template <class F>
std::string invalid_argument_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Layout, ToStringNamesTheLayout) {
  Conv2dShape s{.in_channels = 2, .out_channels = 3};
  EXPECT_EQ(s.to_string(), "n1_c2_h1w1_o3_k1x1_s1x1_p0.0.0.0_d1x1_g1_nchw");
  s.layout = kNhwc;
  EXPECT_EQ(s.to_string(), "n1_c2_h1w1_o3_k1x1_s1x1_p0.0.0.0_d1x1_g1_nhwc");
  const ConvTranspose2dShape t{.kernel_height = 2, .layout = kNhwc};
  EXPECT_EQ(t.to_string(), "transposed_n1_c1_h1w1_o1_k2x1_s1x1_p0.0.0.0_op0x0_d1x1_g1_nhwc");
  EXPECT_EQ(to_string(static_cast<Layout>(7)), "Layout(7)");
}

TEST(Layout, AValueOutsideTheEnumIsRefusedByName) {
  Conv2dShape s{.in_channels = 2, .out_channels = 3};
  s.layout = static_cast<Layout>(2);
  const std::string message = invalid_argument_of([&] { s.validate(); });
  EXPECT_NE(message.find("layout"), std::string::npos) << message;
  EXPECT_NE(message.find("got 2"), std::string::npos) << message;
  EXPECT_NE(invalid_argument_of([&] { Conv2d conv(s); }), "");
  ConvTranspose2dShape t;
  t.layout = static_cast<Layout>(-1);
  EXPECT_NE(invalid_argument_of([&] { t.validate(); }).find("layout"), std::string::npos);
}

TEST(Layout, NhwcOnTheExplicitPathIsRefusedByName) {
  const Conv2dShape s{.in_channels = 2, .out_channels = 3, .layout = kNhwc};
  std::string message =
      invalid_argument_of([&] { Conv2d conv(s, {.gemm_backend = GemmBackend::openblas}); });
  EXPECT_NE(message.find("layout nhwc"), std::string::npos) << message;
  EXPECT_NE(message.find("openblas"), std::string::npos) << message;
  if (gemm_backend_available(GemmBackend::onednn)) {
    message = invalid_argument_of([&] { Conv2d conv(s, {.gemm_backend = GemmBackend::onednn}); });
    EXPECT_NE(message.find("onednn"), std::string::npos) << message;
  }
}

TEST(Layout, NaiveRunsTheNchwFormulaOnly) {
  const Conv2dShape s{.layout = kNhwc};
  float x = 1, w = 1, y = 0;
  const std::string message =
      invalid_argument_of([&] { naive::conv2d_forward(s, &x, &w, nullptr, &y); });
  EXPECT_NE(message.find("layout (nhwc)"), std::string::npos) << message;
  EXPECT_EQ(y, 0.0f);
}

TEST(Layout, TransposeHelpersAreInverses) {
  // The oracle's only link to the nhwc tensors; [2, 3, 4, 5] -> [2, 4, 5, 3] by hand for one.
  std::mt19937_64 rng(test::test_seed());
  const Tensor t = test::random_tensor(rng, 2 * 3 * 4 * 5);
  const Tensor last = test::channels_last(t, 2, 3, 4, 5);
  EXPECT_EQ(last[((1 * 4 + 2) * 5 + 3) * 3 + 1], t[((1 * 3 + 1) * 4 + 2) * 5 + 3]);
  EXPECT_TRUE(test::bitwise_equal(test::channels_first(last, 2, 3, 4, 5), t));
}

TEST_F(Nhwc, MatchesNaiveOnEveryShapeKind) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (const test::ShapeKind kind : test::kAllShapeKinds) {
    for (int i = 0; i < 12; ++i) {
      const Conv2dShape s = test::with_layout(test::random_valid_shape(rng, kind), kNhwc);
      const Conv2dOptions options = test::random_options(rng, kNhwc);
      SCOPED_TRACE(s.to_string());
      SCOPED_TRACE(test::describe(options));
      test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/i % 2 == 0);
      test::expect_backward_data_matches_naive(s, options, rng);
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/i % 2 == 1);
    }
  }
}

TEST_F(Nhwc, MatchesNaiveAtTheEdgesOfTheChannelRuns) {
  // A tap of a patch is one run of C/G channels: runs of 1, shorter and longer than a vector of
  // four, than a panel and than the 64-float chunk the gathers move at a time, with groups and
  // padding (zero runs) around them.
  std::mt19937_64 rng(test::test_seed());
  const Conv2dOptions options{.num_threads = 2, .gemm_backend = GemmBackend::packed};
  for (const int64_t channels : {1, 3, 4, 5, 12, 31, 33, 63, 64, 65, 130}) {
    for (const int64_t groups : {1, 2}) {
      Conv2dShape s{.batch = 2,
                    .in_channels = channels * groups,
                    .in_height = 5,
                    .in_width = 6,
                    .out_channels = 5 * groups,
                    .kernel_height = 3,
                    .kernel_width = 2,
                    .stride_width = 2,
                    .pad_top = 1,
                    .pad_bottom = 2,
                    .pad_left = 1,
                    .pad_right = 0,
                    .groups = groups,
                    .layout = kNhwc};
      SCOPED_TRACE(s.to_string());
      test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
      test::expect_backward_data_matches_naive(s, options, rng);
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    }
  }
}

// backward_data and backward_weights of an nhwc plan with accumulate_gradients add to what dx,
// dw and dbias hold: prior + naive on the nchw copies, the prior one more term of each sum.
void expect_gradients_add_to_the_buffers(const Conv2dShape& s, Conv2dOptions options,
                                         std::mt19937_64& rng) {
  const auto plus = [](const Tensor& a, const Tensor& b) {
    Tensor sum(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
    return sum;
  };
  const Conv2dShape nchw = test::with_layout(s, Layout::nchw);
  options.accumulate_gradients = true;
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor w = test::random_tensor(rng, s.weight_elements());
  const Tensor dy = test::random_tensor(rng, s.output_elements());
  const Tensor prior_dx = test::random_tensor(rng, s.input_elements());
  const Tensor prior_dw = test::random_tensor(rng, s.weight_elements());
  const Tensor prior_dbias = test::random_tensor(rng, s.bias_elements());
  Tensor dx = test::to_layout(s, Role::input, prior_dx);
  Tensor dw = test::to_layout(s, Role::weights, prior_dw), dbias = prior_dbias;
  Conv2d conv(s, options);
  const Tensor dy_nhwc = test::to_layout(s, Role::output, dy);
  conv.backward_data(dy_nhwc.data(), test::to_layout(s, Role::weights, w).data(), dx.data());
  conv.backward_weights(test::to_layout(s, Role::input, x).data(), dy_nhwc.data(), dw.data(),
                        dbias.data());
  dx = test::from_layout(s, Role::input, dx);
  dw = test::from_layout(s, Role::weights, dw);

  Tensor naive_dx(dx.size()), abs_dx(dx.size());
  naive::conv2d_backward_data(nchw, dy.data(), w.data(), naive_dx.data());
  naive::conv2d_backward_data(nchw, test::abs_of(dy).data(), test::abs_of(w).data(), abs_dx.data());
  ASSERT_TRUE(test::matches_reference(dx, plus(prior_dx, naive_dx),
                                      plus(test::abs_of(prior_dx), abs_dx),
                                      s.gemm_m() * s.kernel_height * s.kernel_width + 1))
      << "dx";
  Tensor naive_dw(dw.size()), abs_dw(dw.size()), naive_dbias(dbias.size()), abs_dbias(dbias.size());
  naive::conv2d_backward_weights(nchw, x.data(), dy.data(), naive_dw.data(), naive_dbias.data());
  naive::conv2d_backward_weights(nchw, test::abs_of(x).data(), test::abs_of(dy).data(),
                                 abs_dw.data(), abs_dbias.data());
  const int64_t k = s.batch * s.gemm_p() + 1;
  ASSERT_TRUE(test::matches_reference(dw, plus(prior_dw, naive_dw),
                                      plus(test::abs_of(prior_dw), abs_dw), k))
      << "dw";
  ASSERT_TRUE(test::matches_reference(dbias, plus(prior_dbias, naive_dbias),
                                      plus(test::abs_of(prior_dbias), abs_dbias), k))
      << "dbias";
}

TEST(NhwcDepthwise, EveryFormOfTheDirectKernelsMatchesNaive) {
  // The nhwc depthwise kernels (no BLIS needed) have a register-blocked form (multiplier 1,
  // whole vectors of 16 channels, blocks of 4 pixels whose taps lie inside the image) and a
  // per-pixel one (borders, the channels after the last whole vector, multipliers, the rest of
  // a row), and backward_weights' blocked form is compiled per kernel width up to 7, summing up
  // to three kernel rows together. backward_data at stride 1 with multiplier 1 and paddings
  // within the kernel's extent runs as the forward kernels with the taps reversed. Enumerated:
  // channel counts around the vector, the forward's 3-vector groups and the 64-channel chunk,
  // multipliers, kernels 1x1 to 7x7, 1x8 and 9x9 (past backward_data's 64-tap blocks; 3x3 and
  // 5x5 at stride 1 and 2), dilation, asymmetric padding up to the extent and past it, widths
  // with and without a whole block, threads; each pass against naive, gradients also
  // accumulating.
  struct Geometry {
    int64_t kh, kw, stride_h, stride_w, dilation, pad_top, pad_bottom, pad_left, pad_right;
  };
  const Geometry geometries[] = {
      {3, 3, 1, 1, 1, 1, 1, 1, 1}, {3, 3, 2, 2, 1, 1, 1, 1, 1}, {5, 5, 1, 1, 1, 2, 2, 2, 2},
      {5, 5, 2, 2, 1, 2, 1, 2, 1}, {2, 3, 1, 2, 2, 0, 1, 2, 0}, {1, 1, 1, 1, 1, 0, 0, 0, 0},
      {1, 8, 1, 1, 1, 0, 0, 3, 4}, {3, 3, 3, 3, 1, 0, 2, 2, 0}, {3, 1, 1, 1, 1, 1, 1, 0, 0},
      {3, 2, 2, 1, 1, 1, 1, 1, 0}, {4, 4, 1, 1, 1, 2, 1, 2, 1}, {7, 7, 1, 2, 1, 3, 3, 3, 3},
      {3, 3, 1, 1, 1, 2, 2, 2, 2}, {3, 3, 1, 1, 2, 4, 0, 1, 4}, {3, 3, 1, 1, 1, 3, 0, 0, 3},
      {9, 9, 1, 2, 1, 4, 4, 4, 4}};
  struct Channels {
    int64_t in, multiplier;
  };
  const Channels channel_sets[] = {{1, 1},  {15, 1},  {16, 1}, {17, 1}, {48, 1},
                                   {65, 1}, {144, 1}, {8, 2},  {17, 3}};
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  int case_index = 0, data_gradients_as_forwards = 0;
  for (const Geometry& g : geometries) {
    for (const Channels& c : channel_sets) {
      for (const int64_t width : {5, 13}) {
        const Conv2dShape s{.batch = 2,
                            .in_channels = c.in,
                            .in_height = 6,
                            .in_width = width,
                            .out_channels = c.in * c.multiplier,
                            .kernel_height = g.kh,
                            .kernel_width = g.kw,
                            .stride_height = g.stride_h,
                            .stride_width = g.stride_w,
                            .pad_top = g.pad_top,
                            .pad_bottom = g.pad_bottom,
                            .pad_left = g.pad_left,
                            .pad_right = g.pad_right,
                            .dilation_height = g.dilation,
                            .dilation_width = g.dilation,
                            .groups = c.in,
                            .layout = kNhwc};
        const Conv2dOptions options{.num_threads = 1 + case_index++ % 3};
        SCOPED_TRACE(s.to_string());
        ASSERT_EQ(Conv2d(s, options).describe(), "depthwise direct kernels, nhwc");
        data_gradients_as_forwards += detail::depthwise_nhwc_data_gradient_is_a_forward(s);
        test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/width == 13);
        test::expect_backward_data_matches_naive(s, options, rng);
        test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
        expect_gradients_add_to_the_buffers(s, options, rng);
      }
    }
  }
  // Both backward_data routes are reached: as a forward with reversed taps, and gathered.
  EXPECT_GT(data_gradients_as_forwards, 0);
  EXPECT_LT(data_gradients_as_forwards, case_index);
}

TEST(NhwcDepthwise, WeightGradientMatchesNaiveInEveryChunkingOfItsRows) {
  // The nhwc depthwise backward_weights sums dw and db in chunks of the batch's output rows
  // fixed by the shape (at most 16, their sums at most 1 MiB), added in chunk order. Enumerated:
  // one chunk, a chunk per row, 16 chunks cut inside images, chunks capped by the sums' size
  // (2048 channels), and stride 2; each against naive, with bias, accumulating, on 1-3 threads.
  struct Case {
    int64_t batch, channels, height, width, stride, chunks;
  };
  const Case cases[] = {{1, 20, 1, 9, 1, 1},
                        {1, 33, 5, 7, 1, 5},
                        {3, 48, 7, 6, 1, 16},
                        {2, 2048, 8, 5, 1, 11},
                        {2, 17, 9, 8, 2, 10}};
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  int case_index = 0;
  for (const Case& c : cases) {
    Conv2dShape s{.batch = c.batch,
                  .in_channels = c.channels,
                  .in_height = c.height,
                  .in_width = c.width,
                  .out_channels = c.channels,
                  .kernel_height = 3,
                  .kernel_width = 3,
                  .stride_height = c.stride,
                  .stride_width = c.stride,
                  .groups = c.channels,
                  .layout = kNhwc};
    s.set_padding(1);
    SCOPED_TRACE(s.to_string());
    ASSERT_EQ(detail::depthwise_nhwc_weight_chunks(s), c.chunks);
    const Conv2dOptions options{.num_threads = 1 + case_index++ % 3};
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    expect_gradients_add_to_the_buffers(s, options, rng);
  }
}

TEST(NhwcDepthwise, TransposedBackwardDataAddsTheDirectForwardToTheBuffer) {
  // A depthwise transposed convolution's backward_data is the direct forward kernel with
  // accumulate (its only caller that accumulates): dx = prior + conv(dy; w).
  std::mt19937_64 rng(test::test_seed());
  for (const int64_t channels : {7, 16, 40}) {
    const ConvTranspose2dShape s{.batch = 2,
                                 .in_channels = channels,
                                 .in_height = 5,
                                 .in_width = 7,
                                 .out_channels = channels,
                                 .kernel_height = 3,
                                 .kernel_width = 3,
                                 .stride_height = 1,
                                 .stride_width = 2,
                                 .pad_top = 1,
                                 .pad_bottom = 1,
                                 .pad_left = 1,
                                 .pad_right = 1,
                                 .groups = channels,
                                 .layout = kNhwc};
    SCOPED_TRACE(s.to_string());
    const Conv2dShape conv = test::with_layout(s.as_convolution(), Layout::nchw);
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor prior = test::random_tensor(rng, s.input_elements());
    Tensor dx = test::to_layout(s, Role::input, prior);
    ConvTranspose2d(s, {.accumulate_gradients = true, .num_threads = 2})
        .backward_data(test::to_layout(s, Role::output, dy).data(),
                       test::to_layout(s, Role::weights, w).data(), dx.data());
    dx = test::from_layout(s, Role::input, dx);
    Tensor ref(dx.size()), abs_ref(dx.size());
    naive::conv2d_forward(conv, dy.data(), w.data(), nullptr, ref.data());
    naive::conv2d_forward(conv, test::abs_of(dy).data(), test::abs_of(w).data(), nullptr,
                          abs_ref.data());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      ref[i] += prior[i];
      abs_ref[i] += std::abs(prior[i]);
    }
    EXPECT_TRUE(test::matches_reference(dx, ref, abs_ref, conv.gemm_k() + 1));
  }
}

TEST_F(Nhwc, GradientsAddToWhatTheBuffersHold) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 60; ++i) {
    const Conv2dShape s = test::with_layout(test::random_valid_shape(rng), kNhwc);
    const Conv2dOptions options = test::random_options(rng, kNhwc);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    expect_gradients_add_to_the_buffers(s, options, rng);
  }
}

TEST_F(Nhwc, BackwardDataIsAdjointOfForward) {
  // <conv(x), dy> = <x, backward_data(dy)>, both sides from nhwc plans; inner products do not
  // depend on the order the elements are stored in.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 150; ++i) {
    const Conv2dShape s = test::with_layout(test::random_valid_shape(rng), kNhwc);
    const Conv2dOptions options = test::random_options(rng, kNhwc);
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    Tensor y = test::nan_tensor(s.output_elements()), dx = test::nan_tensor(s.input_elements());
    Conv2d conv(s, options);
    conv.forward(x.data(), w.data(), nullptr, y.data());
    conv.backward_data(dy.data(), w.data(), dx.data());
    // The bound's <A|x|, |u|> from naive on the nchw copies.
    const Conv2dShape nchw = test::with_layout(s, Layout::nchw);
    Tensor abs_y(y.size());
    naive::conv2d_forward(nchw, test::abs_of(test::from_layout(s, Role::input, x)).data(),
                          test::abs_of(test::from_layout(s, Role::weights, w)).data(), nullptr,
                          abs_y.data());
    const double abs_inner = test::dot(abs_y, test::abs_of(test::from_layout(s, Role::output, dy)));
    ASSERT_GT(abs_inner, 0.0);
    const int64_t k_adjoint = s.gemm_m() * s.kernel_height * s.kernel_width;
    ASSERT_TRUE(test::near(test::dot(y, dy), test::dot(x, dx),
                           test::adjoint_tolerance(s.gemm_k(), k_adjoint, abs_inner)));
  }
}

TEST_F(Nhwc, GradientsMatchFiniteDifferencesOfTheDoubleNaiveForward) {
  // loss(x, w, b) = sum(naive_forward(x, w, b) * r) in double on the nchw copies; its gradients
  // are the nhwc plan's backward_data(r) and backward_weights(x, r), transposed back.
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& nchw : test::finite_difference_shapes()) {
    const Conv2dShape s = test::with_layout(nchw, kNhwc);
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.bias_elements());
    const Tensor r = test::random_tensor(rng, s.output_elements());
    TensorD x_d = test::to_double(x), w_d = test::to_double(w), bias_d = test::to_double(bias);
    const TensorD r_d = test::to_double(r);
    TensorD y_d(r.size());
    const auto loss = [&] {
      naive::conv2d_forward(nchw, x_d.data(), w_d.data(), bias_d.data(), y_d.data());
      return test::dot(y_d, r_d);
    };
    const TensorD numeric_dx = test::central_differences(x_d, loss);
    const TensorD numeric_dw = test::central_differences(w_d, loss);
    const TensorD numeric_dbias = test::central_differences(bias_d, loss);

    Conv2d conv(s);
    const Tensor r_nhwc = test::to_layout(s, Role::output, r);
    Tensor dx = test::nan_tensor(s.input_elements()), dw = test::nan_tensor(s.weight_elements());
    Tensor dbias = test::nan_tensor(s.bias_elements());
    conv.backward_data(r_nhwc.data(), test::to_layout(s, Role::weights, w).data(), dx.data());
    conv.backward_weights(test::to_layout(s, Role::input, x).data(), r_nhwc.data(), dw.data(),
                          dbias.data());
    dx = test::from_layout(s, Role::input, dx);
    dw = test::from_layout(s, Role::weights, dw);

    // sum |y * r| over the loss's terms, bounded for every perturbed value by |.| + step.
    TensorD abs_x = test::abs_of(x_d), abs_w = test::abs_of(w_d), abs_b = test::abs_of(bias_d);
    for (TensorD* t : {&abs_x, &abs_w, &abs_b})
      for (double& v : *t) v += test::kFiniteDifferenceStep;
    TensorD abs_y(r.size());
    naive::conv2d_forward(nchw, abs_x.data(), abs_w.data(), abs_b.data(), abs_y.data());
    const double fd_error = test::central_difference_error(s.gemm_k() + 1 + s.output_elements(),
                                                           test::dot(abs_y, test::abs_of(r_d)),
                                                           test::kFiniteDifferenceStep);
    TensorD abs_dx(dx.size()), abs_dw(dw.size()), abs_dbias(dbias.size());
    naive::conv2d_backward_data(nchw, test::abs_of(r_d).data(), test::abs_of(w_d).data(),
                                abs_dx.data());
    naive::conv2d_backward_weights(nchw, test::abs_of(test::to_double(x)).data(),
                                   test::abs_of(r_d).data(), abs_dw.data(), abs_dbias.data());
    const int64_t k_data = s.gemm_m() * s.kernel_height * s.kernel_width;
    const int64_t k_weights = s.batch * s.gemm_p();
    EXPECT_TRUE(test::reference_is_trusted(numeric_dx, abs_dx));
    EXPECT_TRUE(test::matches_reference(dx, numeric_dx, abs_dx, k_data, fd_error)) << "dx";
    EXPECT_TRUE(test::reference_is_trusted(numeric_dw, abs_dw));
    EXPECT_TRUE(test::matches_reference(dw, numeric_dw, abs_dw, k_weights, fd_error)) << "dw";
    EXPECT_TRUE(test::matches_reference(dbias, numeric_dbias, abs_dbias, k_weights, fd_error))
        << "dbias";
  }
}

TEST_F(Nhwc, TransposedConvolutionMatchesNaiveInEveryPass) {
  // Weights [C, KH, KW, O/G] in nhwc; the three passes and the bias against naive's transposed
  // loops on the nchw copies.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 80; ++i) {
    const ConvTranspose2dShape s = test::with_layout(test::random_transposed_shape(rng), kNhwc);
    const ConvTranspose2dShape nchw = test::with_layout(s, Layout::nchw);
    const Conv2dOptions options = test::random_options(rng, kNhwc);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.out_channels);
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    ConvTranspose2d conv(s, options);
    const Tensor x_nhwc = test::to_layout(s, Role::input, x);
    const Tensor w_nhwc = test::to_layout(s, Role::weights, w);
    const Tensor dy_nhwc = test::to_layout(s, Role::output, dy);
    Tensor y = test::nan_tensor(s.output_elements()), dx = test::nan_tensor(s.input_elements());
    Tensor dw = test::nan_tensor(s.weight_elements()), dbias = test::nan_tensor(s.out_channels);
    conv.forward(x_nhwc.data(), w_nhwc.data(), bias.data(), y.data());
    conv.backward_data(dy_nhwc.data(), w_nhwc.data(), dx.data());
    conv.backward_weights(x_nhwc.data(), dy_nhwc.data(), dw.data(), dbias.data());
    y = test::from_layout(s, Role::output, y);
    dx = test::from_layout(s, Role::input, dx);
    dw = test::from_layout(s, Role::weights, dw);

    const int64_t taps = s.kernel_height * s.kernel_width;
    const int64_t forward_k = s.in_channels / s.groups * taps;
    Tensor ref(y.size()), abs_ref(y.size());
    naive::conv_transpose2d_forward(nchw, x.data(), w.data(), bias.data(), ref.data());
    naive::conv_transpose2d_forward(nchw, test::abs_of(x).data(), test::abs_of(w).data(),
                                    test::abs_of(bias).data(), abs_ref.data());
    ASSERT_TRUE(test::reference_is_trusted(ref, abs_ref)) << "y";
    ASSERT_TRUE(test::matches_reference(y, ref, abs_ref, forward_k + 1)) << "y";
    // backward_data is forward's adjoint: <convT(x), dy> = <x, dx> (without the bias), both
    // from the nhwc plan; the bound's <A|x|, |u|> from naive on the nchw copies.
    Tensor y_plain = test::nan_tensor(s.output_elements());
    conv.forward(x_nhwc.data(), w_nhwc.data(), nullptr, y_plain.data());
    Tensor abs_y(y.size());
    naive::conv_transpose2d_forward(nchw, test::abs_of(x).data(), test::abs_of(w).data(), nullptr,
                                    abs_y.data());
    const double abs_inner = test::dot(abs_y, test::abs_of(dy));
    const int64_t data_k = s.out_channels / s.groups * taps;
    ASSERT_TRUE(test::near(test::dot(y_plain, dy_nhwc), test::dot(x, dx),
                           test::adjoint_tolerance(forward_k, data_k, abs_inner)))
        << "dx";
    // dw by a random projection: the loss <convT(x; w), dy> is linear in w, so for any v,
    // <dw, v> = <naive(x; v), dy>.
    const Tensor v = test::random_tensor(rng, s.weight_elements());
    TensorD y_v(dy.size()), abs_y_v(dy.size());
    naive::conv_transpose2d_forward(nchw, test::to_double(x).data(), test::to_double(v).data(),
                                    nullptr, y_v.data());
    naive::conv_transpose2d_forward(nchw, test::abs_of(test::to_double(x)).data(),
                                    test::abs_of(test::to_double(v)).data(), nullptr,
                                    abs_y_v.data());
    const int64_t plane = s.out_height() * s.out_width();
    const TensorD dy_d = test::to_double(dy);
    ASSERT_TRUE(test::near(test::dot(dw, v), test::dot(y_v, dy_d),
                           test::tolerance(s.batch * s.in_height * s.in_width,
                                           test::dot(abs_y_v, test::abs_of(dy_d)))))
        << "dw";
    const TensorD ref_dbias = test::channel_sums(dy, s.batch, s.out_channels, plane);
    const TensorD abs_dbias = test::channel_sums(test::abs_of(dy), s.batch, s.out_channels, plane);
    ASSERT_TRUE(
        test::matches_reference(dbias, ref_dbias, abs_dbias, s.batch * plane, /*extra=*/0.0))
        << "dbias";
  }
}

}  // namespace
}  // namespace convgemm
