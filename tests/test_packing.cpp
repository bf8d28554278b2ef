// The packed driver's image gathers alone (white box): the panels ImageColumns and ImageRows write
// hold X_col's entries, as convgemm/im2col.hpp defines them, in micro_kernel.hpp's panel format,
// zeros in the padding lanes, and nothing outside the panels. Both forms are checked wherever they
// run: the portable gather at every width, and the AVX-512 one (widths that are multiples of 16,
// column stride 1 or 2) when this CPU has it, including widths the CPU's own kernel never asks for.
// They are copies, so the comparison is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "convgemm/shape.hpp"
#include "packed/flipped_filter.hpp"
#include "packed/operands.hpp"
#include "support/seed.hpp"

namespace convgemm {
namespace {

// X_col's entry (row k, column q) of the images at x (q runs over the images' positions one
// after the other), with the image and group strides of the whole tensor: the formula, plainly.
float x_col_entry(const Conv2dShape& s, const std::vector<float>& x, int64_t group, int64_t k,
                  int64_t q) {
  const int64_t P = s.gemm_p(), OW = s.out_width(), KH = s.kernel_height, KW = s.kernel_width;
  const int64_t n = q / P, oh = q % P / OW, ow = q % P % OW;
  const int64_t c = group * (s.in_channels / s.groups) + k / (KH * KW);
  const int64_t kh = k / KW % KH, kw = k % KW;
  const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
  const int64_t iw = ow * s.stride_width - s.pad_left + kw * s.dilation_width;
  if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) return 0.0f;
  return x[((n * s.in_channels + c) * s.in_height + ih) * s.in_width + iw];
}

// Packs with `pack(buffer)` and compares every float of the panels (`lanes` x `steps`, `width`
// wide), and the floats after them (which must stay as they were), with expected(lane, step).
// Returns false when `pack` declined the case.
template <class Pack, class Expected>
bool packs(const std::string& what, int64_t lanes, int64_t steps, int64_t width, Pack pack,
           Expected expected) {
  const int64_t panels = (lanes + width - 1) / width, floats = panels * width * steps;
  std::vector<float> buffer(static_cast<size_t>(floats + 64), std::nanf(""));
  if (!pack(buffer.data())) return false;
  for (int64_t panel = 0; panel < panels; ++panel) {
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t i = 0; i < width; ++i) {
        const int64_t lane = panel * width + i;
        const float want = lane < lanes ? expected(lane, t) : 0.0f;
        const float got = buffer[static_cast<size_t>((panel * steps + t) * width + i)];
        if (std::memcmp(&got, &want, sizeof got) != 0) {
          ADD_FAILURE() << what << ": panel " << panel << " step " << t << " lane " << i
                        << " holds " << got << ", X_col has " << want;
          return true;
        }
      }
    }
  }
  for (int64_t i = floats; i < floats + 64; ++i) {
    if (!std::isnan(buffer[static_cast<size_t>(i)])) {
      ADD_FAILURE() << what << ": wrote " << i - floats << " floats past its panels";
      return true;
    }
  }
  return true;
}

// A random shape with at least one output, and its input filled with distinct values.
struct Case {
  Conv2dShape shape;
  std::vector<float> x;
};

template <class Rng>
Case random_case(Rng& rng) {
  auto pick = [&](std::initializer_list<int64_t> values) {
    return values.begin()[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
  };
  for (;;) {
    Conv2dShape s{.batch = pick({1, 3}),
                  .in_channels = pick({1, 2, 4}),
                  .in_height = pick({1, 4, 7}),
                  .in_width = pick({1, 3, 13, 40, 70, 120}),
                  .out_channels = 2,
                  .kernel_height = pick({1, 2, 3}),
                  .kernel_width = pick({1, 2, 3, 5, 7}),
                  .stride_height = pick({1, 2}),
                  .stride_width = pick({1, 1, 2, 2, 3}),
                  .dilation_height = pick({1, 2}),
                  .dilation_width = pick({1, 1, 2})};
    s.groups = s.in_channels % 2 == 0 ? pick({1, 2}) : 1;
    s.pad_top = pick({0, 1, 2});
    s.pad_bottom = pick({0, 1});
    s.pad_left = pick({0, 1, 2, 3});
    s.pad_right = pick({0, 1, 4});
    if (s.in_height + s.pad_top + s.pad_bottom < (s.kernel_height - 1) * s.dilation_height + 1 ||
        s.in_width + s.pad_left + s.pad_right < (s.kernel_width - 1) * s.dilation_width + 1) {
      continue;  // no output
    }
    std::vector<float> x(static_cast<size_t>(s.batch * s.in_channels * s.in_height * s.in_width));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + 1);  // each its own value
    return {s, std::move(x)};
  }
}

