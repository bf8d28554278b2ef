// The packed driver (GemmBackend::packed): against naive at the kernel's edges, and its
// reproducibility contract, bit for bit: an element's operations depend on the shape only, so
// the batch it is in, the thread count, block_bytes and workspace_limit never change a bit, and
// neither does its place in a micro-kernel tile (tested by growing a shape around it). The
// kernel's tile and reduction sizes are read from the plan's kernel (white box), because they
// differ between CPUs (BLIS's skx is 32x12 with kc 384, haswell 6x16 with kc 256).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "packed/micro_kernel.hpp"
#include "packed/packed_conv.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;

constexpr GemmBackend kPacked = GemmBackend::packed;

class PackedKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gemm_backend_available(kPacked)) GTEST_SKIP() << "built without BLIS";
    kernel_ = detail::blis_micro_kernel();
  }
  const detail::MicroKernel& kernel() const { return *kernel_; }

 private:
  const detail::MicroKernel* kernel_ = nullptr;
};

// The contract holds in both layouts: each test runs its shapes in the parameter's.
class Packed : public PackedKernel, public ::testing::WithParamInterface<Layout> {
 protected:
  Conv2dShape in_layout(Conv2dShape s) const {
    s.layout = GetParam();
    return s;
  }
  std::vector<Conv2dShape> in_layout(std::vector<Conv2dShape> shapes) const {
    for (Conv2dShape& s : shapes) s.layout = GetParam();
    return shapes;
  }
};

// The four results of one plan on the same inputs, every overwritten output starting as NaN.
struct Results {
  Tensor y, dx, dw, dbias;
};
struct Inputs {
  Tensor x, w, bias, dy;
  Inputs(const Conv2dShape& s, std::mt19937_64& rng)
      : x(test::random_tensor(rng, s.input_elements())),
        w(test::random_tensor(rng, s.weight_elements())),
        bias(test::random_tensor(rng, s.bias_elements())),
        dy(test::random_tensor(rng, s.output_elements())) {}
};
Results run_passes(const Conv2dShape& s, const Conv2dOptions& options, const Inputs& in) {
  Conv2d conv(s, options);
  Results r{test::nan_tensor(s.output_elements()), test::nan_tensor(s.input_elements()),
            test::nan_tensor(s.weight_elements()), test::nan_tensor(s.bias_elements())};
  conv.forward(in.x.data(), in.w.data(), in.bias.data(), r.y.data());
  conv.backward_data(in.dy.data(), in.w.data(), r.dx.data());
  conv.backward_weights(in.x.data(), in.dy.data(), r.dw.data(), r.dbias.data());
  return r;
}
void expect_bitwise_equal(const Results& a, const Results& b) {
  EXPECT_TRUE(test::bitwise_equal(a.y, b.y)) << "y";
  EXPECT_TRUE(test::bitwise_equal(a.dx, b.dx)) << "dx";
  EXPECT_TRUE(test::bitwise_equal(a.dw, b.dw)) << "dw";
  EXPECT_TRUE(test::bitwise_equal(a.dbias, b.dbias)) << "dbias";
}

// Filters larger than the plan shares between tasks (138K floats: each task packs its own
// output channels' rows): small images side by side, stride 1 (backward_data as a forward
// convolution), and stride 2 (backward_data through col2im, W^T packed per task).
std::vector<Conv2dShape> large_filter_shapes() {
  Conv2dShape small_images{.batch = 3,
                           .in_channels = 96,
                           .in_height = 9,
                           .in_width = 9,
                           .out_channels = 160,
                           .kernel_height = 3,
                           .kernel_width = 3};
  small_images.set_padding(1);
  Conv2dShape strided = small_images;
  strided.in_height = 20;
  strided.in_width = 19;
  strided.stride_height = 2;
  strided.stride_width = 2;
  return {small_images, strided};
}

// Shapes large enough that every pass is cut into several tasks and its reductions into several
// kc blocks on every kernel (K = 432 > 384, N*P >= 1200, O = 400 for backward_data), plus
// grouping, striding, dilation and a chunked weight-gradient reduction, and large filters.
std::vector<Conv2dShape> split_shapes() {
  Conv2dShape resnet_like{.batch = 3,
                          .in_channels = 48,
                          .in_height = 20,
                          .in_width = 20,
                          .out_channels = 40,
                          .kernel_height = 3,
                          .kernel_width = 3};
  resnet_like.set_padding(1);
  Conv2dShape grouped_strided{.batch = 2,
                              .in_channels = 12,
                              .in_height = 33,
                              .in_width = 37,
                              .out_channels = 18,
                              .kernel_height = 5,
                              .kernel_width = 3,
                              .stride_height = 2,
                              .stride_width = 1,
                              .pad_top = 2,
                              .pad_bottom = 1,
                              .pad_left = 1,
                              .pad_right = 1,
                              .dilation_height = 1,
                              .dilation_width = 2,
                              .groups = 3};
  Conv2dShape wide_outputs{.batch = 2,
                           .in_channels = 6,
                           .in_height = 9,
                           .in_width = 11,
                           .out_channels = 400,
                           .kernel_height = 2,
                           .kernel_width = 2};
  wide_outputs.pad_left = 1;
  // A small dW over a long reduction (3 * 2304 positions): backward_weights cuts it into chunks.
  Conv2dShape long_reduction{.batch = 3,
                             .in_channels = 4,
                             .in_height = 48,
                             .in_width = 48,
                             .out_channels = 6,
                             .kernel_height = 3,
                             .kernel_width = 3};
  long_reduction.set_padding(1);
  const std::vector<Conv2dShape> large = large_filter_shapes();
  return {resnet_like, grouped_strided, wide_outputs, large[0], large[1], long_reduction};
}

