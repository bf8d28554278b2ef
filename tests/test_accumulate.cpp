// accumulate_gradients: gradients add to what the buffers hold (micro-batches sum into one
// gradient), and without it whatever the buffers held is ignored.
#include <gtest/gtest.h>

#include <iterator>
#include <limits>
#include <random>

#include "convgemm/conv2d.hpp"
#include "convgemm/naive.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;

constexpr Conv2dOptions kAccumulate{.accumulate_gradients = true};

// prior + a pass's result; the tolerance bound grows by the prior term: one more addition of
// magnitude |prior| (tolerance.hpp).
Tensor plus(const Tensor& a, const Tensor& b) {
  Tensor sum(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
  return sum;
}

TEST(Accumulate, TwoHalfBatchesEqualOneWholeBatch) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 300; ++i) {
    Conv2dShape whole = test::random_valid_shape(rng);
    whole.batch = 2 * test::uniform(rng, 1, 3);
    Conv2dShape half = whole;
    half.batch = whole.batch / 2;
    Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(whole.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, whole.input_elements());
    const Tensor dy = test::random_tensor(rng, whole.output_elements());

    Tensor dw_whole = test::nan_tensor(whole.weight_elements());
    Tensor dbias_whole = test::nan_tensor(whole.bias_elements());
    Conv2d(whole, options)
        .backward_weights(x.data(), dy.data(), dw_whole.data(), dbias_whole.data());

    options.accumulate_gradients = true;
    Tensor dw = test::filled_tensor(whole.weight_elements(), 0.0f);
    Tensor dbias = test::filled_tensor(whole.bias_elements(), 0.0f);
    Conv2d conv(half, options);
    conv.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());
    conv.backward_weights(x.data() + half.input_elements(), dy.data() + half.output_elements(),
                          dw.data(), dbias.data());

    Tensor abs_dw(dw.size()), abs_dbias(dbias.size());
    naive::conv2d_backward_weights(whole, test::abs_of(x).data(), test::abs_of(dy).data(),
                                   abs_dw.data(), abs_dbias.data());
    const int64_t k = whole.batch * whole.gemm_p();
    ASSERT_TRUE(test::matches_reference(dw, dw_whole, abs_dw, k)) << "dw";
    ASSERT_TRUE(test::matches_reference(dbias, dbias_whole, abs_dbias, k)) << "dbias";
  }
}

TEST(Accumulate, GradientsAddToWhatTheBuffersHold) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int i = 0; i < 300; ++i) {
    const Conv2dShape s = test::random_valid_shape(rng);
    Conv2dOptions options = test::random_options(rng);
    options.accumulate_gradients = true;
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    const Tensor prior_dx = test::random_tensor(rng, s.input_elements());
    const Tensor prior_dw = test::random_tensor(rng, s.weight_elements());
    const Tensor prior_dbias = test::random_tensor(rng, s.bias_elements());
    Tensor dx = prior_dx, dw = prior_dw, dbias = prior_dbias;
    Conv2d conv(s, options);
    conv.backward_data(dy.data(), w.data(), dx.data());
    conv.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());

    Tensor naive_dx(dx.size()), abs_dx(dx.size());
    naive::conv2d_backward_data(s, dy.data(), w.data(), naive_dx.data());
    naive::conv2d_backward_data(s, test::abs_of(dy).data(), test::abs_of(w).data(), abs_dx.data());
    ASSERT_TRUE(test::matches_reference(dx, plus(prior_dx, naive_dx),
                                        plus(test::abs_of(prior_dx), abs_dx),
                                        s.gemm_m() * s.kernel_height * s.kernel_width + 1))
        << "dx";

    Tensor naive_dw(dw.size()), abs_dw(dw.size()), naive_dbias(dbias.size()),
        abs_dbias(dbias.size());
    naive::conv2d_backward_weights(s, x.data(), dy.data(), naive_dw.data(), naive_dbias.data());
    naive::conv2d_backward_weights(s, test::abs_of(x).data(), test::abs_of(dy).data(),
                                   abs_dw.data(), abs_dbias.data());
    const int64_t k = s.batch * s.gemm_p() + 1;
    ASSERT_TRUE(test::matches_reference(dw, plus(prior_dw, naive_dw),
                                        plus(test::abs_of(prior_dw), abs_dw), k))
        << "dw";
    ASSERT_TRUE(test::matches_reference(dbias, plus(prior_dbias, naive_dbias),
                                        plus(test::abs_of(prior_dbias), abs_dbias), k))
        << "dbias";
  }
}

