// Workspace: workspace_limit caps workspace_bytes() (worker slots are dropped, then blocks
// shrink) without changing what the passes compute, bit for bit as long as one block fits; a
// limit that cannot hold one row block throws; pointwise convolutions need no workspace at all.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

Conv2dShape medium() {
  Conv2dShape s{.batch = 2,
                .in_channels = 8,
                .in_height = 12,
                .in_width = 11,
                .out_channels = 12,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  return s;
}

Conv2dShape strided_grouped() {
  return {.batch = 3,
          .in_channels = 6,
          .in_height = 13,
          .in_width = 9,
          .out_channels = 9,
          .kernel_height = 4,
          .kernel_width = 2,
          .stride_height = 2,
          .stride_width = 1,
          .pad_top = 0,
          .pad_bottom = 3,
          .pad_left = 1,
          .pad_right = 0,
          .dilation_height = 1,
          .dilation_width = 2,
          .groups = 3};
}

// Limits from 4 MiB down to 16 bytes, shrinking by a third each step.
std::vector<std::size_t> limits() {
  std::vector<std::size_t> sweep;
  for (double limit = 4 << 20; limit >= 16; limit *= 2.0 / 3.0) {
    sweep.push_back(static_cast<std::size_t>(limit));
  }
  return sweep;
}

TEST(Workspace, StaysUnderTheLimitAndStillMatchesNaive) {
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& s : {medium(), strided_grouped()}) {
    SCOPED_TRACE(s.to_string());
    int accepted = 0, rejected = 0;
    for (std::size_t limit : limits()) {
      SCOPED_TRACE("workspace_limit " + std::to_string(limit));
      const Conv2dOptions options{.num_threads = 3, .workspace_limit = limit};
      try {
        Conv2d conv(s, options);
        ASSERT_EQ(rejected, 0) << "a smaller limit was accepted after a larger one was refused";
        ++accepted;
        EXPECT_LE(conv.workspace_bytes(), limit);
        EXPECT_GE(conv.num_threads(), 1);
        EXPECT_LE(conv.num_threads(), 3);
      } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr("workspace_limit")) << e.what();
        ++rejected;
        continue;
      }
      test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
      test::expect_backward_data_matches_naive(s, options, rng);
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    }
    EXPECT_GT(accepted, 5) << "the sweep should reach limits that shrink blocks and drop slots";
    EXPECT_GT(rejected, 0) << "the sweep should reach a limit below one row block";
  }
}