// BLIS's own choice of kernel goes by CPU model and falls back to its reference code on models
// newer than its tables; the engine must still run an optimized x86 kernel wherever the CPU has
// the instructions of one (on an emulated baseline CPU, the reference kernel is right).
TEST_F(PackedKernel, IsOptimizedWhereTheCpuRunsAvx2AndFma) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    GTEST_SKIP() << "this CPU has no AVX2 and FMA: BLIS's reference kernel is the one it runs";
  }
  EXPECT_TRUE(kernel().optimized) << kernel().name;
  EXPECT_NE(kernel().name, "generic");
}

// Shapes that take the packed path in `layout` (depthwise ones keep their direct kernels).
Conv2dShape random_packed_shape(std::mt19937_64& rng, Layout layout) {
  for (;;) {
    Conv2dShape s = test::random_valid_shape(rng);
    s.layout = layout;
    if (s.in_channels != s.groups) return s;
  }
}

TEST_P(Packed, PlansSayTheyRunOnTheKernel) {
  Conv2dShape s{.batch = 2,
                .in_channels = 8,
                .in_height = 9,
                .in_width = 9,
                .out_channels = 4,
                .kernel_height = 3,
                .kernel_width = 3,
                .layout = GetParam()};
  const std::string packed = "packed(" + kernel().name;
  const std::string described = Conv2d(s, {.gemm_backend = kPacked}).describe();
  EXPECT_NE(described.find(packed), std::string::npos) << described;
  EXPECT_NE(described.find(to_string(GetParam())), std::string::npos) << described;
  if (GetParam() == Layout::nchw) {
    EXPECT_NE(Conv2d(s, {.gemm_backend = GemmBackend::openblas}).describe().find("explicit"),
              std::string::npos);
  }
  s.groups = s.in_channels;
  s.out_channels = 8;
  // Depthwise shapes keep their direct kernels, in either layout.
  EXPECT_EQ(
      Conv2d(s, {.gemm_backend = kPacked}).describe(),
      GetParam() == Layout::nchw ? "depthwise direct kernels" : "depthwise direct kernels, nhwc");
}

// nchw forward on a kernel that prefers columns puts the output channels on the tile rows where
// the positions would fill them badly (7x7 = 49 positions: two 32-row panels, 77% used), and
// positions where they fill them (56x56); the results are the same bits either way (the
// invariance tests below run both orientations through one image and its batch).
// (nhwc's tiles have the output channels on their rows already: Y is [P x O].)
TEST_P(Packed, SmallImagesPutOutputChannelsOnTheTileRows) {
  if (kernel().prefers_rows) {
    GTEST_SKIP() << "kernel " << kernel().name << " has the output channels on its rows already";
  }
  Conv2dShape s{.batch = 1,
                .in_channels = 64,
                .in_height = 7,
                .in_width = 7,
                .out_channels = 512,
                .kernel_height = 3,
                .kernel_width = 3,
                .pad_top = 1,
                .pad_bottom = 1,
                .pad_left = 1,
                .pad_right = 1,
                .layout = GetParam()};
  const std::string on_rows = "forward tiles' rows = output channels";
  const bool nchw = GetParam() == Layout::nchw;
  EXPECT_EQ(Conv2d(s, {.gemm_backend = kPacked}).describe().find(on_rows) != std::string::npos,
            nchw);
  s.in_height = s.in_width = 56;
  s.out_channels = 64;
  EXPECT_EQ(Conv2d(s, {.gemm_backend = kPacked}).describe().find(on_rows), std::string::npos);
}

TEST_P(Packed, MatchesNaiveOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  for (int i = 0; i < 150; ++i) {
    const Conv2dShape s = random_packed_shape(rng, GetParam());
    Conv2dOptions options = test::random_options(rng);  // accumulation: test_accumulate.cpp
    options.gemm_backend = kPacked;
    SCOPED_TRACE(s.to_string());
    SCOPED_TRACE(test::describe(options));
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/i % 2 == 0);
    test::expect_backward_data_matches_naive(s, options, rng);
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/i % 2 == 1);
  }
}

