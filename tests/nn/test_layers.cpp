// ReLU, pooling, flatten, dense and softmax cross-entropy: gradients against finite differences
// in double (the kernels are templates, the float layers run the float instantiation), hand-worked
// values, PyTorch's conventions and the error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "convgemm/nn/activation.hpp"
#include "convgemm/nn/dense.hpp"
#include "convgemm/nn/flatten.hpp"
#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/pooling.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using testing::away_from_zero;
using testing::dot;
using testing::fd_tolerance;
using testing::finite_differences;
using ::testing::HasSubstr;
using testing::kSeed;
using testing::random_vector;
using testing::shuffled_grid;
using ::testing::ThrowsMessage;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Expects analytic[i] == finite difference of f at x[i] within `tolerance`.
void expect_close(std::span<const double> analytic, std::span<const double> numeric,
                  double tolerance) {
  ASSERT_EQ(analytic.size(), numeric.size());
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    EXPECT_NEAR(analytic[i], numeric[i], tolerance) << "index " << i;
  }
}

// --- ReLU ---------------------------------------------------------------------------------------

TEST(Relu, BackwardMatchesFiniteDifferencesInDouble) {
  std::mt19937_64 rng(kSeed);
  const std::size_t n = 300;
  const double h = 1e-3;  // below the 0.05 margin: no input crosses the kink
  std::vector<double> x = away_from_zero<double>(rng, n, 0.05);
  const std::vector<double> r = random_vector<double>(rng, n);
  std::vector<double> y(n), dx(n, kNaN);
  auto f = [&] {
    relu_forward<double>(int64_t(n), x.data(), y.data());
    return dot<double>(y, r);
  };
  f();
  relu_backward<double>(int64_t(n), y.data(), r.data(), dx.data());
  double magnitude = 0;
  for (std::size_t i = 0; i < n; ++i) magnitude += std::fabs(r[i] * x[i]);
  expect_close(dx, finite_differences(x, f, h), fd_tolerance(1.0 + double(n), magnitude, h));
}

TEST(Relu, ZeroGradientAtZeroAndNaNPropagates) {
  ReLU relu;
  const Tensor x =
      testing::make_tensor({1, 5}, std::vector<float>{-1.5f, 0.0f, 2.0f, float(kNaN), 3.0f});
  Tensor y, dx;
  relu.forward(x, y);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_TRUE(std::isnan(y[3]));
  const Tensor dy({1, 5}, 7.0f);
  relu.backward(x, y, dy, &dx);
  EXPECT_EQ(std::vector<float>(dx.values().begin(), dx.values().end()),
            (std::vector<float>{0.0f, 0.0f, 7.0f, 0.0f, 7.0f}));
}

// --- Max pooling --------------------------------------------------------------------------------

std::vector<Pool2dShape> pool_shapes() {
  // Overlapping windows (stride < kernel), gaps (stride > kernel), padding, odd sizes, batch 3.
  return {
      {.batch = 2,
       .channels = 3,
       .in_height = 6,
       .in_width = 6,
       .kernel_height = 2,
       .kernel_width = 2,
       .stride_height = 2,
       .stride_width = 2},
      {.batch = 3,
       .channels = 2,
       .in_height = 7,
       .in_width = 5,
       .kernel_height = 3,
       .kernel_width = 3,
       .stride_height = 1,
       .stride_width = 2,
       .pad_height = 1,
       .pad_width = 1},
      {.batch = 1,
       .channels = 1,
       .in_height = 9,
       .in_width = 8,
       .kernel_height = 2,
       .kernel_width = 3,
       .stride_height = 3,
       .stride_width = 4,
       .pad_height = 1,
       .pad_width = 0},
      {.batch = 1,
       .channels = 2,
       .in_height = 5,
       .in_width = 5,
       .kernel_height = 5,
       .kernel_width = 4,
       .stride_height = 1,
       .stride_width = 1,
       .pad_height = 2,
       .pad_width = 2},
  };
}

