// Threads: results that do not depend on the thread count (backward_weights by design, bit for
// bit; forward and backward_data because every output element has one owner), and BLAS kept
// single-threaded inside the engine's tasks while the caller's own setting survives.
#include <cblas.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "gemm.hpp"
#include "plan.hpp"
#include "support/checks.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;

constexpr int kThreadCounts[] = {1, 2, 3, 4, 8};

struct Case {
  Conv2dShape shape;
  std::size_t block_bytes;  // 0: the machine default
};

// Shapes large enough that a pass is cut into several row blocks and dW panels, so that
// different threads really do own different pieces of every sum.
std::vector<Case> cases() {
  Conv2dShape resnet_like{.batch = 3,
                          .in_channels = 16,
                          .in_height = 20,
                          .in_width = 20,
                          .out_channels = 24,
                          .kernel_height = 3,
                          .kernel_width = 3};
  resnet_like.set_padding(1);
  Conv2dShape grouped_strided{.batch = 3,
                              .in_channels = 12,
                              .in_height = 17,
                              .in_width = 19,
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
  // 96 output channels: backward_weights splits a pointwise dW by output channels (3 panels).
  const Conv2dShape pointwise{
      .batch = 3, .in_channels = 40, .in_height = 14, .in_width = 13, .out_channels = 96};
  Conv2dShape awkward{.batch = 3,
                      .in_channels = 23,
                      .in_height = 11,
                      .in_width = 13,
                      .out_channels = 19,
                      .kernel_height = 3,
                      .kernel_width = 3};
  awkward.set_padding(1);
  Conv2dShape depthwise{.batch = 2,
                        .in_channels = 16,
                        .in_height = 12,
                        .in_width = 12,
                        .out_channels = 32,
                        .kernel_height = 3,
                        .kernel_width = 3,
                        .groups = 16};
  depthwise.set_padding(1);
  // The nhwc direct kernels: 40 channels are two whole vectors of 16 (register blocks, two
  // weight ranges) and a tail of 8 (pixel by pixel, a third range); stride 2 in width.
  Conv2dShape depthwise_nhwc{.batch = 3,
                             .in_channels = 40,
                             .in_height = 9,
                             .in_width = 23,
                             .out_channels = 40,
                             .kernel_height = 3,
                             .kernel_width = 3,
                             .stride_width = 2,
                             .groups = 40,
                             .layout = Layout::nhwc};
  depthwise_nhwc.set_padding(1);
  Conv2dShape multiplier_nhwc = depthwise;
  multiplier_nhwc.layout = Layout::nhwc;
  // dW of 128 x 576 floats, more than a chunked weight gradient takes: split into panels of
  // X_col rows instead.
  Conv2dShape wide_weights{.batch = 2,
                           .in_channels = 64,
                           .in_height = 10,
                           .in_width = 9,
                           .out_channels = 128,
                           .kernel_height = 3,
                           .kernel_width = 3};
  wide_weights.set_padding(1);
  return {{resnet_like, 0},     {resnet_like, 16 << 10}, {resnet_like, 4},
          {grouped_strided, 0}, {grouped_strided, 3000}, {pointwise, 0},
          {pointwise, 2000},    {awkward, 8 << 10},      {depthwise, 1000},
          {depthwise_nhwc, 0},  {multiplier_nhwc, 0},    {wide_weights, 40 << 10}};
}

struct Gradients {
  Tensor y, dx, dw, dbias;
};

struct Inputs {
  Tensor x, w, bias, dy;
};

Inputs random_inputs(const Conv2dShape& s) {
  std::mt19937_64 rng(test::test_seed());  // the same inputs for every thread count
  return {
      test::random_tensor(rng, s.input_elements()), test::random_tensor(rng, s.weight_elements()),
      test::random_tensor(rng, s.bias_elements()), test::random_tensor(rng, s.output_elements())};
}

Gradients run_passes(Conv2d& conv, const Inputs& in) {
  const Conv2dShape& s = conv.shape();
  Gradients g{test::nan_tensor(s.output_elements()), test::nan_tensor(s.input_elements()),
              test::nan_tensor(s.weight_elements()), test::nan_tensor(s.bias_elements())};
  conv.forward(in.x.data(), in.w.data(), in.bias.data(), g.y.data());
  conv.backward_data(in.dy.data(), in.w.data(), g.dx.data());
  conv.backward_weights(in.x.data(), in.dy.data(), g.dw.data(), g.dbias.data());
  return g;
}

Gradients run_all(const Conv2dShape& s, const Conv2dOptions& options) {
  Conv2d conv(s, options);
  return run_passes(conv, random_inputs(s));
}

void expect_bitwise(const Gradients& actual, const Gradients& expected) {
  EXPECT_TRUE(test::bitwise_equal(actual.dw, expected.dw)) << "dw";
  EXPECT_TRUE(test::bitwise_equal(actual.dbias, expected.dbias)) << "dbias";
  EXPECT_TRUE(test::bitwise_equal(actual.y, expected.y)) << "y";
  EXPECT_TRUE(test::bitwise_equal(actual.dx, expected.dx)) << "dx";
}

// Several runs on one plan, each compared with `expected`. The repeats matter: a fresh arena's
// workers join while the first calls are already running (on a loaded machine the calling
// thread may finish them all alone), so later runs are the ones that spread tasks over slots.
constexpr int kRunsPerPlan = 12;

void expect_every_run_bitwise(const Conv2dShape& s, const Conv2dOptions& options,
                              const Gradients& expected) {
  Conv2d conv(s, options);
  const Inputs in = random_inputs(s);
  for (int run = 0; run < kRunsPerPlan; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    expect_bitwise(run_passes(conv, in), expected);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(Threads, CasesReallyCutTheWorkIntoSeveralPieces) {
  // Guards the next tests against shapes that have become too small to show anything: row
  // blocks, a small dW summed in chunks, a large one in panels.
  const auto blocking = [](const Case& c) {
    return detail::choose_blocking(c.shape, {.block_bytes = c.block_bytes}, /*threads=*/4);
  };
  const detail::Blocking chunked = blocking(cases()[1]);
  EXPECT_GT(chunked.blocks_per_image, 1);
  EXPECT_GT(chunked.weight_blocks_per_image, 1);
  EXPECT_GT(chunked.weight_chunks, 1);
  EXPECT_EQ(chunked.slots, 4);
  const detail::Blocking panels = blocking(cases().back());
  EXPECT_GT(panels.blocks_per_image, 1);
  EXPECT_GT(panels.weight_panels, 1);
  EXPECT_EQ(panels.weight_chunks, 1);
}

TEST(Threads, ResultsAreBitwiseIdenticalForEveryThreadCount) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.shape.to_string() + " block_bytes " + std::to_string(c.block_bytes));
    const Gradients one = run_all(c.shape, {.num_threads = 1, .block_bytes = c.block_bytes});
    for (int threads : kThreadCounts) {
      SCOPED_TRACE("num_threads " + std::to_string(threads));
      EXPECT_EQ(Conv2d(c.shape, {.num_threads = threads}).num_threads(), threads);
      expect_every_run_bitwise(c.shape, {.num_threads = threads, .block_bytes = c.block_bytes},
                               one);
    }
  }
}