TEST(Workspace, LimitBelowOneRowBlockThrowsNamingIt) {
  for (const Conv2dShape& s : {medium(), strided_grouped()}) {
    SCOPED_TRACE(s.to_string());
    EXPECT_THAT([&] { Conv2d conv(s, {.workspace_limit = 4}); },
                ThrowsMessage<std::invalid_argument>(HasSubstr("workspace_limit")));
  }
  ConvTranspose2dShape t{.in_channels = 4,
                         .in_height = 6,
                         .in_width = 6,
                         .out_channels = 4,
                         .kernel_height = 3,
                         .kernel_width = 3,
                         .stride_height = 2,
                         .stride_width = 2};
  EXPECT_THAT([&] { ConvTranspose2d conv(t, {.workspace_limit = 4}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("workspace_limit")));
}

TEST(Workspace, LimitDropsWorkerSlotsBeforeShrinkingBelowOneRow) {
  // The smallest accepted limit holds exactly one slot; the plan then runs one worker.
  const Conv2dShape s = medium();
  std::size_t smallest = 0;
  for (std::size_t limit : limits()) {
    try {
      Conv2d conv(s, {.num_threads = 4, .workspace_limit = limit});
      smallest = limit;
    } catch (const std::invalid_argument&) {
      break;
    }
  }
  ASSERT_GT(smallest, 0u);
  Conv2d conv(s, {.num_threads = 4, .workspace_limit = smallest});
  EXPECT_LE(conv.workspace_bytes(), smallest);
  EXPECT_EQ(conv.num_threads(), 1);
  // Unlimited, the same plan has one slot per thread.
  EXPECT_EQ(Conv2d(s, {.num_threads = 4}).num_threads(), 4);
}

TEST(Workspace, TheRefusalNamesTheSmallestLimitItAccepts) {
  // The error states the bytes one row block on one worker and the shared partial sums take:
  // that limit is accepted, one byte less is not. On the explicit path and on the nhwc
  // depthwise kernels (whose dW chunk sums are all partials).
  Conv2dShape depthwise{.batch = 2,
                        .in_channels = 144,
                        .in_height = 9,
                        .in_width = 9,
                        .out_channels = 144,
                        .kernel_height = 3,
                        .kernel_width = 3,
                        .groups = 144,
                        .layout = Layout::nhwc};
  depthwise.set_padding(1);
  const struct {
    Conv2dShape shape;
    GemmBackend backend;
  } cases[] = {{medium(), GemmBackend::openblas}, {depthwise, GemmBackend::automatic}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.shape.to_string());
    const auto options = [&](std::size_t limit) {
      return Conv2dOptions{.num_threads = 2, .workspace_limit = limit, .gemm_backend = c.backend};
    };
    std::string message;
    try {
      Conv2d conv(c.shape, options(4));
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    const std::string prefix = "must be at least ";
    const std::size_t at = message.find(prefix);
    ASSERT_NE(at, std::string::npos) << message;
    const std::size_t smallest = std::stoull(message.substr(at + prefix.size()));
    EXPECT_NO_THROW(Conv2d(c.shape, options(smallest)));
    EXPECT_THROW(Conv2d(c.shape, options(smallest - 1)), std::invalid_argument);
  }
}

TEST(Workspace, PointwiseNeedsNoneOnTheExplicitPath) {
  // 1x1, stride 1, no padding: X_col is the input itself, so the explicit path needs no column
  // buffer at all, and even a 1-byte workspace_limit is met. Depthwise 1x1 (groups ==
  // in_channels) included. (The packed driver always packs panels: see test_packed.cpp.)
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 30; ++i) {
    Conv2dShape s = test::random_valid_shape(rng, test::ShapeKind::pointwise);
    if (i % 5 == 0) s.groups = s.in_channels;  // depthwise 1x1, out_channels a multiple of C
    if (i % 5 == 0) s.out_channels = s.in_channels * test::uniform(rng, 1, 2);
    Conv2dOptions options = test::random_options(rng);
    if (options.gemm_backend == GemmBackend::packed ||
        options.gemm_backend == GemmBackend::automatic) {
      options.gemm_backend = GemmBackend::openblas;
    }
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    EXPECT_EQ(Conv2d(s, options).workspace_bytes(), 0u);
    Conv2dOptions limited = options;
    limited.workspace_limit = 1;
    EXPECT_NO_THROW(Conv2d(s, limited));
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(s, options, rng);
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
  }
  // Not pointwise: a stride, padding or a larger kernel needs a column buffer.
  Conv2dShape strided = medium();
  strided.kernel_height = strided.kernel_width = 1;
  strided.set_padding(0);
  const Conv2dOptions explicit_path{.gemm_backend = GemmBackend::openblas};
  EXPECT_EQ(Conv2d(strided, explicit_path).workspace_bytes(), 0u);
  strided.stride_width = 2;
  EXPECT_GT(Conv2d(strided, explicit_path).workspace_bytes(), 0u);
}