TEST(MaxPool2d, BackwardMatchesFiniteDifferencesInDouble) {
  std::mt19937_64 rng(kSeed);
  for (const Pool2dShape& s : pool_shapes()) {
    SCOPED_TRACE(s.to_string());
    const double gap = 0.01, h = 1e-3;  // h < gap / 2: no window's argmax can flip
    std::vector<double> x = shuffled_grid<double>(rng, std::size_t(s.input_elements()), gap);
    const std::vector<double> r = random_vector<double>(rng, std::size_t(s.output_elements()));
    std::vector<double> y(r.size()), dx(x.size(), kNaN);
    std::vector<int32_t> argmax(r.size());
    auto f = [&] {
      max_pool2d_forward<double>(s, x.data(), y.data(), argmax.data());
      return dot<double>(y, r);
    };
    f();
    max_pool2d_backward<double>(s, argmax.data(), r.data(), dx.data());
    double magnitude = 0;
    for (std::size_t i = 0; i < y.size(); ++i) magnitude += std::fabs(r[i] * y[i]);
    expect_close(dx, finite_differences(x, f, h),
                 fd_tolerance(1.0 + double(y.size()), magnitude, h));
  }
}

TEST(MaxPool2d, HandWorkedTwoByTwo) {
  MaxPool2d pool(2);
  std::vector<float> values(16);
  for (int i = 0; i < 16; ++i) values[std::size_t(i)] = float(i);
  const Tensor x = testing::make_tensor({1, 1, 4, 4}, values);
  Tensor y, dx;
  pool.forward(x, y);
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(std::vector<float>(y.values().begin(), y.values().end()),
            (std::vector<float>{5, 7, 13, 15}));
  pool.backward(x, y, testing::make_tensor({1, 1, 2, 2}, std::vector<float>{1, 2, 3, 4}), &dx);
  std::vector<float> expected(16, 0.0f);
  expected[5] = 1;
  expected[7] = 2;
  expected[13] = 3;
  expected[15] = 4;
  EXPECT_EQ(std::vector<float>(dx.values().begin(), dx.values().end()), expected);
}

TEST(MaxPool2d, FirstMaximumWinsOnTies) {
  // Every window is all ties; PyTorch routes the gradient to the first entry in row-major order.
  // The windows overlap (stride 1), so entry (0,0), (0,1), (1,0), (1,1) of the 3x3 input each
  // take exactly the window that starts on them.
  MaxPool2d pool(/*kernel_size=*/2, /*stride=*/1);
  const Tensor x({1, 1, 3, 3}, 4.0f);
  Tensor y, dx;
  pool.forward(x, y);
  const Tensor dy = testing::make_tensor({1, 1, 2, 2}, std::vector<float>{1, 10, 100, 1000});
  pool.backward(x, y, dy, &dx);
  EXPECT_EQ(std::vector<float>(dx.values().begin(), dx.values().end()),
            (std::vector<float>{1, 10, 0, 100, 1000, 0, 0, 0, 0}));
}

TEST(MaxPool2d, PaddingActsAsMinusInfinity) {
  // All inputs negative: zero padding would win every border window, -inf padding never does.
  MaxPool2d pool(/*kernel_size=*/2, /*stride=*/2, /*padding=*/1);
  const Tensor x = testing::make_tensor({1, 1, 2, 2}, std::vector<float>{-1, -2, -3, -4});
  Tensor y;
  pool.forward(x, y);
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(std::vector<float>(y.values().begin(), y.values().end()),
            (std::vector<float>{-1, -2, -3, -4}));
}

TEST(MaxPool2d, NaNIsTheMaximum) {
  MaxPool2d pool(2);
  const Tensor x = testing::make_tensor({1, 1, 2, 2}, std::vector<float>{1, float(kNaN), 5, 2});
  Tensor y;
  pool.forward(x, y);
  EXPECT_TRUE(std::isnan(y[0]));
}