TEST(Threads, GlobalControlCapsTheDefaultAndChangesNoBits) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.shape.to_string() + " block_bytes " + std::to_string(c.block_bytes));
    const Gradients one = run_all(c.shape, {.num_threads = 1, .block_bytes = c.block_bytes});
    for (std::size_t cap : {std::size_t{1}, std::size_t{2}}) {
      SCOPED_TRACE("max_allowed_parallelism " + std::to_string(cap));
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, cap);
      EXPECT_LE(Conv2d(c.shape).num_threads(), static_cast<int>(cap));
      // Default options pick the capped count; an explicit 4 is capped while it runs.
      expect_every_run_bitwise(c.shape, {.block_bytes = c.block_bytes}, one);
      expect_every_run_bitwise(c.shape, {.num_threads = 4, .block_bytes = c.block_bytes}, one);
    }
  }
}

TEST(Threads, EveryGemmBackendIsBitwiseIdenticalForEveryThreadCount) {
  // The thread-count independence holds per backend (the backends differ from each other).
  std::vector<GemmBackend> backends = {GemmBackend::openblas};
  if (gemm_backend_available(GemmBackend::onednn)) backends.push_back(GemmBackend::onednn);
  for (GemmBackend backend : backends) {
    for (std::size_t index : {1, 3, 5}) {
      const Case c = cases()[index];
      SCOPED_TRACE(c.shape.to_string() + " gemm " + test::to_string(backend));
      const Gradients one = run_all(
          c.shape, {.num_threads = 1, .block_bytes = c.block_bytes, .gemm_backend = backend});
      for (int threads : kThreadCounts) {
        SCOPED_TRACE("num_threads " + std::to_string(threads));
        expect_every_run_bitwise(
            c.shape,
            {.num_threads = threads, .block_bytes = c.block_bytes, .gemm_backend = backend}, one);
      }
    }
  }
}

