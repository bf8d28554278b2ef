// Checkpoints that resume training exactly: parameters, the Sgd's momentum buffers and update
// count, and the training progress survive a save and load bit for bit, so "n steps, save, load,
// m steps" equals "n + m steps"; a file that does not fit (another architecture, another
// optimizer, a corrupt byte, a version-1 file) is refused with the model and the Sgd unchanged.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>

#include "convgemm/nn/checkpoint.hpp"
#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/nn/training.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

constexpr SgdOptions kMomentum{.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f};
const TrainingProgress kProgress{.epochs_done = 3,
                                 .order_seed = 17,
                                 .order_draws = 12345,
                                 .base_learning_rate = 0.05f,
                                 .learning_rate_decay = 0.5f};

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = fs::temp_directory_path() /
                 ("convgemm_nn_resume_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(directory_);
    fs::create_directories(directory_);
  }
  void TearDown() override { fs::remove_all(directory_); }
  fs::path path(const char* name) const { return directory_ / name; }

  static std::vector<uint8_t> read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void write(const fs::path& p, const std::vector<uint8_t>& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  static std::vector<float> values(Sequential& model) {
    std::vector<float> all;
    for (const Parameter& p : model.parameters())
      all.insert(all.end(), p.values.begin(), p.values.end());
    return all;
  }
  static bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }
  // `steps` SGD steps on seeded random batches; step s always sees the same batch.
  static void train(Sequential& model, Sgd& sgd, int first, int steps) {
    SoftmaxCrossEntropy loss;
    Tensor images, dlogits;
    for (int s = first; s < first + steps; ++s) {
      std::mt19937_64 rng(testing::kSeed + uint64_t(s));
      images.resize({4, 1, 16, 16});
      const std::vector<float> pixels = testing::random_vector<float>(rng, 4 * 16 * 16);
      std::copy(pixels.begin(), pixels.end(), images.data());
      const std::vector<int32_t> labels{0, 1, 2, int32_t(s % 3)};
      loss.forward(model.forward(images), labels);
      loss.backward(dlogits);
      model.backward(dlogits);
      sgd.step();
    }
  }
  static Sequential model(uint64_t seed) {
    Sequential m = make_small_cnn(16, 3, 2, 3, /*conv_threads=*/1);
    m.initialize(seed);
    return m;
  }

  fs::path directory_;
};

TEST_F(Resume, StepsSaveLoadStepsEqualsStraightSteps) {
  Sequential straight = model(1);
  Sgd straight_sgd(straight.parameters(), kMomentum);
  train(straight, straight_sgd, 0, 6);

  Sequential first = model(1);
  Sgd first_sgd(first.parameters(), kMomentum);
  train(first, first_sgd, 0, 3);
  save_checkpoint(first, first_sgd, kProgress, path("half"));
  EXPECT_FALSE(fs::exists(path("half.tmp")));

  // Other initial weights and a fresh Sgd (zero momentum, other learning rate): all overwritten.
  Sequential resumed = model(2);
  Sgd resumed_sgd(resumed.parameters(), {.learning_rate = 0.01f,
                                         .momentum = kMomentum.momentum,
                                         .weight_decay = kMomentum.weight_decay});
  const TrainingProgress progress = load_checkpoint(resumed, resumed_sgd, path("half"));
  EXPECT_EQ(progress.epochs_done, kProgress.epochs_done);
  EXPECT_EQ(progress.order_seed, kProgress.order_seed);
  EXPECT_EQ(progress.order_draws, kProgress.order_draws);
  EXPECT_EQ(progress.base_learning_rate, kProgress.base_learning_rate);
  EXPECT_EQ(progress.learning_rate_decay, kProgress.learning_rate_decay);
  EXPECT_EQ(resumed_sgd.updates(), 3);
  EXPECT_EQ(resumed_sgd.options().learning_rate, kMomentum.learning_rate);
  train(resumed, resumed_sgd, 3, 3);
  EXPECT_TRUE(bit_equal(values(resumed), values(straight)));
  EXPECT_EQ(resumed_sgd.updates(), straight_sgd.updates());

  // And the whole state agrees: the two final checkpoints are the same bytes.
  save_checkpoint(straight, straight_sgd, kProgress, path("straight"));
  save_checkpoint(resumed, resumed_sgd, kProgress, path("resumed"));
  EXPECT_EQ(read(path("straight")), read(path("resumed")));
}

TEST_F(Resume, WithoutTheMomentumBuffersTheTrajectoryDiffers) {
  // The trust check of the test above: restarting momentum from zero changes the bits.
  Sequential straight = model(1);
  Sgd straight_sgd(straight.parameters(), kMomentum);
  train(straight, straight_sgd, 0, 6);
  Sequential first = model(1);
  Sgd first_sgd(first.parameters(), kMomentum);
  train(first, first_sgd, 0, 3);
  save_checkpoint(first, path("parameters_only"));
  Sequential resumed = model(2);
  Sgd resumed_sgd(resumed.parameters(), kMomentum);
  load_checkpoint(resumed, path("parameters_only"));
  train(resumed, resumed_sgd, 3, 3);
  EXPECT_FALSE(bit_equal(values(resumed), values(straight)));
}

