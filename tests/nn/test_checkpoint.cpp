// Checkpoints: bit-exact round trip, rejection of truncated, corrupted and mismatched files with
// the model left untouched, and the temporary-file-then-rename protocol.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <fstream>

#include "convgemm/nn/checkpoint.hpp"
#include "convgemm/nn/conv2d.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/training.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = fs::temp_directory_path() /
                 ("convgemm_nn_checkpoint_" + std::to_string(::getpid()) + "_" +
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
  // Every bit of every parameter equal (memcmp: also NaN payloads and signed zeros).
  static bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }

  fs::path directory_;
};

TEST_F(Checkpoint, RoundTripIsBitExact) {
  Sequential saved = make_small_cnn(28, 6);
  saved.initialize(11);
  // Awkward values too: a NaN payload, -0, infinities, a subnormal.
  std::span<float> bias = saved.parameters()[1].values;
  bias[0] = std::bit_cast<float>(0x7fc01234u);
  bias[1] = -0.0f;
  bias[2] = std::numeric_limits<float>::infinity();
  bias[3] = std::numeric_limits<float>::denorm_min();
  save_checkpoint(saved, path("model.ckpt"));
  Sequential loaded = make_small_cnn(28, 6);
  loaded.initialize(12);
  ASSERT_FALSE(bit_equal(values(saved), values(loaded)));
  load_checkpoint(loaded, path("model.ckpt"));
  EXPECT_TRUE(bit_equal(values(saved), values(loaded)));
  EXPECT_FALSE(fs::exists(path("model.ckpt.tmp")));
}

TEST_F(Checkpoint, FormatStartsWithMagicAndVersion) {
  Sequential model = make_small_cnn(16, 2);
  save_checkpoint(model, path("m"));
  const std::vector<uint8_t> bytes = read(path("m"));
  ASSERT_GT(bytes.size(), 12u);
  EXPECT_EQ(std::memcmp(bytes.data(), "CGNNCKPT", 8), 0);
  EXPECT_EQ(bytes[8], 2);  // version 2, little-endian
  EXPECT_EQ(bytes[9] | bytes[10] | bytes[11], 0);
  // The payload is the parameters' bits, the checksum FNV-1a 64 of everything before it.
  uint64_t stored = 0;
  for (int i = 0; i < 8; ++i)
    stored |= uint64_t(bytes[bytes.size() - 8 + std::size_t(i)]) << (8 * i);
  EXPECT_EQ(stored, fnv1a64(bytes.data(), bytes.size() - 8));
}