TEST(Threads, RepeatedRunsOnOnePlanGiveTheSameBits) {
  const Case c = cases()[1];
  std::mt19937_64 rng(test::test_seed());
  const Conv2dShape& s = c.shape;
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor dy = test::random_tensor(rng, s.output_elements());
  Conv2d conv(s, {.num_threads = 4, .block_bytes = c.block_bytes});
  Tensor first_dw = test::nan_tensor(s.weight_elements()),
         first_db = test::nan_tensor(s.bias_elements());
  conv.backward_weights(x.data(), dy.data(), first_dw.data(), first_db.data());
  for (int run = 0; run < 30; ++run) {
    Tensor dw = test::nan_tensor(s.weight_elements()), db = test::nan_tensor(s.bias_elements());
    conv.backward_weights(x.data(), dy.data(), dw.data(), db.data());
    ASSERT_TRUE(test::bitwise_equal(dw, first_dw)) << "run " << run;
    ASSERT_TRUE(test::bitwise_equal(db, first_db)) << "run " << run;
  }
}

TEST(Threads, TransposedWeightGradientIsBitwiseIdenticalForEveryThreadCount) {
  // 2 groups x 4 dW panels = 8 backward_weights tasks, several row blocks each.
  const ConvTranspose2dShape s{.batch = 3,
                               .in_channels = 24,
                               .in_height = 10,
                               .in_width = 9,
                               .out_channels = 32,
                               .kernel_height = 3,
                               .kernel_width = 3,
                               .stride_height = 2,
                               .stride_width = 2,
                               .pad_top = 1,
                               .pad_bottom = 1,
                               .pad_left = 1,
                               .pad_right = 1,
                               .output_padding_height = 1,
                               .output_padding_width = 0,
                               .groups = 2};
  std::mt19937_64 rng(test::test_seed());
  const Tensor x = test::random_tensor(rng, s.input_elements());
  const Tensor dy = test::random_tensor(rng, s.output_elements());
  const Tensor w = test::random_tensor(rng, s.weight_elements());
  auto run = [&](ConvTranspose2d& conv) {
    Gradients g{test::nan_tensor(s.output_elements()), test::nan_tensor(s.input_elements()),
                test::nan_tensor(s.weight_elements()), test::nan_tensor(s.out_channels)};
    conv.forward(x.data(), w.data(), nullptr, g.y.data());
    conv.backward_data(dy.data(), w.data(), g.dx.data());
    conv.backward_weights(x.data(), dy.data(), g.dw.data(), g.dbias.data());
    return g;
  };
  ConvTranspose2d single(s, {.num_threads = 1, .block_bytes = 4096});
  const Gradients one = run(single);
  for (int threads : kThreadCounts) {
    SCOPED_TRACE("num_threads " + std::to_string(threads));
    ConvTranspose2d conv(s, {.num_threads = threads, .block_bytes = 4096});
    for (int repeat = 0; repeat < kRunsPerPlan; ++repeat) expect_bitwise(run(conv), one);
  }
}

TEST(Threads, ManyThreadsStillMatchNaive) {
  // Bitwise equality across counts would also hold for a wrong answer: pin one to the oracle.
  std::mt19937_64 rng(test::test_seed());
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.shape.to_string());
    const Conv2dOptions options{.num_threads = 4, .block_bytes = c.block_bytes};
    test::expect_forward_matches_naive(c.shape, options, rng, /*with_bias=*/true);
    test::expect_backward_data_matches_naive(c.shape, options, rng);
    test::expect_backward_weights_matches_naive(c.shape, options, rng, /*with_bias=*/true);
  }
}

// Restores the caller's OpenBLAS thread count when a test ends, pass or fail.
class BlasThreads : public ::testing::Test {
 protected:
  void TearDown() override { openblas_set_num_threads(saved_); }
  int saved_ = openblas_get_num_threads();
};

TEST_F(BlasThreads, LinkedBlasIsOpenBlas) {
  const std::string config = openblas_get_config();
  EXPECT_NE(config.find("OpenBLAS"), std::string::npos) << config;
}