TEST(MaxPool2d, RejectsBadGeometryAndInputs) {
  EXPECT_THAT(
      [] { MaxPool2d(3, 1, 2); },
      ThrowsMessage<std::invalid_argument>(HasSubstr("pad_height must be <= kernel_height / 2")));
  EXPECT_THAT([] { MaxPool2d(0); }, ThrowsMessage<std::invalid_argument>(HasSubstr("kernel_size")));
  MaxPool2d pool(2);
  Tensor y({1}, 5.0f);
  EXPECT_THAT(
      [&] {
        pool.forward(Tensor({4, 4}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("maxpool2d: input must have rank 4")));
  EXPECT_THAT(
      [&] {
        pool.forward(Tensor({1, 1, 1, 1}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("kernel_height")));
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{1}));  // untouched
  EXPECT_EQ(y[0], 5.0f);
}

// --- Average pooling ----------------------------------------------------------------------------

TEST(AvgPool2d, BackwardMatchesFiniteDifferencesInDouble) {
  std::mt19937_64 rng(kSeed + 1);
  for (bool include_pad : {true, false}) {
    for (const Pool2dShape& s : pool_shapes()) {
      SCOPED_TRACE(s.to_string() + (include_pad ? " count_include_pad" : " exclude_pad"));
      const double h = 1e-2;  // f is linear: no truncation error, only rounding
      std::vector<double> x = random_vector<double>(rng, std::size_t(s.input_elements()));
      const std::vector<double> r = random_vector<double>(rng, std::size_t(s.output_elements()));
      std::vector<double> y(r.size()), dx(x.size(), kNaN);
      auto f = [&] {
        avg_pool2d_forward<double>(s, include_pad, x.data(), y.data());
        return dot<double>(y, r);
      };
      avg_pool2d_backward<double>(s, include_pad, r.data(), dx.data());
      // Each output is a mean of at most KH*KW inputs, all |x| < 1.
      const double terms = double(s.kernel_height * s.kernel_width) + double(y.size());
      expect_close(dx, finite_differences(x, f, h), fd_tolerance(terms, testing::sum_abs(r), h));
    }
  }
}

TEST(AvgPool2d, CountIncludePadDecidesTheDivisor) {
  // 3x3 ones, 3x3 window, stride 1, padding 1: the corner window holds 4 real pixels and 5 pads.
  const Tensor x({1, 1, 3, 3}, 1.0f);
  Tensor y;
  AvgPool2d include(3, 1, 1, /*count_include_pad=*/true);
  include.forward(x, y);
  EXPECT_FLOAT_EQ(y[0], 4.0f / 9.0f);  // corner
  EXPECT_FLOAT_EQ(y[1], 6.0f / 9.0f);  // edge
  EXPECT_FLOAT_EQ(y[4], 1.0f);         // centre
  AvgPool2d exclude(3, 1, 1, /*count_include_pad=*/false);
  exclude.forward(x, y);
  for (float v : y.values()) EXPECT_FLOAT_EQ(v, 1.0f);
  // The gradient of the corner output spreads 1/9 (include) or 1/4 (exclude) over its pixels.
  Tensor dy({1, 1, 3, 3}, 0.0f), dx;
  dy[0] = 1.0f;
  include.backward(x, y, dy, &dx);
  EXPECT_FLOAT_EQ(dx[0], 1.0f / 9.0f);
  EXPECT_FLOAT_EQ(dx[2], 0.0f);
  exclude.backward(x, y, dy, &dx);
  EXPECT_FLOAT_EQ(dx[4], 1.0f / 4.0f);
}

// --- Flatten ------------------------------------------------------------------------------------

TEST(Flatten, ReshapesForwardAndBack) {
  Flatten flatten;
  std::mt19937_64 rng(kSeed);
  const std::vector<float> values = random_vector<float>(rng, 2 * 3 * 4 * 5);
  const Tensor x = testing::make_tensor({2, 3, 4, 5}, values);
  Tensor y, dx;
  flatten.forward(x, y);
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{2, 60}));
  EXPECT_TRUE(std::equal(values.begin(), values.end(), y.data()));
  flatten.backward(x, y, y, &dx);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_TRUE(std::equal(values.begin(), values.end(), dx.data()));
  EXPECT_THAT(
      [&] { flatten.forward(Tensor({7}), y); },
      ThrowsMessage<std::invalid_argument>(HasSubstr("flatten: input must have rank >= 2")));
}

// --- Dense --------------------------------------------------------------------------------------