TEST_P(Packed, MatchesNaiveAtEveryTileAndReductionEdge) {
  // Output channels (tile rows or columns), positions (the other side of the tile) and the
  // reduction around the kernel's sizes: 1, w - 1, w, w + 1 for both tile sides, kc - 1, kc,
  // kc + 1 for the reduction (forward's C*KH*KW, backward_data's O, backward_weights' N*P).
  std::mt19937_64 rng(test::test_seed());
  const int64_t mr = kernel().mr, nr = kernel().nr, kc = kernel().kc;
  std::set<int64_t> sides = {1, 2, mr - 1, mr, mr + 1, nr - 1, nr, nr + 1, 2 * mr + 1};
  sides.erase(0);
  const Conv2dOptions options{.num_threads = 2, .gemm_backend = kPacked};
  for (const int64_t side : sides) {
    // side output channels; side positions (1 x side output); kernel 3x1 over 1 + 2 rows.
    Conv2dShape s{.batch = 2,
                  .in_channels = 5,
                  .in_height = 3,
                  .in_width = side,
                  .out_channels = side,
                  .kernel_height = 3,
                  .kernel_width = 1,
                  .layout = GetParam()};
    SCOPED_TRACE(s.to_string());
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(s, options, rng);
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
  }
  for (const int64_t depth : {kc - 1, kc, kc + 1, 2 * kc + 1}) {
    // Each reduction in turn of length `depth`: forward's C*KH*KW (a 1x1 kernel with padding,
    // so not pointwise), backward_data's O, backward_weights' N*P (stride 2 over 2*depth-1 rows).
    const Conv2dShape forward_depth{.batch = 2,
                                    .in_channels = depth,
                                    .in_height = 3,
                                    .in_width = 2,
                                    .out_channels = 7,
                                    .kernel_height = 1,
                                    .kernel_width = 1,
                                    .pad_top = 1};
    const Conv2dShape backward_data_depth{.batch = 2,
                                          .in_channels = 3,
                                          .in_height = 4,
                                          .in_width = 3,
                                          .out_channels = depth,
                                          .kernel_height = 2,
                                          .kernel_width = 2};
    const Conv2dShape backward_weights_depth{.batch = 1,
                                             .in_channels = 2,
                                             .in_height = 2 * depth - 1,
                                             .in_width = 1,
                                             .out_channels = 3,
                                             .kernel_height = 1,
                                             .kernel_width = 1,
                                             .stride_height = 2};
    for (const Conv2dShape& s :
         in_layout({forward_depth, backward_data_depth, backward_weights_depth})) {
      SCOPED_TRACE(s.to_string());
      test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
      test::expect_backward_data_matches_naive(s, options, rng);
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    }
  }
  // Strides 1 to 3, padding larger than the kernel, dilation: the gathers' zero runs.
  for (int64_t stride = 1; stride <= 3; ++stride) {
    Conv2dShape s{.batch = 2,
                  .in_channels = 3,
                  .in_height = 11,
                  .in_width = 13,
                  .out_channels = mr + 1,
                  .kernel_height = 3,
                  .kernel_width = 2,
                  .stride_height = stride,
                  .stride_width = stride,
                  .pad_top = 4,
                  .pad_bottom = 3,
                  .pad_left = 5,
                  .pad_right = 2,
                  .dilation_height = 2,
                  .dilation_width = 1,
                  .layout = GetParam()};
    SCOPED_TRACE(s.to_string());
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(s, options, rng);
    test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
  }
}