TEST(Accumulate, OverwriteModeIgnoresWhatTheBuffersHeld) {
  // Huge, infinite and NaN prior contents must leave no trace in overwrite mode: the result has
  // the same bits as one written into clean zeros by the same plan.
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 40; ++i) {
    const Conv2dShape s = test::random_valid_shape(
        rng, test::kAllShapeKinds[std::size_t(i) % std::size(test::kAllShapeKinds)]);
    const Conv2dOptions options = test::random_options(rng);
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    const float garbage = i % 3 == 0   ? std::numeric_limits<float>::infinity()
                          : i % 3 == 1 ? -1e30f
                                       : std::numeric_limits<float>::quiet_NaN();
    Conv2d conv(s, options);
    Tensor y = test::filled_tensor(s.output_elements(), garbage);
    Tensor dx = test::filled_tensor(s.input_elements(), garbage);
    Tensor dw = test::filled_tensor(s.weight_elements(), garbage);
    Tensor dbias = test::filled_tensor(s.bias_elements(), garbage);
    conv.forward(x.data(), w.data(), nullptr, y.data());
    conv.backward_data(dy.data(), w.data(), dx.data());
    conv.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());
    Tensor clean_y = test::filled_tensor(s.output_elements(), 0.0f);
    Tensor clean_dx = test::filled_tensor(s.input_elements(), 0.0f);
    Tensor clean_dw = test::filled_tensor(s.weight_elements(), 0.0f);
    Tensor clean_dbias = test::filled_tensor(s.bias_elements(), 0.0f);
    conv.forward(x.data(), w.data(), nullptr, clean_y.data());
    conv.backward_data(dy.data(), w.data(), clean_dx.data());
    conv.backward_weights(x.data(), dy.data(), clean_dw.data(), clean_dbias.data());
    EXPECT_TRUE(test::bitwise_equal(y, clean_y)) << "y";
    EXPECT_TRUE(test::bitwise_equal(dx, clean_dx)) << "dx";
    EXPECT_TRUE(test::bitwise_equal(dw, clean_dw)) << "dw";
    EXPECT_TRUE(test::bitwise_equal(dbias, clean_dbias)) << "dbias";
  }
}

TEST(Accumulate, RepeatedCallsKeepAdding) {
  // Three accumulating calls of the same gradient: 3 * g, exactly when g is exact (integers).
  const Conv2dShape s{.in_channels = 2,
                      .in_height = 4,
                      .in_width = 4,
                      .out_channels = 2,
                      .kernel_height = 2,
                      .kernel_width = 2};
  const Tensor ones_x = test::filled_tensor(s.input_elements(), 1.0f);
  const Tensor ones_w = test::filled_tensor(s.weight_elements(), 1.0f);
  const Tensor ones_dy = test::filled_tensor(s.output_elements(), 1.0f);
  Tensor dw = test::filled_tensor(s.weight_elements(), 0.0f);
  Tensor dbias = test::filled_tensor(2, 0.0f), dx = test::filled_tensor(s.input_elements(), 0.0f);
  Conv2d conv(s, kAccumulate);
  for (int call = 0; call < 3; ++call) {
    conv.backward_weights(ones_x.data(), ones_dy.data(), dw.data(), dbias.data());
    conv.backward_data(ones_dy.data(), ones_w.data(), dx.data());
  }
  EXPECT_EQ(dw, test::filled_tensor(s.weight_elements(), 3 * 9.0f));  // 3x3 outputs each
  EXPECT_EQ(dbias, test::filled_tensor(2, 3 * 9.0f));
  EXPECT_EQ(dx[0], 3 * 2.0f);  // corner: one window, two output channels
  EXPECT_EQ(dx[5], 3 * 8.0f);  // inner pixel: four windows, two output channels
}

}  // namespace
}  // namespace convgemm
