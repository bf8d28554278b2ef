// The Conv2d layer over the engine's plan: gradients against the naive double loops (themselves
// checked by finite differences), stride 2 = stride 1 subsampled, a stack computed patch by patch
// = layer by layer, the plan cache, gradient accumulation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "convgemm/naive.hpp"
#include "convgemm/nn/conv2d.hpp"
#include "convgemm/nn/receptive_field.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using testing::kSeed;
using testing::random_vector;
using ::testing::ThrowsMessage;

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

std::vector<Conv2dShape> awkward_shapes() {
  std::vector<Conv2dShape> shapes;
  Conv2dShape a{.batch = 3,
                .in_channels = 5,
                .in_height = 9,
                .in_width = 7,
                .out_channels = 4,
                .kernel_height = 3,
                .kernel_width = 3};
  a.set_padding(1);
  shapes.push_back(a);
  Conv2dShape b{.batch = 2,
                .in_channels = 4,
                .in_height = 11,
                .in_width = 10,
                .out_channels = 6,
                .kernel_height = 5,
                .kernel_width = 3,
                .stride_height = 2,
                .stride_width = 3,
                .pad_top = 2,
                .pad_bottom = 1,
                .pad_left = 0,
                .pad_right = 2,
                .dilation_height = 1,
                .dilation_width = 2,
                .groups = 2};
  shapes.push_back(b);
  Conv2dShape c{.batch = 1,
                .in_channels = 3,
                .in_height = 6,
                .in_width = 6,
                .out_channels = 3,
                .kernel_height = 1,
                .kernel_width = 1};
  shapes.push_back(c);
  Conv2dShape depthwise{.batch = 2,
                        .in_channels = 4,
                        .in_height = 8,
                        .in_width = 8,
                        .out_channels = 4,
                        .kernel_height = 3,
                        .kernel_width = 3,
                        .stride_height = 2,
                        .stride_width = 2,
                        .groups = 4};
  depthwise.set_padding(1);
  shapes.push_back(depthwise);
  return shapes;
}