TEST_P(Packed, BackwardDataAsAForwardConvolutionMatchesNaiveAtItsEdges) {
  // A stride-1 backward_data with 32 or more input channels per group runs as the forward
  // convolution of dy with the flipped filter (the plan says so), whose padding is the dilated
  // kernel's extent minus the original's: every padding from 0 to that extent on each side
  // (extent + 1 takes col2im again), its outputs (the input channels) around the tile widths,
  // its reduction O * KH * KW around kc, small images side by side, groups, accumulation.
  std::mt19937_64 rng(test::test_seed());
  const int64_t mr = kernel().mr, nr = kernel().nr, kc = kernel().kc;
  const auto runs_as_forward = [](const Conv2dShape& s) {
    return Conv2d(s, {.gemm_backend = kPacked}).describe().find("as a forward convolution") !=
           std::string::npos;
  };
  std::vector<Conv2dShape> shapes;
  for (const int64_t pad : {0, 1, 2, 3, 4, 5}) {  // kernel 3x2, dilation 2x3: extents 4 and 3
    Conv2dShape s{.batch = 2,
                  .in_channels = 33,
                  .in_height = 9,
                  .in_width = 8,
                  .out_channels = 5,
                  .kernel_height = 3,
                  .kernel_width = 2,
                  .pad_top = pad,
                  .pad_bottom = 4 - pad % 5,
                  .pad_left = std::min<int64_t>(pad, 3),
                  .pad_right = pad % 4,
                  .dilation_height = 2,
                  .dilation_width = 3,
                  .layout = GetParam()};
    EXPECT_EQ(runs_as_forward(s), pad <= 4) << s.to_string();  // pad_top 5: its pad' < 0
    shapes.push_back(s);
  }
  std::set<int64_t> channels = {32, 2 * nr + 1, 3 * nr - 1, mr + 1, 2 * mr + 1};
  for (const int64_t c : channels) {
    if (c < 32) continue;
    shapes.push_back(Conv2dShape{.batch = 3,
                                 .in_channels = c,
                                 .in_height = 4,
                                 .in_width = 5,  // 20 positions: images side by side
                                 .out_channels = 3,
                                 .kernel_height = 3,
                                 .kernel_width = 3,
                                 .pad_top = 1,
                                 .pad_bottom = 2,
                                 .pad_left = 0,
                                 .pad_right = 1,
                                 .layout = GetParam()});
  }
  for (const int64_t depth : {kc - 2, kc, kc + 2}) {  // O * 2 taps
    shapes.push_back(Conv2dShape{.batch = 1,
                                 .in_channels = 40,
                                 .in_height = 3,
                                 .in_width = 6,
                                 .out_channels = depth / 2,
                                 .kernel_height = 1,
                                 .kernel_width = 2,
                                 .pad_right = 1,
                                 .layout = GetParam()});
  }
  shapes.push_back(Conv2dShape{.batch = 2,
                               .in_channels = 64,
                               .in_height = 7,
                               .in_width = 6,
                               .out_channels = 6,
                               .kernel_height = 2,
                               .kernel_width = 3,
                               .pad_top = 1,
                               .pad_left = 2,
                               .pad_right = 1,
                               .groups = 2,
                               .layout = GetParam()});
  for (const Conv2dShape& s : shapes) {
    SCOPED_TRACE(s.to_string());
    if (s.pad_top != 5) {  // (all but the one above)
      EXPECT_TRUE(runs_as_forward(s));
    }
    for (const bool accumulate : {false, true}) {
      const Conv2dOptions options{
          .accumulate_gradients = accumulate, .num_threads = 3, .gemm_backend = kPacked};
      SCOPED_TRACE(test::describe(options));
      test::expect_backward_data_matches_naive(s, options, rng);
    }
  }
}

TEST_P(Packed, BackwardWeightsOfASmallFilterMatchesNaiveInEveryChunkingOfItsReduction) {
  // A small dW sums its reduction in chunks fixed by the shape (white box: the plan's blocking
  // says how many): one chunk, two (at the boundary), seven, the most (eight, and clamped to
  // eight); accumulating too. Reductions stay short enough for the tolerance to see a chunk
  // left out (at 40000 steps it could not).
  std::mt19937_64 rng(test::test_seed());
  std::set<int64_t> chunk_counts;
  for (const int64_t positions : {700, 1535, 1536, 1537, 7 * 768 + 1, 8 * 768 + 1, 12000}) {
    const Conv2dShape s{.batch = 1,
                        .in_channels = 2,
                        .in_height = positions,
                        .in_width = 1,
                        .out_channels = 3,
                        .kernel_height = 2,
                        .kernel_width = 1,
                        .pad_bottom = 1,
                        .layout = GetParam()};
    SCOPED_TRACE(s.to_string());
    int slots = 2;
    const auto blocking = detail::choose_packed_blocking(s, kernel(), slots, 0, 0, false);
    chunk_counts.insert(blocking.weight_chunks);
    for (const bool accumulate : {false, true}) {
      const Conv2dOptions options{
          .accumulate_gradients = accumulate, .num_threads = 2, .gemm_backend = kPacked};
      SCOPED_TRACE(test::describe(options));
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    }
  }
  EXPECT_GE(chunk_counts.size(), 3u) << "one chunk, two and more";
}

TEST_P(Packed, LargeFiltersPackedByTheTasksMatchNaive) {
  // Tasks that each pack their own filter rows, split to pack least: 1, 2 and 3 workers make
  // different splits (output ranges, position ranges, both).
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& s : in_layout(large_filter_shapes())) {
    SCOPED_TRACE(s.to_string());
    for (const int threads : {1, 2, 3}) {
      const Conv2dOptions options{.num_threads = threads, .gemm_backend = kPacked};
      SCOPED_TRACE(test::describe(options));
      test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
      test::expect_backward_data_matches_naive(s, options, rng);
      test::expect_backward_weights_matches_naive(s, options, rng, /*with_bias=*/true);
    }
  }
}