TEST(Dense, BackwardMatchesFiniteDifferencesInDouble) {
  std::mt19937_64 rng(kSeed + 2);
  const int64_t batch = 3, in = 7, out = 5;
  std::vector<double> x = random_vector<double>(rng, std::size_t(batch * in));
  std::vector<double> w = random_vector<double>(rng, std::size_t(out * in));
  std::vector<double> b = random_vector<double>(rng, std::size_t(out));
  const std::vector<double> r = random_vector<double>(rng, std::size_t(batch * out));
  std::vector<double> y(r.size());
  auto f = [&] {
    dense_forward<double>(batch, in, out, x.data(), w.data(), b.data(), y.data());
    return dot<double>(y, r);
  };
  std::vector<double> dx(x.size(), kNaN), dw(w.size(), kNaN), db(b.size(), kNaN);
  dense_backward_data<double>(batch, in, out, r.data(), w.data(), dx.data());
  dense_backward_weights<double>(batch, in, out, x.data(), r.data(), dw.data(), db.data(),
                                 /*accumulate=*/false);
  // f is linear in each of x, w, b; every y is a sum of in + 1 terms of size < 1, and f sums
  // batch * out of them.
  const double h = 1e-2;
  const double tolerance =
      fd_tolerance(double(in + 1 + batch * out), double(in + 1) * testing::sum_abs(r), h);
  expect_close(dx, finite_differences(x, f, h), tolerance);
  expect_close(dw, finite_differences(w, f, h), tolerance);
  expect_close(db, finite_differences(b, f, h), tolerance);
}

TEST(Dense, HandWorkedForward) {
  Dense dense(2, 3);
  const std::vector<float> w = {1, 0, 0, 1, 1, 1};
  std::copy(w.begin(), w.end(), dense.weight().data());
  dense.bias()[0] = 0.5f;
  dense.bias()[2] = -1.0f;
  Tensor y;
  dense.forward(testing::make_tensor({1, 2}, std::vector<float>{1, 2}), y);
  EXPECT_EQ(std::vector<float>(y.values().begin(), y.values().end()),
            (std::vector<float>{1.5f, 2.0f, 2.0f}));
}

TEST(Dense, FloatLayerMatchesDoubleKernelAndAccumulates) {
  std::mt19937_64 rng(kSeed + 3);
  const int64_t batch = 4, in = 37, out = 11;
  Dense dense(in, out);
  dense.reset_parameters(rng);
  for (float& v : dense.bias().values()) v = float(testing::draw(rng, -1, 1));
  const std::vector<float> xf = random_vector<float>(rng, std::size_t(batch * in));
  const std::vector<float> dyf = random_vector<float>(rng, std::size_t(batch * out));
  const Tensor x = testing::make_tensor({batch, in}, xf);
  const Tensor dy = testing::make_tensor({batch, out}, dyf);
  Tensor y, dx;
  dense.forward(x, y);
  dense.backward(x, y, dy, &dx);
  dense.backward(x, y, dy, nullptr);  // parameter gradients accumulate: twice the gradient

  const auto wd = testing::to_double<float>(dense.weight().values());
  const auto bd = testing::to_double<float>(dense.bias().values());
  const auto xd = testing::to_double<float>(xf), dyd = testing::to_double<float>(dyf);
  std::vector<double> y_ref(std::size_t(batch * out)), dx_ref(xd.size()), dw_ref(wd.size()),
      db_ref(bd.size());
  dense_forward<double>(batch, in, out, xd.data(), wd.data(), bd.data(), y_ref.data());
  dense_backward_data<double>(batch, in, out, dyd.data(), wd.data(), dx_ref.data());
  dense_backward_weights<double>(batch, in, out, xd.data(), dyd.data(), dw_ref.data(),
                                 db_ref.data(), false);
  // |x|, |dy| < 1 and |w| < sqrt(6/in): bound every |term| by that product.
  const double w_max = std::sqrt(6.0 / double(in)) + 1.0;
  for (int64_t i = 0; i < y.size(); ++i) {
    EXPECT_NEAR(y[i], y_ref[std::size_t(i)],
                testing::float_tolerance(double(in + 1), double(in) * w_max + 1));
  }
  for (int64_t i = 0; i < dx.size(); ++i) {
    EXPECT_NEAR(dx[i], dx_ref[std::size_t(i)],
                testing::float_tolerance(double(out), double(out) * w_max));
  }
  const auto params = dense.parameters();
  for (std::size_t i = 0; i < dw_ref.size(); ++i) {
    EXPECT_NEAR(params[0].gradients[i], 2 * dw_ref[i],
                2 * testing::float_tolerance(double(batch + 1), double(batch)));
  }
  for (std::size_t i = 0; i < db_ref.size(); ++i) {
    EXPECT_NEAR(params[1].gradients[i], 2 * db_ref[i],
                2 * testing::float_tolerance(double(batch + 1), double(batch)));
  }
}