template <class Rng>
int64_t pick_from(Rng& rng, std::initializer_list<int64_t> values) {
  return values.begin()[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
}

constexpr int kTrials = 600;
const std::initializer_list<int64_t> kWidths = {4, 12, 16, 32, 48, 64};

// forward's B panels: lanes are positions (from first_lane + first, across images), steps the
// X_col rows.
TEST(ImageColumnPanels, BothFormsHoldXColOnRandomShapesLaneRangesAndWidths) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  int avx512_cases = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const Case c = random_case(rng);
    const Conv2dShape& s = c.shape;
    const int64_t positions = s.batch * s.gemm_p(), K = s.gemm_k(), group = s.groups - 1;
    const int64_t first_lane = std::min<int64_t>(pick_from(rng, {0, 0, 5}), positions - 1);
    const int64_t first = std::min<int64_t>(pick_from(rng, {0, 3}), positions - 1 - first_lane);
    const int64_t room = positions - first_lane - first;
    const int64_t lanes = std::min<int64_t>(room, pick_from(rng, {1, 17, 100, room}));
    const int64_t step = std::min<int64_t>(pick_from(rng, {0, 0, 4}), K - 1);
    const int64_t steps = std::min<int64_t>(K - step, pick_from(rng, {1, 7, K}));
    const int64_t width = pick_from(rng, kWidths);
    const detail::ImageColumns op{
        &s, c.x.data() + group * (s.in_channels / s.groups) * s.in_height * s.in_width, first_lane};
    const std::string what = s.to_string() + " first_lane " + std::to_string(first_lane) +
                             " first " + std::to_string(first) + " lanes " + std::to_string(lanes) +
                             " step " + std::to_string(step) + " steps " + std::to_string(steps) +
                             " width " + std::to_string(width);
    const auto expected = [&](int64_t lane, int64_t t) {
      return x_col_entry(s, c.x, group, step + t, first_lane + first + lane);
    };
    EXPECT_TRUE(packs(
        what + " (portable)", lanes, steps, width,
        [&](float* buffer) {
          detail::pack_image_columns_portable(op, first, lanes, step, steps, width, buffer);
          return true;
        },
        expected));
    avx512_cases += packs(
        what + " (AVX-512)", lanes, steps, width,
        [&](float* buffer) {
          return detail::pack_image_columns_avx512(op, first, lanes, step, steps, width, buffer);
        },
        expected);
  }
  if (avx512_cases == 0) GTEST_SKIP() << "this CPU has no AVX-512 gather; the portable one passed";
}

// The AVX-512 gather works out each kernel row's loads (a 1-wide kernel's: each tap's) once for
// a group of panels, in blocks of rows (taps) when a group's runs times them would overflow its
// table: output rows one or two positions wide make every lane or every second lane a run of its
// own, and tall kernels make many rows; at stride 1 and 2, with reduction ranges that start and
// end inside a channel.
TEST(ImageColumnPanels, ManyRunsTimesManyTapsAreGatheredInBlocksOfTaps) {
  int avx512_cases = 0;
  for (const int64_t stride : {1, 2}) {
    for (const int64_t out_width : {1, 2}) {
      for (const int64_t kernel_width : {1, 3}) {
        Conv2dShape s{.batch = 2,
                      .in_channels = 3,
                      .in_height = 150,
                      .in_width = kernel_width + (out_width - 1) * stride,
                      .out_channels = 2,
                      .kernel_height = 9,
                      .kernel_width = kernel_width,
                      .stride_height = stride,
                      .stride_width = stride};
        s.pad_top = 2;
        s.pad_bottom = 1;
        std::vector<float> x(
            static_cast<size_t>(s.batch * s.in_channels * s.in_height * s.in_width));
        for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + 1);
        const int64_t lanes = s.batch * s.gemm_p(), K = s.gemm_k();
        for (const int64_t width : {12, 16, 32, 64}) {
          for (const auto& [step, steps] : {std::pair<int64_t, int64_t>{0, K}, {5, K - 13}}) {
            const detail::ImageColumns op{&s, x.data(), 0};
            const std::string what = s.to_string() + " step " + std::to_string(step) + " steps " +
                                     std::to_string(steps) + " width " + std::to_string(width);
            avx512_cases += packs(
                what, lanes, steps, width,
                [&](float* buffer) {
                  return detail::pack_image_columns_avx512(op, 0, lanes, step, steps, width,
                                                           buffer);
                },
                [&](int64_t lane, int64_t t) { return x_col_entry(s, x, 0, step + t, lane); });
          }
        }
      }
    }
  }
  if (avx512_cases == 0) GTEST_SKIP() << "this CPU has no AVX-512 gather";
}