TEST_P(Packed, LargeFiltersAreNotCopiedIntoTheWorkspaceUnlessKept) {
  // A worker's workspace is its packing buffers: a filter larger than what the tasks share is
  // packed by each task block by block in cache, not copied whole into the workspace (here
  // 2.4 MB, more than a worker's buffers), except for constant weights, whose packed copy stays
  // there for the next call.
  Conv2dShape s{.batch = 2,
                .in_channels = 256,
                .in_height = 14,
                .in_width = 14,
                .out_channels = 256,
                .kernel_height = 3,
                .kernel_width = 3,
                .layout = GetParam()};
  s.set_padding(1);
  const std::size_t filter_bytes = sizeof(float) * static_cast<std::size_t>(s.weight_elements());
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    const Conv2d plain(s, {.num_threads = threads, .gemm_backend = kPacked});
    const Conv2d kept(s,
                      {.num_threads = threads, .gemm_backend = kPacked, .constant_weights = true});
    EXPECT_LT(plain.workspace_bytes() / static_cast<std::size_t>(plain.num_threads()), filter_bytes)
        << plain.describe();
    EXPECT_GE(kept.workspace_bytes(), filter_bytes) << kept.describe();
  }
}

TEST_P(Packed, DefaultWorkspaceIsAtMostTwoMebibytesPerWorker) {
  // The packing buffers shrink to fit (nothing is computed differently): ResNet-50's widest
  // 3x3 layers at batch 8, and a 1x1 layer of 2048 outputs (its tiles' columns shrink too).
  Conv2dShape wide{.batch = 8,
                   .in_channels = 512,
                   .in_height = 7,
                   .in_width = 7,
                   .out_channels = 512,
                   .kernel_height = 3,
                   .kernel_width = 3,
                   .layout = GetParam()};
  wide.set_padding(1);
  Conv2dShape medium = wide;
  medium.in_channels = medium.out_channels = 256;
  medium.in_height = medium.in_width = 14;
  Conv2dShape pointwise = wide;
  pointwise.out_channels = 2048;
  pointwise.in_height = pointwise.in_width = 14;
  pointwise.kernel_height = pointwise.kernel_width = 1;
  pointwise.set_padding(0);
  for (const Conv2dShape& s : {wide, medium, pointwise}) {
    SCOPED_TRACE(s.to_string());
    for (const int threads : {1, 2}) {
      const Conv2d conv(s, {.num_threads = threads, .gemm_backend = kPacked});
      EXPECT_LE(conv.workspace_bytes() / static_cast<std::size_t>(conv.num_threads()),
                std::size_t{2} << 20)
          << conv.describe();
    }
  }
}

TEST_P(Packed, LargeOutputsWrittenPastTheCachesMatchNaiveAndTheImageAlone) {
  // An output of at least 4 MiB from one reduction block goes out with streaming stores (nchw):
  // the same values as naive, and the same bits as one image alone (whose smaller output is
  // stored normally), with and without a bias, in rows that are and are not whole cache lines.
  std::mt19937_64 rng(test::test_seed());
  for (const int64_t width : {64, 61}) {
    Conv2dShape s{.batch = 2,
                  .in_channels = 4,
                  .in_height = 64,
                  .in_width = width,
                  .out_channels = 136,
                  .kernel_height = 3,
                  .kernel_width = 3,
                  .layout = GetParam()};
    s.set_padding(1);
    SCOPED_TRACE(s.to_string());
    const Conv2dOptions options{.num_threads = 2, .gemm_backend = kPacked};
    test::expect_forward_matches_naive(s, options, rng, /*with_bias=*/true);
    const Inputs batch(s, rng);
    Conv2dShape one = s;
    one.batch = 1;
    const int64_t x_image = s.input_elements() / s.batch, y_image = s.output_elements() / s.batch;
    for (const bool with_bias : {true, false}) {
      const float* bias = with_bias ? batch.bias.data() : nullptr;
      Tensor y = test::nan_tensor(s.output_elements()), y_alone = test::nan_tensor(y_image);
      Conv2d(s, options).forward(batch.x.data(), batch.w.data(), bias, y.data());
      Conv2d(one, options).forward(batch.x.data() + x_image, batch.w.data(), bias, y_alone.data());
      EXPECT_TRUE(test::bitwise_equal(test::slice(y, y_image, y_image), y_alone))
          << "bias " << with_bias;
    }
  }
}

