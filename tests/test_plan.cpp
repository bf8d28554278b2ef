// The Conv2d plan's lifecycle: built once and run many times, movable, its accessors, and the
// free functions that wrap a temporary plan.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "plan.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;

static_assert(!std::is_copy_constructible_v<Conv2d> && !std::is_copy_assignable_v<Conv2d>);
static_assert(std::is_nothrow_move_constructible_v<Conv2d> &&
              std::is_nothrow_move_assignable_v<Conv2d>);
static_assert(!std::is_copy_constructible_v<ConvTranspose2d>);
static_assert(std::is_nothrow_move_constructible_v<ConvTranspose2d>);

Conv2dShape three_by_three() {
  Conv2dShape s{.batch = 3,
                .in_channels = 5,
                .in_height = 9,
                .in_width = 7,
                .out_channels = 6,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  return s;
}

struct Results {
  Tensor y, dx, dw, dbias;
};

// All three passes of `conv` on the same inputs.
Results run(Conv2d& conv, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dy) {
  const Conv2dShape& s = conv.shape();
  Results r{test::nan_tensor(s.output_elements()), test::nan_tensor(s.input_elements()),
            test::nan_tensor(s.weight_elements()), test::nan_tensor(s.bias_elements())};
  conv.forward(x.data(), w.data(), bias.data(), r.y.data());
  conv.backward_data(dy.data(), w.data(), r.dx.data());
  conv.backward_weights(x.data(), dy.data(), r.dw.data(), r.dbias.data());
  return r;
}

void expect_same_bits(const Results& a, const Results& b) {
  EXPECT_TRUE(test::bitwise_equal(a.y, b.y)) << "y";
  EXPECT_TRUE(test::bitwise_equal(a.dx, b.dx)) << "dx";
  EXPECT_TRUE(test::bitwise_equal(a.dw, b.dw)) << "dw";
  EXPECT_TRUE(test::bitwise_equal(a.dbias, b.dbias)) << "dbias";
}

class PlanTest : public ::testing::Test {
 protected:
  std::mt19937_64 rng_{test::test_seed()};
  Conv2dShape shape_ = three_by_three();
  Tensor x_ = test::random_tensor(rng_, shape_.input_elements());
  Tensor w_ = test::random_tensor(rng_, shape_.weight_elements());
  Tensor bias_ = test::random_tensor(rng_, shape_.bias_elements());
  Tensor dy_ = test::random_tensor(rng_, shape_.output_elements());
};

TEST_F(PlanTest, RunsAnyNumberOfTimesWithTheSameResult) {
  Conv2d conv(shape_, {.num_threads = 2});
  const Results first = run(conv, x_, w_, bias_, dy_);
  for (int call = 0; call < 5; ++call) expect_same_bits(run(conv, x_, w_, bias_, dy_), first);
}

TEST_F(PlanTest, MovedPlanKeepsWorking) {
  Conv2d original(shape_, {.num_threads = 3, .block_bytes = 1000});
  const Results expected = run(original, x_, w_, bias_, dy_);
  const std::size_t workspace = original.workspace_bytes();

  Conv2d moved(std::move(original));
  EXPECT_EQ(moved.shape(), shape_);
  EXPECT_EQ(moved.num_threads(), 3);
  EXPECT_EQ(moved.options().block_bytes, 1000u);
  EXPECT_EQ(moved.workspace_bytes(), workspace);
  expect_same_bits(run(moved, x_, w_, bias_, dy_), expected);

  // Move-assignment over a plan of another shape releases that one and takes this one.
  Conv2dShape other = shape_;
  other.kernel_height = other.kernel_width = 1;
  other.set_padding(0);
  Conv2d assigned(other);
  assigned = std::move(moved);
  EXPECT_EQ(assigned.shape(), shape_);
  expect_same_bits(run(assigned, x_, w_, bias_, dy_), expected);

  // Plans in a growing vector are moved on every reallocation.
  std::vector<Conv2d> plans;
  for (int i = 0; i < 5; ++i)
    plans.emplace_back(shape_, Conv2dOptions{.num_threads = 3, .block_bytes = 1000});
  for (Conv2d& plan : plans) expect_same_bits(run(plan, x_, w_, bias_, dy_), expected);
}

TEST_F(PlanTest, ReportsItsShapeOptionsAndThreads) {
  const Conv2dOptions options{
      .accumulate_gradients = true, .num_threads = 3, .workspace_limit = 0, .block_bytes = 4096};
  Conv2d conv(shape_, options);
  EXPECT_EQ(conv.shape(), shape_);
  EXPECT_TRUE(conv.options().accumulate_gradients);
  EXPECT_EQ(conv.options().num_threads, 3);
  EXPECT_EQ(conv.options().block_bytes, 4096u);
  EXPECT_EQ(conv.num_threads(), 3);
  EXPECT_GT(conv.workspace_bytes(), 0u);
  EXPECT_GE(Conv2d(shape_).num_threads(), 1);  // 0 asks for oneTBB's default
}

TEST_F(PlanTest, FreeFunctionsMatchThePlan) {
  Conv2d conv(shape_);
  const Results expected = run(conv, x_, w_, bias_, dy_);
  Results free{
      test::nan_tensor(shape_.output_elements()), test::nan_tensor(shape_.input_elements()),
      test::nan_tensor(shape_.weight_elements()), test::nan_tensor(shape_.bias_elements())};
  conv2d_forward(shape_, x_.data(), w_.data(), bias_.data(), free.y.data());
  conv2d_backward_data(shape_, dy_.data(), w_.data(), free.dx.data());
  conv2d_backward_weights(shape_, x_.data(), dy_.data(), free.dw.data(), free.dbias.data());
  expect_same_bits(free, expected);
}

TEST_F(PlanTest, OnePlanPerThreadRunsConcurrently) {
  // Plans are independent: two caller threads, each with its own plan, give the results one
  // plan gives alone (the BLAS-threads scope is shared and reference-counted: gemm.hpp).
  Conv2d reference_plan(shape_, {.num_threads = 2});
  const Results expected = run(reference_plan, x_, w_, bias_, dy_);
  std::vector<Results> results(2);
  {
    std::vector<std::thread> callers;
    for (Results& r : results) {
      callers.emplace_back([&] {
        Conv2d conv(shape_, {.num_threads = 2});
        for (int call = 0; call < 10; ++call) r = run(conv, x_, w_, bias_, dy_);
      });
    }
    for (std::thread& t : callers) t.join();
  }
  for (const Results& r : results) expect_same_bits(r, expected);
}

TEST(Plan, SmallImagesAtBatchOneSplitChannelsAndMatchNaive) {
  // A 5x5 image at batch 1 is one row block, one task: forward then splits its 128 output
  // channels and backward_data its 64 input channels into panels so that both cores work.
  Conv2dShape shape{.in_channels = 64,
                    .in_height = 5,
                    .in_width = 5,
                    .out_channels = 128,
                    .kernel_height = 3,
                    .kernel_width = 3};
  shape.set_padding(1);
  const detail::Blocking blocking = detail::choose_blocking(shape, {}, /*threads=*/2);
  EXPECT_EQ(blocking.blocks_per_image, 1);
  EXPECT_GT(blocking.output_panels, 1);
  EXPECT_GT(blocking.input_panels, 1);
  std::mt19937_64 rng(test::test_seed());
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    test::expect_forward_matches_naive(shape, {.num_threads = threads}, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(shape, {.num_threads = threads}, rng);
  }
  // The same split for a pointwise kernel, whose backward_data GEMM writes dx in place.
  const Conv2dShape pointwise{.in_channels = 96, .in_height = 3, .in_width = 4, .out_channels = 80};
  EXPECT_GT(detail::choose_blocking(pointwise, {}, /*threads=*/2).input_panels, 1);
  test::expect_forward_matches_naive(pointwise, {.num_threads = 2}, rng, /*with_bias=*/false);
  test::expect_backward_data_matches_naive(pointwise, {.num_threads = 2}, rng);
}

}  // namespace
}  // namespace convgemm