TEST(Dense, RejectsWrongInput) {
  Dense dense(4, 2);
  Tensor y;
  EXPECT_THAT(
      [&] {
        dense.forward(Tensor({2, 5}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("in_features = 4")));
  EXPECT_THAT(
      [&] {
        dense.forward(Tensor({2, 1, 2, 2}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("put a flatten before it")));
  EXPECT_THAT([] { Dense(0, 3); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("in_features must be >= 1 (got 0)")));
}

// --- Softmax cross-entropy ----------------------------------------------------------------------

TEST(SoftmaxCrossEntropy, BackwardMatchesFiniteDifferencesInDouble) {
  std::mt19937_64 rng(kSeed + 4);
  const int64_t batch = 4, classes = 7;
  std::vector<double> z = random_vector<double>(rng, std::size_t(batch * classes), -3, 3);
  const std::vector<int32_t> labels = {0, 6, 3, 3};
  std::vector<double> p(z.size()), dz(z.size(), kNaN);
  auto f = [&] {
    return softmax_cross_entropy_forward<double>(batch, classes, z.data(), labels.data(), p.data());
  };
  f();
  softmax_cross_entropy_backward<double>(batch, classes, p.data(), labels.data(), dz.data());
  // Along one logit the mean loss is lse/N plus a linear term; lse's third derivative along a
  // coordinate is p(1-p)(1-2p), at most 1/(6*sqrt(3)) < 0.1 in size. Rounding: each row sums
  // `classes` exponentials and adds lse <= 3 + log(7) to |z - max| <= 6, magnitude < 12.
  const double h = 1e-4;
  const double tolerance = fd_tolerance(double(classes + 2 + batch), 12.0, h, 0.1 / double(batch));
  expect_close(dz, finite_differences(z, f, h), tolerance);
}

TEST(SoftmaxCrossEntropy, UniformLogitsGiveLogOfClassCount) {
  SoftmaxCrossEntropy loss;
  const std::vector<int32_t> labels = {2, 0};
  EXPECT_NEAR(loss.forward(Tensor({2, 4}, 3.0f), labels), std::log(4.0), 1e-6);
  Tensor dz;
  loss.backward(dz);
  EXPECT_FLOAT_EQ(dz[2], (0.25f - 1.0f) / 2.0f);
  EXPECT_FLOAT_EQ(dz[3], 0.25f / 2.0f);
}

TEST(SoftmaxCrossEntropy, StableForLargeLogits) {
  SoftmaxCrossEntropy loss;
  const Tensor z = testing::make_tensor({2, 3}, std::vector<float>{1e4f, 0.0f, -1e4f,  //
                                                                   -1e4f, 1e4f, 1e4f});
  // Row 0, label 0: p = (1, 0, 0), loss 0. Row 1, label 0: loss = log(2) + 2e4.
  const std::vector<int32_t> labels = {0, 0};
  const double value = loss.forward(z, labels);
  EXPECT_TRUE(std::isfinite(value));
  EXPECT_NEAR(value, (0.0 + std::log(2.0) + 2e4) / 2.0, 1e-9 * 2e4);
  Tensor dz;
  loss.backward(dz);
  for (float v : dz.values()) EXPECT_TRUE(std::isfinite(v));
  EXPECT_FLOAT_EQ(dz[0], 0.0f);
  EXPECT_FLOAT_EQ(dz[3], -0.5f);
  EXPECT_FLOAT_EQ(dz[4], 0.25f);
  // Huge logits as well: the shift by the maximum keeps every exponent <= 0.
  const Tensor huge = testing::make_tensor({1, 2}, std::vector<float>{3e38f, -3e38f});
  const std::vector<int32_t> first = {0};
  EXPECT_EQ(loss.forward(huge, first), 0.0);
}

TEST(SoftmaxCrossEntropy, RejectsBadLabels) {
  SoftmaxCrossEntropy loss;
  const std::vector<int32_t> labels = {1, 3};
  EXPECT_THAT(
      [&] {
        loss.forward(Tensor({2, 3}), labels);
      },
      ThrowsMessage<std::invalid_argument>(
          HasSubstr("labels[1] must be in [0, classes) = [0, 3) (got 3)")));
  const std::vector<int32_t> one = {1};
  EXPECT_THAT(
      [&] {
        loss.forward(Tensor({2, 3}), one);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("labels.size()")));
}

}  // namespace
}  // namespace convgemm::nn
