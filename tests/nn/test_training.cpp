// End to end: the CNN of examples/train_cnn learns the generated patterns; training is
// reproducible from its seed; gradient accumulation runs through the training loop.
#include <gtest/gtest.h>

#include <cmath>

#include "convgemm/nn/data.hpp"
#include "convgemm/nn/training.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

struct Budget {
  int64_t train_images, test_images, epochs;
  double min_accuracy;
};

// The example's defaults (12000 images, 5 epochs) reach 97-99% held-out accuracy. The test runs
// a reduced budget with a correspondingly lower bar: 8000 images for 4 epochs reached 95.8-96.6%
// on seeds 1-4, asserted at >= 93% (chance is 1/6). About 11 s in Release on 2 shared cores and
// 30 s under AddressSanitizer + UBSan (the GEMMs run in uninstrumented OpenBLAS), so the
// sanitized build runs the same budget.
constexpr Budget kBudget{8000, 1000, 4, 0.93};

TEST(Training, LearnsTheGeneratedPatterns) {
  const uint64_t seed = 1;
  const Dataset train = make_pattern_dataset({.count = kBudget.train_images, .seed = seed});
  const Dataset test =
      make_pattern_dataset({.count = kBudget.test_images, .seed = seed ^ 0x9e3779b97f4a7c15ull});
  Sequential model = make_small_cnn(28, kPatternClasses);
  model.initialize(seed);
  const double before = evaluate_accuracy(model, test, 256);
  Sgd sgd(model.parameters(), {.learning_rate = 0.02f, .momentum = 0.9f});
  std::mt19937_64 order(seed + 1);
  std::vector<double> losses;
  for (int64_t epoch = 0; epoch < kBudget.epochs; ++epoch) {
    sgd.set_learning_rate(0.02f * std::pow(0.7f, float(epoch)));  // the example's schedule
    losses.push_back(train_epoch(model, sgd, train, /*batch_size=*/32, order).mean_loss);
  }
  const double accuracy = evaluate_accuracy(model, test, 256);
  RecordProperty("held_out_accuracy", std::to_string(accuracy));
  EXPECT_LT(before, 0.4) << "an untrained model should be near chance";
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_LT(losses.front(), std::log(double(kPatternClasses)) + 0.1);
  EXPECT_GE(accuracy, kBudget.min_accuracy) << "losses: " << ::testing::PrintToString(losses);
}

TEST(Training, IsReproducibleFromItsSeed) {
  const Dataset train = make_pattern_dataset({.count = 200, .seed = 3});
  auto run = [&train] {
    Sequential model = make_small_cnn(28, kPatternClasses);
    model.initialize(4);
    Sgd sgd(model.parameters(), {.learning_rate = 0.02f, .momentum = 0.9f});
    std::mt19937_64 order(5);
    train_epoch(model, sgd, train, 16, order);
    std::vector<float> weights;
    for (const Parameter& p : model.parameters()) {
      weights.insert(weights.end(), p.values.begin(), p.values.end());
    }
    return weights;
  };
  EXPECT_EQ(run(), run());
}

TEST(Training, AccumulationRunsThroughTheLoopAndFlushes) {
  const Dataset train = make_pattern_dataset({.count = 100, .seed = 3});  // 7 batches of 16
  Sequential model = make_small_cnn(28, kPatternClasses);
  model.initialize(4);
  Sgd sgd(model.parameters(), {.learning_rate = 0.02f, .accumulation_steps = 2});
  std::mt19937_64 order(5);
  int64_t calls = 0;
  const EpochResult result =
      train_epoch(model, sgd, train, 16, order, [&calls](int64_t done, int64_t total, double loss) {
        ++calls;
        EXPECT_LE(done, total);
        EXPECT_TRUE(std::isfinite(loss));
      });
  EXPECT_EQ(calls, 7);
  EXPECT_EQ(result.images, 100);
  EXPECT_EQ(sgd.pending_micro_batches(), 0);  // the 7th micro-batch was flushed
  for (const Parameter& p : model.parameters()) {
    for (float g : p.gradients) ASSERT_EQ(g, 0.0f) << p.name;
  }
}

}  // namespace
}  // namespace convgemm::nn