TEST_P(Packed, ImageOfABatchGivesTheBitsItGivesAlone) {
  std::mt19937_64 rng(test::test_seed());
  std::vector<Conv2dShape> shapes = in_layout(split_shapes());
  for (int i = 0; i < 30; ++i) shapes.push_back(random_packed_shape(rng, GetParam()));
  for (Conv2dShape s : shapes) {
    s.batch = test::uniform(rng, 2, 6);
    const int64_t i = test::uniform(rng, 0, s.batch - 1);
    SCOPED_TRACE(s.to_string() + ", image " + std::to_string(i));
    const Inputs batch(s, rng);
    const Results all = run_passes(s, {.num_threads = 3, .gemm_backend = kPacked}, batch);

    Conv2dShape one = s;
    one.batch = 1;
    Inputs alone(one, rng);
    const int64_t x_image = s.input_elements() / s.batch, y_image = s.output_elements() / s.batch;
    alone.x = test::slice(batch.x, i * x_image, x_image);
    alone.dy = test::slice(batch.dy, i * y_image, y_image);
    alone.w = batch.w;
    alone.bias = batch.bias;
    const Results single = run_passes(one, {.num_threads = 1, .gemm_backend = kPacked}, alone);
    EXPECT_TRUE(test::bitwise_equal(test::slice(all.y, i * y_image, y_image), single.y)) << "y";
    EXPECT_TRUE(test::bitwise_equal(test::slice(all.dx, i * x_image, x_image), single.dx)) << "dx";
  }
}

TEST_P(Packed, SameBitsForEveryThreadCount) {
  std::mt19937_64 rng(test::test_seed());
  std::vector<Conv2dShape> shapes = in_layout(split_shapes());
  for (int i = 0; i < 6; ++i) shapes.push_back(random_packed_shape(rng, GetParam()));
  for (const Conv2dShape& s : shapes) {
    SCOPED_TRACE(s.to_string());
    const Inputs in(s, rng);
    const Results one = run_passes(s, {.num_threads = 1, .gemm_backend = kPacked}, in);
    for (const int threads : {2, 3, 4, 8}) {
      SCOPED_TRACE("threads " + std::to_string(threads));
      expect_bitwise_equal(run_passes(s, {.num_threads = threads, .gemm_backend = kPacked}, in),
                           one);
    }
  }
}

// The smallest workspace_limit a plan accepts for `s` (a plan with that limit exists, and one
// byte less is refused).
std::size_t smallest_accepted_limit(const Conv2dShape& s, Conv2dOptions options) {
  std::size_t low = 1, high = Conv2d(s, options).workspace_bytes();
  while (low < high) {
    const std::size_t middle = low + (high - low) / 2;
    options.workspace_limit = middle;
    try {
      Conv2d conv(s, options);
      high = middle;
    } catch (const std::invalid_argument&) {
      low = middle + 1;
    }
  }
  return high;
}

TEST_P(Packed, SameBitsForEveryBlockSizeAndWorkspaceLimitDownToTheSmallest) {
  std::mt19937_64 rng(test::test_seed());
  Conv2dShape resnet_like{.batch = 2,
                          .in_channels = 40,
                          .in_height = 14,
                          .in_width = 14,
                          .out_channels = 50,
                          .kernel_height = 3,
                          .kernel_width = 3};
  resnet_like.set_padding(1);
  std::vector<Conv2dShape> shapes = {in_layout(resnet_like), in_layout(split_shapes().back()),
                                     in_layout(large_filter_shapes().front())};
  for (int i = 0; i < 6; ++i) shapes.push_back(random_packed_shape(rng, GetParam()));
  for (const Conv2dShape& s : shapes) {
    SCOPED_TRACE(s.to_string());
    const Inputs in(s, rng);
    const Conv2dOptions base{.num_threads = 3, .gemm_backend = kPacked};
    const Results reference = run_passes(s, base, in);
    for (const std::size_t block_bytes :
         {std::size_t{1}, std::size_t{3000}, std::size_t{65536}, std::size_t{1} << 22}) {
      SCOPED_TRACE("block_bytes " + std::to_string(block_bytes));
      Conv2dOptions options = base;
      options.block_bytes = block_bytes;
      expect_bitwise_equal(run_passes(s, options, in), reference);
    }
    const std::size_t smallest = smallest_accepted_limit(s, base);
    const std::size_t unlimited = Conv2d(s, base).workspace_bytes();
    EXPECT_THROW(
        Conv2d(s, {.num_threads = 3, .workspace_limit = smallest - 1, .gemm_backend = kPacked}),
        std::invalid_argument);
    for (const double fraction : {0.0, 0.3, 0.6, 1.0}) {
      const auto limit =
          smallest + static_cast<std::size_t>(fraction * double(unlimited - smallest));
      SCOPED_TRACE("workspace_limit " + std::to_string(limit));
      Conv2dOptions options = base;
      options.workspace_limit = limit;
      EXPECT_LE(Conv2d(s, options).workspace_bytes(), limit);
      expect_bitwise_equal(run_passes(s, options, in), reference);
    }
  }
}