TEST_F(BlasThreads, CblasSgemmIsOpenBlasNotBlis) {
  // BLIS (linked for its micro-kernels) exports cblas_sgemm too; the explicit path must get
  // OpenBLAS's, which a wrong link order would silently replace by BLIS's (linked statically,
  // it would then live in this executable itself).
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info), 0);
  ASSERT_NE(info.dli_fname, nullptr);
  EXPECT_NE(std::string(info.dli_fname).find("openblas"), std::string::npos) << info.dli_fname;
}

TEST_F(BlasThreads, EngineRunsBlasSingleThreadedAndRestoresTheCallersSetting) {
  openblas_set_num_threads(2);
  ASSERT_EQ(openblas_get_num_threads(), 2) << "this OpenBLAS cannot run 2 threads";
  const Case c = cases()[1];
  detail::reset_gemm_counters();
  // The explicit path: the only one on which OpenBLAS runs.
  constexpr GemmBackend kExplicit = GemmBackend::openblas;
  run_all(c.shape, {.num_threads = 2, .block_bytes = c.block_bytes, .gemm_backend = kExplicit});
  run_all(cases()[5].shape, {.num_threads = 2, .gemm_backend = kExplicit});  // pointwise: no im2col
  const ConvTranspose2dShape t{.batch = 2,
                               .in_channels = 6,
                               .in_height = 5,
                               .in_width = 5,
                               .out_channels = 4,
                               .kernel_height = 3,
                               .kernel_width = 3,
                               .stride_height = 2,
                               .stride_width = 2};
  std::mt19937_64 rng(test::test_seed());
  const Tensor x = test::random_tensor(rng, t.input_elements());
  const Tensor w = test::random_tensor(rng, t.weight_elements());
  const Tensor dy = test::random_tensor(rng, t.output_elements());
  Tensor y(std::size_t(t.output_elements())), dx(std::size_t(t.input_elements()));
  Tensor dw(std::size_t(t.weight_elements())), dbias(std::size_t(t.out_channels));
  ConvTranspose2d transposed(t, {.num_threads = 2, .gemm_backend = kExplicit});
  transposed.forward(x.data(), w.data(), nullptr, y.data());
  transposed.backward_data(dy.data(), w.data(), dx.data());
  transposed.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());

  const detail::GemmCounters counters = detail::gemm_counters();
  EXPECT_GT(counters.calls, 0);
  EXPECT_EQ(counters.calls_with_threaded_blas, 0) << "of " << counters.calls << " GEMM calls";
  EXPECT_EQ(openblas_get_num_threads(), 2) << "the caller's setting was not restored";
}

TEST_F(BlasThreads, OneDnnBackendRunsSingleThreadedToo) {
  if (!gemm_backend_available(GemmBackend::onednn)) {
    GTEST_SKIP() << "this build has no oneDNN backend";
  }
  openblas_set_num_threads(2);
  ASSERT_EQ(openblas_get_num_threads(), 2);
  detail::reset_gemm_counters();
  const Case c = cases()[1];
  run_all(c.shape,
          {.num_threads = 2, .block_bytes = c.block_bytes, .gemm_backend = GemmBackend::onednn});
  const detail::GemmCounters counters = detail::gemm_counters();
  EXPECT_GT(counters.onednn_calls, 0);
  EXPECT_EQ(counters.calls_with_threaded_blas, 0) << "of " << counters.calls << " GEMM calls";
  EXPECT_EQ(openblas_get_num_threads(), 2);
}

TEST_F(BlasThreads, ConcurrentPlansRestoreTheSettingWhenTheLastOneReturns) {
  openblas_set_num_threads(2);
  ASSERT_EQ(openblas_get_num_threads(), 2);
  detail::reset_gemm_counters();
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([i] {
      const Case c = cases()[static_cast<std::size_t>(i)];
      for (int call = 0; call < 3; ++call) {
        run_all(c.shape, {.num_threads = 2,
                          .block_bytes = c.block_bytes,
                          .gemm_backend = GemmBackend::openblas});  // OpenBLAS runs only there
      }
    });
  }
  for (std::thread& t : callers) t.join();
  const detail::GemmCounters counters = detail::gemm_counters();
  EXPECT_GT(counters.calls, 0);
  EXPECT_EQ(counters.calls_with_threaded_blas, 0) << "of " << counters.calls << " GEMM calls";
  EXPECT_EQ(openblas_get_num_threads(), 2);
}

}  // namespace
}  // namespace convgemm
