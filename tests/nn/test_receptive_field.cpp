// receptive_field(): the closed-form recurrence against hand values and against a brute-force
// search (perturb one input pixel, see which outputs move).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>

#include "convgemm/nn/activation.hpp"
#include "convgemm/nn/conv2d.hpp"
#include "convgemm/nn/dense.hpp"
#include "convgemm/nn/flatten.hpp"
#include "convgemm/nn/pooling.hpp"
#include "convgemm/nn/sequential.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(ReceptiveField, TwoStackedFiveByFiveConvsSeeNineByNine) {
  const Window2d five{{5, 1, 0, 1}, {5, 1, 0, 1}};
  const ReceptiveField field = receptive_field(std::array{five, five});
  EXPECT_EQ(field.height.size, 9);
  EXPECT_EQ(field.width.size, 9);
  EXPECT_EQ(field.height.jump, 1);
  EXPECT_EQ(field.height.start, 0);

  Sequential model;
  model.emplace<Conv2d>(1, 4, 5);
  model.emplace<ReLU>();
  model.emplace<Conv2d>(4, 4, 5);
  EXPECT_EQ(receptive_field(model).to_string(), "size 9x9, jump 1x1, start 0,0");
}

TEST(ReceptiveField, EmptyStackIsTheIdentity) {
  const ReceptiveField field = receptive_field(std::span<const Window2d>{});
  EXPECT_EQ(field.to_string(), "size 1x1, jump 1x1, start 0,0");
}

// For every output position (i, j) of `model` on an HxW input, the set of input pixels whose
// perturbation changes any channel of it. Weights and inputs are positive and the perturbation
// (+1000) dwarfs every activation (< 100), so a pixel inside the field always wins its max-pool
// windows and moves the output: "depends on" is then exactly "changes".
void expect_field_matches_brute_force(Sequential& model, int64_t layer_count, int64_t H,
                                      int64_t W) {
  const ReceptiveField field = receptive_field(model, layer_count);
  SCOPED_TRACE(field.to_string());
  std::mt19937_64 rng(testing::kSeed);
  for (const Parameter& p : model.parameters()) {
    for (float& v : p.values) v = float(testing::draw(rng, 0.1, 1.0));
  }
  Tensor x({1, 1, H, W});
  for (float& v : x.values()) v = float(testing::draw(rng, 0.0, 1.0));
  const Tensor base = model.forward(x);
  const int64_t C = base.dim(1), OH = base.dim(2), OW = base.dim(3);
  int64_t checked = 0;
  for (int64_t ih = 0; ih < H; ++ih) {
    for (int64_t iw = 0; iw < W; ++iw) {
      Tensor perturbed = x;
      perturbed[ih * W + iw] += 1000.0f;
      const Tensor& y = model.forward(perturbed);
      for (int64_t i = 0; i < OH; ++i) {
        for (int64_t j = 0; j < OW; ++j) {
          bool changed = false;
          for (int64_t c = 0; c < C; ++c)
            changed |= y[(c * OH + i) * OW + j] != base[(c * OH + i) * OW + j];
          const int64_t top = field.height.start + i * field.height.jump;
          const int64_t left = field.width.start + j * field.width.jump;
          const bool inside = ih >= top && ih < top + field.height.size && iw >= left &&
                              iw < left + field.width.size;
          EXPECT_EQ(changed, inside) << "pixel " << ih << "," << iw << " output " << i << "," << j;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(ReceptiveField, PoolBetweenTwoFiveByFiveConvsMatchesBruteForce) {
  Sequential model;
  model.emplace<Conv2d>(1, 2, 5);
  model.emplace<ReLU>();
  model.emplace<MaxPool2d>(2);
  model.emplace<Conv2d>(2, 2, 5);
  const ReceptiveField field = receptive_field(model);
  EXPECT_EQ(field.height.size, 14);  // 5, then +1 for the pool, then +4 taps of jump 2
  EXPECT_EQ(field.height.jump, 2);
  EXPECT_EQ(field.height.start, 0);
  expect_field_matches_brute_force(model, model.size(), 19, 22);
}

TEST(ReceptiveField, PaddingStridesAndRectangularWindowsMatchBruteForce) {
  Sequential model;
  Conv2dShape first{.in_channels = 1,
                    .out_channels = 2,
                    .kernel_height = 5,
                    .kernel_width = 3,
                    .stride_height = 1,
                    .stride_width = 2,
                    .pad_top = 2,
                    .pad_bottom = 2,
                    .pad_left = 1,
                    .pad_right = 1};
  model.emplace<Conv2d>(first);
  model.emplace<MaxPool2d>(3, 2, 1);
  model.emplace<AvgPool2d>(2, 1, 1, /*count_include_pad=*/false);
  model.emplace<Conv2d>(2, 1, 3, /*stride=*/2, /*padding=*/1);
  expect_field_matches_brute_force(model, model.size(), 17, 21);
}

TEST(ReceptiveField, RejectsLayersWithoutAWindow) {
  Sequential model;
  model.emplace<Conv2d>(1, 2, 3);
  model.emplace<Flatten>();
  model.emplace<Dense>(8, 2);
  EXPECT_EQ(receptive_field(model, 1).height.size, 3);
  EXPECT_THAT(
      [&] { receptive_field(model); },
      ThrowsMessage<std::invalid_argument>(HasSubstr("layer 1 (flatten) has no sliding window")));
  const Window2d bad{{0, 1, 0, 1}, {1, 1, 0, 1}};
  EXPECT_THAT([&] { receptive_field(std::array{bad}); },
              ThrowsMessage<std::invalid_argument>(
                  HasSubstr("layer 0 height kernel must be >= 1 (got 0)")));
}

}  // namespace
}  // namespace convgemm::nn