TEST_F(PackedKernel, AnElementDoesNotDependOnItsPlaceInATile) {
  // Growing a shape around an element moves it to another place in its micro-kernel tile (and
  // the tiles' edges to other lanes) without changing its sum: more output channels for y and
  // dW's rows, more input channels for dx and dW's columns, more output rows for y.
  std::mt19937_64 rng(test::test_seed());
  const int64_t mr = kernel().mr, nr = kernel().nr;
  Conv2dShape small{.batch = 2,
                    .in_channels = 3,
                    .in_height = 7,
                    .in_width = 6,
                    .out_channels = std::max(mr, nr) - 1,
                    .kernel_height = 3,
                    .kernel_width = 3,
                    .stride_height = 1,
                    .stride_width = 2,
                    .pad_top = 1,
                    .pad_bottom = 1,
                    .pad_left = 1,
                    .pad_right = 1};
  const Inputs in(small, rng);
  const Conv2dOptions options{.num_threads = 2, .gemm_backend = kPacked};
  const Results reference = run_passes(small, options, in);
  const int64_t C = small.in_channels, O = small.out_channels, K = small.gemm_k();
  const int64_t HW = small.in_height * small.in_width, P = small.gemm_p();

  {  // more output channels: the first O filters and their outputs are the same
    Conv2dShape big = small;
    big.out_channels = O + 2 * std::max(mr, nr) + 3;
    Inputs grown(big, rng);
    std::copy(in.x.begin(), in.x.end(), grown.x.begin());
    std::copy(in.w.begin(), in.w.end(), grown.w.begin());
    std::copy(in.bias.begin(), in.bias.end(), grown.bias.begin());
    for (int64_t n = 0; n < small.batch; ++n) {
      std::copy_n(in.dy.begin() + n * O * P, O * P, grown.dy.begin() + n * big.out_channels * P);
    }
    const Results r = run_passes(big, options, grown);
    for (int64_t n = 0; n < small.batch; ++n) {
      EXPECT_TRUE(test::bitwise_equal(test::slice(r.y, n * big.out_channels * P, O * P),
                                      test::slice(reference.y, n * O * P, O * P)))
          << "y of image " << n;
    }
    EXPECT_TRUE(test::bitwise_equal(test::slice(r.dw, 0, O * K), reference.dw)) << "dw";
  }
  {  // more input channels: their gradients and the dW columns of the first C are the same
    Conv2dShape big = small;
    big.in_channels = C + nr + 2;
    Inputs grown(big, rng);
    const int64_t big_k = big.gemm_k();
    for (int64_t n = 0; n < small.batch; ++n) {
      std::copy_n(in.x.begin() + n * C * HW, C * HW, grown.x.begin() + n * big.in_channels * HW);
    }
    for (int64_t o = 0; o < O; ++o)
      std::copy_n(in.w.begin() + o * K, K, grown.w.begin() + o * big_k);
    grown.dy = in.dy;
    const Results r = run_passes(big, options, grown);
    for (int64_t n = 0; n < small.batch; ++n) {
      EXPECT_TRUE(test::bitwise_equal(test::slice(r.dx, n * big.in_channels * HW, C * HW),
                                      test::slice(reference.dx, n * C * HW, C * HW)))
          << "dx of image " << n;
    }
    for (int64_t o = 0; o < O; ++o) {
      EXPECT_TRUE(
          test::bitwise_equal(test::slice(r.dw, o * big_k, K), test::slice(reference.dw, o * K, K)))
          << "dw row " << o;
    }
  }
  {  // more input rows: the first output rows read the same patches
    Conv2dShape big = small;
    big.in_height = small.in_height + 5;
    Inputs grown(big, rng);
    const int64_t big_hw = big.in_height * big.in_width, big_p = big.gemm_p();
    for (int64_t plane = 0; plane < small.batch * C; ++plane) {
      std::copy_n(in.x.begin() + plane * HW, HW, grown.x.begin() + plane * big_hw);
    }
    grown.w = in.w;
    grown.bias = in.bias;
    const Results r = run_passes(big, options, grown);
    // Rows 0 .. OH-2 of the small output read no bottom padding; in the big one neither.
    const int64_t rows = (small.out_height() - 1) * small.out_width();
    for (int64_t plane = 0; plane < small.batch * O; ++plane) {
      EXPECT_TRUE(test::bitwise_equal(test::slice(r.y, plane * big_p, rows),
                                      test::slice(reference.y, plane * P, rows)))
          << "y plane " << plane;
    }
  }
}