// backward_weights' B panels: lanes are X_col rows, steps the positions of every image in order.
TEST(ImageRowPanels, BothFormsHoldXColTransposedOnRandomShapesRangesAndWidths) {
  std::mt19937_64 rng(test::test_seed() + 1);
  SCOPED_TRACE(test::seed_description());
  int avx512_cases = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const Case c = random_case(rng);
    const Conv2dShape& s = c.shape;
    const int64_t positions = s.batch * s.gemm_p(), K = s.gemm_k(), group = s.groups - 1;
    const int64_t first = std::min<int64_t>(pick_from(rng, {0, 0, 3, 20}), K - 1);
    const int64_t lanes = std::min<int64_t>(K - first, pick_from(rng, {1, 17, 40, K}));
    const int64_t step = std::min<int64_t>(pick_from(rng, {0, 0, 5, 30}), positions - 1);
    const int64_t room = positions - step;
    const int64_t steps = std::min<int64_t>(room, pick_from(rng, {1, 15, 17, 300, room}));
    const int64_t width = pick_from(rng, kWidths);
    const detail::ImageRows op{
        &s, c.x.data() + group * (s.in_channels / s.groups) * s.in_height * s.in_width};
    const std::string what = s.to_string() + " first " + std::to_string(first) + " lanes " +
                             std::to_string(lanes) + " step " + std::to_string(step) + " steps " +
                             std::to_string(steps) + " width " + std::to_string(width);
    const auto expected = [&](int64_t lane, int64_t t) {
      return x_col_entry(s, c.x, group, first + lane, step + t);
    };
    EXPECT_TRUE(packs(
        what + " (portable)", lanes, steps, width,
        [&](float* buffer) {
          detail::pack_image_rows_portable(op, first, lanes, step, steps, width, buffer);
          return true;
        },
        expected));
    avx512_cases += packs(
        what + " (AVX-512)", lanes, steps, width,
        [&](float* buffer) {
          return detail::pack_image_rows_avx512(op, first, lanes, step, steps, width, buffer);
        },
        expected);
  }
  if (avx512_cases == 0) GTEST_SKIP() << "this CPU has no AVX-512 gather; the portable one passed";
}

// backward_data's flipped filter (packed/flipped_filter.hpp) as the forward convolution's weight
// panels: lane c, step k' holds W_g[o][c][KH-1-kh'][KW-1-kw'] with k' = (o, kh', kw') in nchw
// and (kh', kw', o) in nhwc; filters of 1 to 25 taps (AVX-512 permutes up to 16, else scalar),
// lane and step ranges that start and end inside a filter row, every width.
TEST(FlippedFilterPanels, HoldTheFlippedFilterOnRandomShapesRangesAndWidths) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::seed_description());
  for (int trial = 0; trial < kTrials; ++trial) {
    Conv2dShape s{.batch = 1,
                  .in_channels = pick_from(rng, {1, 3, 17, 40}),
                  .in_height = 6,
                  .in_width = 6,
                  .out_channels = pick_from(rng, {1, 2, 5}),
                  .kernel_height = pick_from(rng, {1, 2, 3, 4, 5}),
                  .kernel_width = pick_from(rng, {1, 3, 4, 5}),
                  .layout = pick_from(rng, {0, 0, 1}) == 0 ? Layout::nchw : Layout::nhwc};
    s.groups = s.in_channels % 2 == 0 ? pick_from(rng, {1, 2}) : 1;
    s.out_channels *= s.groups;
    const int64_t T = s.kernel_height * s.kernel_width, M = s.gemm_m(), K = s.gemm_k();
    const int64_t channels = s.in_channels / s.groups, group = s.groups - 1;
    std::vector<float> w(static_cast<size_t>(s.weight_elements()));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i + 1);  // each its own value
    const float* w_group = w.data() + group * M * K;
    const int64_t first = std::min<int64_t>(pick_from(rng, {0, 0, 1, 5}), channels - 1);
    const int64_t lanes = std::min<int64_t>(channels - first, pick_from(rng, {1, 16, 17, 40}));
    const int64_t step = std::min<int64_t>(pick_from(rng, {0, 0, 1, T + 2}), M * T - 1);
    const int64_t steps = std::min<int64_t>(M * T - step, pick_from(rng, {1, T - 1, 2 * T + 3}));
    const int64_t width = pick_from(rng, kWidths);
    const std::string what = s.to_string() + " first " + std::to_string(first) + " lanes " +
                             std::to_string(lanes) + " step " + std::to_string(step) + " steps " +
                             std::to_string(steps) + " width " + std::to_string(width);
    const auto expected = [&](int64_t lane, int64_t t) {
      const int64_t k = step + t, c = first + lane;
      const bool nchw = s.layout == Layout::nchw;
      const int64_t o = nchw ? k / T : k % M, flipped = nchw ? k % T : k / M;
      const int64_t tap = T - 1 - flipped;  // (kh, kw) = (KH-1-kh', KW-1-kw')
      return w_group[nchw ? o * K + c * T + tap : o * K + tap * channels + c];
    };
    const detail::FlippedFilter filter{&s, w_group};
    EXPECT_TRUE(packs(
        what, lanes, std::max<int64_t>(steps, 1), width,
        [&](float* buffer) {
          const float* panels =
              filter.panels(first, lanes, step, std::max<int64_t>(steps, 1), width, buffer);
          return panels == buffer;
        },
        expected));
  }
}

}  // namespace
}  // namespace convgemm