// Shapes whose blocks are several per image (so backward_data runs its two waves). 3x3 over 32
// channels lowers K = 288 rows of 48 columns per output row: a 64 KiB budget holds one row.
Conv2dShape several_blocks_per_image() {
  Conv2dShape s{.batch = 2,
                .in_channels = 32,
                .in_height = 48,
                .in_width = 48,
                .out_channels = 16,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  return s;
}

// 3x3 over 128 channels at 48x16: K = 1152 rows of 16 columns per output row, 72 KiB. The
// default blocks are at least 256 columns (16 rows, 1.1 MiB) and at most an L2 cache, so
// between one block and an L2 there are limits that would cut blocks of fewer rows.
Conv2dShape wide_k_narrow_rows() {
  Conv2dShape s{.batch = 1,
                .in_channels = 128,
                .in_height = 48,
                .in_width = 16,
                .out_channels = 32,
                .kernel_height = 3,
                .kernel_width = 3};
  s.set_padding(1);
  return s;
}

TEST(Workspace, OnTheExplicitPathEveryLimitThatHoldsOneBlockGivesTheUnlimitedBits) {
  // On the explicit path, the limit drops worker slots and keeps the blocks (and backward_weights'
  // shared partial sums, if any), so the sums are the same sums in the same order: forward,
  // backward_data and backward_weights bitwise equal to the unlimited plan, from a limit with room
  // for every thread down to one block on one worker.
  constexpr int kThreads = 3;
  std::mt19937_64 rng(test::test_seed());
  const struct {
    Conv2dShape shape;
    std::size_t block_bytes;  // 0: this machine's default
  } cases[] = {{medium(), 0},
               {strided_grouped(), 0},
               {several_blocks_per_image(), 64 << 10},
               {wide_k_narrow_rows(), 0}};
  for (const auto& [s, block_bytes] : cases) {
    SCOPED_TRACE(s.to_string());
    const Tensor x = test::random_tensor(rng, s.input_elements());
    const Tensor w = test::random_tensor(rng, s.weight_elements());
    const Tensor bias = test::random_tensor(rng, s.bias_elements());
    const Tensor dy = test::random_tensor(rng, s.output_elements());
    auto passes = [&](Conv2d& conv) {
      std::vector<Tensor> out = {
          test::nan_tensor(s.output_elements()), test::nan_tensor(s.input_elements()),
          test::nan_tensor(s.weight_elements()), test::nan_tensor(s.bias_elements())};
      conv.forward(x.data(), w.data(), bias.data(), out[0].data());
      conv.backward_data(dy.data(), w.data(), out[1].data());
      conv.backward_weights(x.data(), dy.data(), out[2].data(), out[3].data());
      return out;
    };
    constexpr GemmBackend kExplicit = GemmBackend::openblas;
    Conv2d unlimited_conv(
        s, {.num_threads = kThreads, .block_bytes = block_bytes, .gemm_backend = kExplicit});
    ASSERT_EQ(unlimited_conv.num_threads(), kThreads);
    // workspace = shared partial sums + one block per worker slot.
    const std::size_t block =
        unlimited_conv.workspace_bytes() -
        Conv2d(s,
               {.num_threads = kThreads - 1, .block_bytes = block_bytes, .gemm_backend = kExplicit})
            .workspace_bytes();
    ASSERT_GT(block, 0u);
    const std::size_t shared = unlimited_conv.workspace_bytes() - kThreads * block;
    const std::size_t row_bytes = sizeof(float) * s.gemm_k() * s.out_width();
    if (block_bytes != 0) {  // the row blocks really are several per image
      ASSERT_LT(block / row_bytes, static_cast<std::size_t>(s.out_height()) / 2);
    }
    const std::vector<Tensor> unlimited = passes(unlimited_conv);
    const char* names[] = {"y", "dx", "dw", "dbias"};
    std::set<int> slot_counts;
    for (const double blocks : {4.0, 3.0, 2.5, 2.0, 1.5, 1.0}) {
      const auto limit = shared + static_cast<std::size_t>(blocks * double(block));
      SCOPED_TRACE("workspace_limit " + std::to_string(limit));
      Conv2d conv(s, {.num_threads = kThreads,
                      .workspace_limit = limit,
                      .block_bytes = block_bytes,
                      .gemm_backend = kExplicit});
      EXPECT_LE(conv.workspace_bytes(), limit);
      EXPECT_EQ(conv.workspace_bytes(),
                shared + block * static_cast<std::size_t>(conv.num_threads()));
      slot_counts.insert(conv.num_threads());
      const std::vector<Tensor> limited = passes(conv);
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(test::bitwise_equal(limited[i], unlimited[i])) << names[i];
      }
    }
    EXPECT_EQ(slot_counts, (std::set<int>{1, 2, 3})) << "the sweep should drop slots down to one";
  }
}

}  // namespace
}  // namespace convgemm