// The kernel's partial tiles, each run at its own size where the kernel is skx on AVX-512
// (skx_edge_tiles.hpp), against BLIS's kernel on the same panels, bit for bit: every tile size,
// both betas, one step, a few and more than a reduction block; nothing outside the tile written.
TEST_F(PackedKernel, PartialTilesAtTheirSizeGiveTheBitsOfBlisKernel) {
  if (!kernel().sized_partial_tiles) GTEST_SKIP() << kernel().name << ": BLIS runs every tile";
  detail::MicroKernel blis_only = kernel();
  blis_only.sized_partial_tiles = false;
  std::mt19937_64 rng(test::test_seed());
  const int64_t mr = kernel().mr, nr = kernel().nr;
  const auto aligned = [](std::vector<float>& storage, std::size_t floats) {
    storage.assign(floats + detail::kPackedPanelAlignment / sizeof(float), 0.0f);
    void* start = storage.data();
    std::size_t space = storage.size() * sizeof(float);
    return static_cast<float*>(
        std::align(detail::kPackedPanelAlignment, floats * sizeof(float), start, space));
  };
  for (const int64_t depth : {int64_t{1}, int64_t{7}, kernel().kc + 5}) {
    std::vector<float> a_storage, b_storage;
    float* a = aligned(a_storage, std::size_t(mr * depth));
    float* b = aligned(b_storage, std::size_t(nr * depth));
    const Tensor a_values = test::random_tensor(rng, mr * depth),
                 b_values = test::random_tensor(rng, nr * depth);
    std::copy(a_values.begin(), a_values.end(), a);
    std::copy(b_values.begin(), b_values.end(), b);
    for (int64_t m = 1; m <= mr; ++m) {
      for (int64_t n = 1; n <= nr; ++n) {
        for (const float beta : {0.0f, 1.0f}) {
          SCOPED_TRACE("tile " + std::to_string(m) + " x " + std::to_string(n) + ", depth " +
                       std::to_string(depth) + ", beta " + std::to_string(beta));
          // C stored by columns with a longer column than the tile, around it NaN.
          const int64_t cs_c = mr + 3;
          Tensor c_sized = test::nan_tensor(cs_c * (nr + 1));
          const Tensor tile = test::random_tensor(rng, cs_c * n);
          for (int64_t j = 0; j < n; ++j) {
            for (int64_t i = 0; i < m; ++i) c_sized[j * cs_c + i] = tile[j * cs_c + i];
          }
          Tensor c_blis = c_sized;
          kernel().multiply(m, n, depth, a, b, beta, c_sized.data(), 1, cs_c);
          blis_only.multiply(m, n, depth, a, b, beta, c_blis.data(), 1, cs_c);
          EXPECT_TRUE(test::bitwise_equal(c_sized, c_blis));
        }
      }
    }
  }
}

TEST_P(Packed, ConstantWeightsArePackedOnceAndGiveTheSameBits) {
  std::mt19937_64 rng(test::test_seed());
  for (const Conv2dShape& s : in_layout(split_shapes())) {
    SCOPED_TRACE(s.to_string());
    const Inputs in(s, rng), other(s, rng);
    auto forward = [&](Conv2d& conv, const Tensor& w) {
      Tensor y = test::nan_tensor(s.output_elements());
      conv.forward(in.x.data(), w.data(), in.bias.data(), y.data());
      return y;
    };
    Conv2d plain(s, {.num_threads = 2, .gemm_backend = kPacked});
    Conv2d inference(s, {.num_threads = 2, .gemm_backend = kPacked, .constant_weights = true});
    const Tensor expected = forward(plain, in.w), expected_other = forward(plain, other.w);
    EXPECT_TRUE(test::bitwise_equal(forward(inference, in.w), expected)) << "first call";
    EXPECT_TRUE(test::bitwise_equal(forward(inference, in.w), expected)) << "reused packing";
    // The packed copy really is reused: weights changed in place (breaking the promise) are not
    // seen while the pointer stays the same.
    Tensor changed = in.w;
    Conv2d promised(s, {.num_threads = 2, .gemm_backend = kPacked, .constant_weights = true});
    forward(promised, changed);
    for (float& v : changed) v = -v;
    EXPECT_TRUE(test::bitwise_equal(forward(promised, changed), expected)) << "not repacked";
    // Another pointer packs again, and so does a forward after backward_data or backward_weights
    // (whose partial sums may use the same workspace).
    EXPECT_TRUE(test::bitwise_equal(forward(inference, other.w), expected_other)) << "new w";
    Tensor dx = test::nan_tensor(s.input_elements());
    inference.backward_data(in.dy.data(), other.w.data(), dx.data());
    EXPECT_TRUE(test::bitwise_equal(forward(inference, other.w), expected_other))
        << "after backward_data";
    Tensor dw = test::nan_tensor(s.weight_elements());
    inference.backward_weights(in.x.data(), in.dy.data(), dw.data(), nullptr);
    EXPECT_TRUE(test::bitwise_equal(forward(inference, other.w), expected_other))
        << "after backward_weights";
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, Packed, ::testing::Values(Layout::nchw, Layout::nhwc),
                         [](const auto& info) { return to_string(info.param); });

}  // namespace
}  // namespace convgemm