TEST_F(Resume, RefusedFilesChangeNeitherModelNorSgd) {
  Sequential source = model(1);
  Sgd source_sgd(source.parameters(), kMomentum);
  train(source, source_sgd, 0, 2);
  save_checkpoint(source, source_sgd, kProgress, path("good"));
  const std::vector<uint8_t> good = read(path("good"));

  Sequential target = model(2);
  Sgd target_sgd(target.parameters(), kMomentum);
  train(target, target_sgd, 0, 1);
  const std::vector<float> before = values(target);
  const SgdState sgd_before = target_sgd.state();
  auto unchanged = [&] {
    const SgdState now = target_sgd.state();
    return bit_equal(values(target), before) && now.updates == sgd_before.updates &&
           bit_equal(now.velocity, sgd_before.velocity) &&
           now.options.learning_rate == sgd_before.options.learning_rate;
  };

  // A flipped bit in the momentum buffers (the file's last floats) or in the training state.
  for (std::size_t offset : {good.size() - 12, good.size() / 2, std::size_t{150}}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    std::vector<uint8_t> bad = good;
    bad[offset] ^= 0x04;
    write(path("bad"), bad);
    EXPECT_THROW(load_checkpoint(target, target_sgd, path("bad")), std::runtime_error);
    EXPECT_TRUE(unchanged());
  }
  // Cut short.
  write(path("cut"), std::vector<uint8_t>(good.begin(), good.end() - 100));
  EXPECT_THAT([&] { load_checkpoint(target, target_sgd, path("cut")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("truncated")));
  EXPECT_TRUE(unchanged());
  // Another architecture.
  Sequential wider = make_small_cnn(16, 3, 3, 3);
  Sgd wider_sgd(wider.parameters(), kMomentum);
  save_checkpoint(wider, wider_sgd, kProgress, path("wider"));
  EXPECT_THAT([&] { load_checkpoint(target, target_sgd, path("wider")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("0.conv2d.weight [3, 1, 5, 5]")));
  EXPECT_TRUE(unchanged());
  // Another optimizer: the file's momentum is 0.9, this Sgd's 0.5.
  Sequential other = model(3);
  Sgd other_sgd(other.parameters(), {.learning_rate = 0.05f, .momentum = 0.5f});
  const std::vector<float> other_before = values(other);
  EXPECT_THAT([&] { load_checkpoint(other, other_sgd, path("good")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("restored sgd momentum (0.9")));
  EXPECT_TRUE(bit_equal(values(other), other_before));
  EXPECT_EQ(other_sgd.updates(), 0);
  // Parameters only: it can initialise a model, not resume.
  save_checkpoint(source, path("parameters_only"));
  EXPECT_THAT([&] { load_checkpoint(target, target_sgd, path("parameters_only")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("holds parameters only")));
  EXPECT_TRUE(unchanged());
}

TEST_F(Resume, VersionOneFilesLoadParametersAndRefuseToResume) {
  // A version-1 file is today's parameters-only file without the contents word, version 1, and
  // its own checksum.
  Sequential source = model(1);
  save_checkpoint(source, path("v2"));
  std::vector<uint8_t> bytes = read(path("v2"));
  const std::size_t value_bytes = values(source).size() * sizeof(float);
  const std::size_t contents_at = bytes.size() - 8 - value_bytes - 4;
  ASSERT_EQ(bytes[contents_at] | bytes[contents_at + 1] | bytes[contents_at + 2], 0);
  bytes.erase(bytes.begin() + std::ptrdiff_t(contents_at),
              bytes.begin() + std::ptrdiff_t(contents_at + 4));
  bytes[8] = 1;
  bytes.resize(bytes.size() - 8);
  const uint64_t checksum = fnv1a64(bytes.data(), bytes.size());
  for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(checksum >> (8 * i)));
  write(path("v1"), bytes);

  Sequential target = model(2);
  Sgd target_sgd(target.parameters(), kMomentum);
  const std::vector<float> before = values(target);
  EXPECT_THAT([&] { load_checkpoint(target, target_sgd, path("v1")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("version 1 holds parameters only")));
  EXPECT_TRUE(bit_equal(values(target), before));
  load_checkpoint(target, path("v1"));
  EXPECT_TRUE(bit_equal(values(target), values(source)));
}

TEST_F(Resume, SavingRefusesPendingMicroBatchesAndForeignOptimizers) {
  Sequential m = model(1);
  Sgd accumulating(m.parameters(), {.learning_rate = 0.05f, .accumulation_steps = 2});
  train(m, accumulating, 0, 1);  // one of two micro-batches: its gradient is not checkpointed
  EXPECT_THAT([&] { save_checkpoint(m, accumulating, kProgress, path("x")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("pending_micro_batches")));
  Sequential other = model(1);
  Sgd foreign(other.parameters(), kMomentum);
  EXPECT_THAT([&] { save_checkpoint(m, foreign, kProgress, path("x")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("sgd must hold the model's")));
  EXPECT_FALSE(fs::exists(path("x")));
}

}  // namespace
}  // namespace convgemm::nn