std::vector<double> absolute(std::span<const double> v) {
  std::vector<double> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

TEST(Conv2dLayer, NaiveDoubleGradientsMatchFiniteDifferences) {
  // The oracle the layer is compared with below: its backward loops are the derivative of its
  // forward loop. f = <r, conv(x, w) + b> is linear in each, so only rounding separates them.
  std::mt19937_64 rng(kSeed);
  for (Conv2dShape s : awkward_shapes()) {
    s.batch = std::min<int64_t>(s.batch, 2);
    SCOPED_TRACE(s.to_string());
    std::vector<double> x = random_vector<double>(rng, std::size_t(s.input_elements()));
    std::vector<double> w = random_vector<double>(rng, std::size_t(s.weight_elements()));
    std::vector<double> b = random_vector<double>(rng, std::size_t(s.bias_elements()));
    const std::vector<double> r = random_vector<double>(rng, std::size_t(s.output_elements()));
    std::vector<double> y(r.size());
    auto f = [&] {
      naive::conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
      return testing::dot<double>(y, r);
    };
    std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
    naive::conv2d_backward_data(s, r.data(), w.data(), dx.data());
    naive::conv2d_backward_weights(s, x.data(), r.data(), dw.data(), db.data());
    const double h = 1e-2;
    const double terms = double(s.gemm_k() + 1) + double(y.size());
    const double tolerance =
        testing::fd_tolerance(terms, double(s.gemm_k() + 1) * testing::sum_abs(r), h);
    for (auto [analytic, variable] : {std::pair{&dx, &x}, std::pair{&dw, &w}, std::pair{&db, &b}}) {
      const std::vector<double> numeric = testing::finite_differences(*variable, f, h);
      for (std::size_t i = 0; i < numeric.size(); ++i) {
        EXPECT_NEAR((*analytic)[i], numeric[i], tolerance) << "index " << i;
      }
    }
  }
}

TEST(Conv2dLayer, ForwardAndGradientsMatchNaiveDouble) {
  std::mt19937_64 rng(kSeed + 1);
  for (const Conv2dShape& s : awkward_shapes()) {
    SCOPED_TRACE(s.to_string());
    Conv2d layer(s);
    layer.reset_parameters(rng);
    for (float& v : layer.bias().values()) v = float(testing::draw(rng, -1, 1));
    const std::vector<float> xf = random_vector<float>(rng, std::size_t(s.input_elements()));
    const std::vector<float> dyf = random_vector<float>(rng, std::size_t(s.output_elements()));
    const Tensor x = testing::make_tensor({s.batch, s.in_channels, s.in_height, s.in_width}, xf);
    const Tensor dy =
        testing::make_tensor({s.batch, s.out_channels, s.out_height(), s.out_width()}, dyf);
    Tensor y({1}, kNaNf), dx(x.shape(), kNaNf);
    layer.forward(x, y);
    layer.backward(x, y, dy, &dx);

    const auto xd = testing::to_double<float>(xf), dyd = testing::to_double<float>(dyf);
    const auto wd = testing::to_double<float>(layer.weight().values());
    const auto bd = testing::to_double<float>(layer.bias().values());
    std::vector<double> y_ref(dyd.size()), dx_ref(xd.size()), dw_ref(wd.size()), db_ref(bd.size());
    naive::conv2d_forward(s, xd.data(), wd.data(), bd.data(), y_ref.data());
    naive::conv2d_backward_data(s, dyd.data(), wd.data(), dx_ref.data());
    naive::conv2d_backward_weights(s, xd.data(), dyd.data(), dw_ref.data(), db_ref.data());
    // The sums of |terms|: the same passes on absolute values (STYLE.md's tolerance).
    const auto xa = absolute(xd), dya = absolute(dyd), wa = absolute(wd), ba = absolute(bd);
    std::vector<double> y_abs(y_ref.size()), dx_abs(dx_ref.size()), dw_abs(dw_ref.size()),
        db_abs(db_ref.size());
    naive::conv2d_forward(s, xa.data(), wa.data(), ba.data(), y_abs.data());
    naive::conv2d_backward_data(s, dya.data(), wa.data(), dx_abs.data());
    naive::conv2d_backward_weights(s, xa.data(), dya.data(), dw_abs.data(), db_abs.data());

    const double k_forward = double(s.gemm_k() + 1);
    const double k_data = double(s.gemm_m() * s.kernel_height * s.kernel_width);
    const double k_weights = double(s.batch * s.gemm_p());
    for (std::size_t i = 0; i < y_ref.size(); ++i) {
      ASSERT_NEAR(y[int64_t(i)], y_ref[i], testing::float_tolerance(k_forward, y_abs[i])) << i;
    }
    for (std::size_t i = 0; i < dx_ref.size(); ++i) {
      ASSERT_NEAR(dx[int64_t(i)], dx_ref[i], testing::float_tolerance(k_data, dx_abs[i])) << i;
    }
    const auto params = layer.parameters();
    for (std::size_t i = 0; i < dw_ref.size(); ++i) {
      ASSERT_NEAR(params[0].gradients[i], dw_ref[i],
                  testing::float_tolerance(k_weights, dw_abs[i]));
    }
    for (std::size_t i = 0; i < db_ref.size(); ++i) {
      ASSERT_NEAR(params[1].gradients[i], db_ref[i],
                  testing::float_tolerance(k_weights, db_abs[i]));
    }
  }
}

// Short dyadic values (multiples of 1/2 in [-1, 1]) for the structural properties below: every
// product and partial sum of the stacks used here is a multiple of 2^-4 below 2^20, exact in
// float whatever the summation order, so the properties hold bit for bit.
void fill_dyadic(std::mt19937_64& rng, std::span<float> values) {
  const std::vector<float> v = testing::dyadic(rng, values.size(), /*limit=*/1, /*denominator=*/2);
  std::copy(v.begin(), v.end(), values.begin());
}

TEST(Conv2dLayer, StrideTwoEqualsStrideOneSubsampled) {
  std::mt19937_64 rng(kSeed + 2);
  for (int64_t pad : {0, 1, 2}) {
    Conv2dShape s1{.in_channels = 3, .out_channels = 4, .kernel_height = 3, .kernel_width = 3};
    s1.set_padding(pad);
    Conv2dShape s2 = s1;
    s2.stride_height = s2.stride_width = 2;
    SCOPED_TRACE("pad " + std::to_string(pad));
    Conv2d dense_conv(s1), strided(s2);
    fill_dyadic(rng, dense_conv.weight().values());
    fill_dyadic(rng, dense_conv.bias().values());
    std::copy(dense_conv.weight().values().begin(), dense_conv.weight().values().end(),
              strided.weight().data());
    std::copy(dense_conv.bias().values().begin(), dense_conv.bias().values().end(),
              strided.bias().data());
    Tensor x({2, 3, 11, 8});
    fill_dyadic(rng, x.values());
    Tensor y1, y2;
    dense_conv.forward(x, y1);
    strided.forward(x, y2);
    const int64_t OH = y2.dim(2), OW = y2.dim(3), OH1 = y1.dim(2), OW1 = y1.dim(3);
    ASSERT_EQ(OH, (OH1 + 1) / 2);
    ASSERT_EQ(OW, (OW1 + 1) / 2);
    // Forward: y2[.., i, j] = y1[.., 2i, 2j]. Backward: the stride-2 gradients equal the stride-1
    // gradients of dy scattered onto the even positions (zeros elsewhere).
    Tensor dy2(y2.shape()), dy1(y1.shape(), 0.0f);
    fill_dyadic(rng, dy2.values());
    for (int64_t p = 0; p < 2 * 4; ++p) {
      for (int64_t i = 0; i < OH; ++i) {
        for (int64_t j = 0; j < OW; ++j) {
          EXPECT_EQ(y2[(p * OH + i) * OW + j], y1[(p * OH1 + 2 * i) * OW1 + 2 * j]);
          dy1[(p * OH1 + 2 * i) * OW1 + 2 * j] = dy2[(p * OH + i) * OW + j];
        }
      }
    }
    Tensor dx1, dx2;
    dense_conv.backward(x, y1, dy1, &dx1);
    strided.backward(x, y2, dy2, &dx2);
    EXPECT_TRUE(std::equal(dx1.values().begin(), dx1.values().end(), dx2.values().begin()));
    const auto p1 = dense_conv.parameters(), p2 = strided.parameters();
    for (std::size_t k = 0; k < p1.size(); ++k) {
      EXPECT_TRUE(
          std::equal(p1[k].gradients.begin(), p1[k].gradients.end(), p2[k].gradients.begin()))
          << p1[k].name;
    }
  }
}

TEST(Conv2dLayer, ThreeStackedConvsPatchByPatchEqualLayerByLayer) {
  // Padded stack over a whole 21x23 image, versus the same weights without padding run on the
  // receptive-field crop of each output position whose field lies inside the image: such a
  // position never reads a padded intermediate value, so the two must agree exactly.
  std::mt19937_64 rng(kSeed + 3);
  auto conv = [](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
    Conv2dShape s{.in_channels = in,
                  .out_channels = out,
                  .kernel_height = k,
                  .kernel_width = k,
                  .stride_height = stride,
                  .stride_width = stride};
    s.set_padding(pad);
    return s;
  };
  const std::vector<Conv2dShape> padded = {conv(2, 3, 3, 1, 1), conv(3, 3, 3, 2, 1),
                                           conv(3, 2, 5, 1, 2)};
  std::vector<Conv2d> whole, patch;
  std::vector<Window2d> windows;
  for (const Conv2dShape& s : padded) {
    Conv2dShape unpadded = s;
    unpadded.set_padding(0);
    whole.emplace_back(s);
    patch.emplace_back(unpadded);
    fill_dyadic(rng, whole.back().weight().values());
    fill_dyadic(rng, whole.back().bias().values());
    std::copy(whole.back().weight().values().begin(), whole.back().weight().values().end(),
              patch.back().weight().data());
    std::copy(whole.back().bias().values().begin(), whole.back().bias().values().end(),
              patch.back().bias().data());
    windows.push_back(window_of(s));
  }
  const ReceptiveField field = receptive_field(windows);
  ASSERT_EQ(field.height.size, 13);  // 1 + 2*1 + 2*1 + 4*2
  ASSERT_EQ(field.height.jump, 2);
  ASSERT_EQ(field.height.start, -6);  // -1 - 1*1 - 2*2

  const int64_t H = 21, W = 23, C = 2;
  Tensor x({1, C, H, W});
  fill_dyadic(rng, x.values());
  Tensor a, b, y;
  whole[0].forward(x, a);
  whole[1].forward(a, b);
  whole[2].forward(b, y);
  const int64_t O = y.dim(1), OH = y.dim(2), OW = y.dim(3);
  const int64_t r = field.height.size;
  int64_t compared = 0;
  Tensor crop({1, C, r, r}), pa, pb, py;
  for (int64_t i = 0; i < OH; ++i) {
    for (int64_t j = 0; j < OW; ++j) {
      const int64_t top = field.height.start + i * field.height.jump;
      const int64_t left = field.width.start + j * field.width.jump;
      if (top < 0 || left < 0 || top + r > H || left + r > W) continue;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t u = 0; u < r; ++u) {
          for (int64_t v = 0; v < r; ++v) {
            crop[(c * r + u) * r + v] = x[(c * H + top + u) * W + left + v];
          }
        }
      }
      patch[0].forward(crop, pa);
      patch[1].forward(pa, pb);
      patch[2].forward(pb, py);
      ASSERT_EQ(py.shape(), (std::vector<int64_t>{1, O, 1, 1}));
      for (int64_t o = 0; o < O; ++o) {
        EXPECT_EQ(py[o], y[(o * OH + i) * OW + j]) << "output " << o << " at " << i << "," << j;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 5 * 6);  // rows 3..7 and columns 3..8 have their field inside
}

TEST(Conv2dLayer, CachesOnePlanPerInputShape) {
  std::mt19937_64 rng(kSeed + 4);
  Conv2d layer(2, 3, 3);
  layer.reset_parameters(rng);
  Tensor x2({2, 2, 6, 6}), x3({3, 2, 6, 6}), y, y_again;
  fill_dyadic(rng, x2.values());
  fill_dyadic(rng, x3.values());
  layer.forward(x2, y);
  layer.forward(x3, y_again);
  layer.forward(x2, y_again);
  EXPECT_EQ(layer.cached_plans(), 2);
  EXPECT_TRUE(std::equal(y.values().begin(), y.values().end(), y_again.values().begin()));
  for (int64_t n = 4; n < 10; ++n) layer.forward(Tensor({n, 2, 6, 6}, 0.5f), y);
  EXPECT_EQ(layer.cached_plans(), Conv2d::kMaxPlans);
}

TEST(Conv2dLayer, AccumulatesParameterGradientsAndOverwritesDx) {
  std::mt19937_64 rng(kSeed + 5);
  Conv2d layer(2, 3, 3, /*stride=*/1, /*padding=*/1);
  fill_dyadic(rng, layer.weight().values());
  Tensor x({2, 2, 5, 5}), y, dy, dx_once, dx_twice;
  fill_dyadic(rng, x.values());
  layer.forward(x, y);
  dy.resize(y.shape());
  fill_dyadic(rng, dy.values());
  layer.backward(x, y, dy, &dx_once);
  const std::vector<float> once(layer.parameters()[0].gradients.begin(),
                                layer.parameters()[0].gradients.end());
  dx_twice.resize(x.shape());
  dx_twice.fill(kNaNf);  // overwritten, not added to
  layer.backward(x, y, dy, &dx_twice);
  EXPECT_TRUE(
      std::equal(dx_once.values().begin(), dx_once.values().end(), dx_twice.values().begin()));
  const auto twice = layer.parameters()[0].gradients;
  for (std::size_t i = 0; i < once.size(); ++i) EXPECT_EQ(twice[i], 2 * once[i]);
}

TEST(Conv2dLayer, RejectsWrongInput) {
  Conv2d layer(3, 4, 5);
  Tensor y({1}, 2.0f);
  EXPECT_THAT(
      [&] {
        layer.forward(Tensor({1, 2, 8, 8}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("in_channels = 3")));
  EXPECT_THAT(
      [&] {
        layer.forward(Tensor({1, 3, 4, 8}), y);
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("out_height")));
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_THAT([] { Conv2d(3, 4, 0); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("kernel_height must be >= 1")));
  EXPECT_THAT([] { Conv2d(3, 4, 3, /*stride=*/0); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("stride_height")));
}

}  // namespace
}  // namespace convgemm::nn