TEST_F(Checkpoint, TruncatedFilesAreRejectedAndTheModelIsUntouched) {
  Sequential model = make_small_cnn(28, 6);
  model.initialize(1);
  save_checkpoint(model, path("good"));
  const std::vector<uint8_t> good = read(path("good"));
  Sequential target = make_small_cnn(28, 6);
  target.initialize(2);
  const std::vector<float> before = values(target);
  // Every cut: inside the magic, the header, the payload, the checksum; and the empty file.
  for (std::size_t size : {std::size_t{0}, std::size_t{5}, std::size_t{13}, std::size_t{60},
                           good.size() / 2, good.size() - 9, good.size() - 1}) {
    SCOPED_TRACE("size " + std::to_string(size));
    write(path("cut"), std::vector<uint8_t>(good.begin(), good.begin() + std::ptrdiff_t(size)));
    // Shorter than the magic it cannot be told from another file; past it, the header says how
    // long the file must be.
    EXPECT_THAT([&] { load_checkpoint(target, path("cut")); },
                ThrowsMessage<std::runtime_error>(HasSubstr(size < 8 ? "bad magic" : "truncated")));
    EXPECT_TRUE(bit_equal(values(target), before));
  }
  EXPECT_THAT([&] { load_checkpoint(target, path("missing")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("cannot open")));
}

TEST_F(Checkpoint, CorruptedFilesAreRejectedAndTheModelIsUntouched) {
  Sequential model = make_small_cnn(28, 6);
  model.initialize(1);
  save_checkpoint(model, path("good"));
  const std::vector<uint8_t> good = read(path("good"));
  Sequential target = make_small_cnn(28, 6);
  target.initialize(2);
  const std::vector<float> before = values(target);
  // One flipped bit anywhere (payload, header, checksum) is caught.
  for (std::size_t offset :
       {std::size_t{20}, std::size_t{100}, good.size() / 2, good.size() - 12, good.size() - 3}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    std::vector<uint8_t> bad = good;
    bad[offset] ^= 0x10;
    write(path("bad"), bad);
    EXPECT_THROW(load_checkpoint(target, path("bad")), std::runtime_error);
    EXPECT_TRUE(bit_equal(values(target), before));
  }
  std::vector<uint8_t> payload_flip = good;
  payload_flip[good.size() - 20] ^= 1;
  write(path("bad"), payload_flip);
  EXPECT_THAT([&] { load_checkpoint(target, path("bad")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("checksum mismatch")));
  std::vector<uint8_t> magic = good;
  magic[0] = 'X';
  write(path("bad"), magic);
  EXPECT_THAT([&] { load_checkpoint(target, path("bad")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("bad magic")));
  std::vector<uint8_t> version = good;
  version[8] = 3;
  write(path("bad"), version);
  EXPECT_THAT([&] { load_checkpoint(target, path("bad")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("unsupported version 3")));
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  write(path("bad"), longer);
  EXPECT_THAT([&] { load_checkpoint(target, path("bad")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("trailing bytes")));
  EXPECT_TRUE(bit_equal(values(target), before));
}

TEST_F(Checkpoint, MismatchedArchitecturesAreRejectedAndTheModelIsUntouched) {
  Sequential model = make_small_cnn(28, 6);
  save_checkpoint(model, path("six"));
  Sequential other_classes = make_small_cnn(28, 10);
  other_classes.initialize(3);
  const std::vector<float> before = values(other_classes);
  EXPECT_THAT([&] { load_checkpoint(other_classes, path("six")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr(
                  "parameter 4 is 7.dense.weight [6, 256] in the file, 7.dense.weight [10, 256]")));
  EXPECT_TRUE(bit_equal(values(other_classes), before));
  Sequential wider = make_small_cnn(28, 6, /*c1=*/4);
  EXPECT_THAT([&] { load_checkpoint(wider, path("six")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("0.conv2d.weight [8, 1, 5, 5]")));
  Sequential shorter;
  shorter.emplace<Conv2d>(1, 8, 5);
  EXPECT_THAT([&] { load_checkpoint(shorter, path("six")); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("it has 8 layers, the model 1")));
}

TEST_F(Checkpoint, SavesThroughATemporaryFileAndRenames) {
  Sequential first = make_small_cnn(16, 3), second = make_small_cnn(16, 3);
  first.initialize(1);
  second.initialize(2);
  save_checkpoint(first, path("model"));
  const std::vector<uint8_t> first_bytes = read(path("model"));
  ASSERT_EQ(fs::status(path("model")).type(), fs::file_type::regular);
  // A stale temporary file from an interrupted save is simply replaced.
  write(path("model.tmp"), {1, 2, 3});
  save_checkpoint(second, path("model"));
  EXPECT_FALSE(fs::exists(path("model.tmp")));
  EXPECT_NE(read(path("model")), first_bytes);
  // When the temporary file cannot be created, the target keeps the previous checkpoint whole.
  const std::vector<uint8_t> second_bytes = read(path("model"));
  fs::create_directory(path("model.tmp"));  // a directory where the temporary file would go
  EXPECT_THAT([&] { save_checkpoint(first, path("model")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("model.tmp")));
  EXPECT_EQ(read(path("model")), second_bytes);
  Sequential check = make_small_cnn(16, 3);
  load_checkpoint(check, path("model"));
  EXPECT_TRUE(bit_equal(values(check), values(second)));
}

}  // namespace
}  // namespace convgemm::nn
