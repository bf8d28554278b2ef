// Data sets: the IDX reader and writer (round trip, bad magic, truncation, wrong dimensions) and
// the generated pattern set (reproducible, balanced, drawn where it should be).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>

#include "convgemm/nn/data.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

class Idx : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = fs::temp_directory_path() /
                 ("convgemm_nn_idx_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(directory_);
  }
  void TearDown() override { fs::remove_all(directory_); }
  fs::path path(const char* name) const { return directory_ / name; }
  void write_bytes(const char* name, const std::vector<uint8_t>& bytes) const {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  fs::path directory_;
};

// A hand-written 2-image 2x3 IDX file, big-endian header as in the MNIST distribution.
const std::vector<uint8_t> kTinyImages = {0, 0, 8, 3,  0,   0,   0,   2,   0, 0, 0, 2, 0, 0,
                                          0, 3, 0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6};
const std::vector<uint8_t> kTinyLabels = {0, 0, 8, 1, 0, 0, 0, 2, 7, 3};

TEST_F(Idx, ReadsAHandWrittenFileAndRoundTrips) {
  write_bytes("images", kTinyImages);
  const IdxArray images = read_idx(path("images"));
  EXPECT_EQ(images.dims, (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(images.data, std::vector<uint8_t>(kTinyImages.begin() + 16, kTinyImages.end()));
  write_idx(path("copy"), images.dims, images.data);
  std::ifstream in(path("copy"), std::ios::binary);
  EXPECT_EQ(std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {}), kTinyImages);

  write_bytes("labels", kTinyLabels);
  const Dataset data = load_mnist(path("images"), path("labels"));
  EXPECT_EQ(data.size(), 2);
  EXPECT_EQ(data.height, 2);
  EXPECT_EQ(data.width, 3);
  EXPECT_EQ(data.classes, 10);
  EXPECT_EQ(data.labels, (std::vector<int32_t>{7, 3}));
  EXPECT_FLOAT_EQ(data.images[1], 0.2f);
  EXPECT_FLOAT_EQ(data.images[5], 1.0f);
}

TEST_F(Idx, RejectsBadMagic) {
  std::vector<uint8_t> bad = kTinyImages;
  bad[0] = 1;
  write_bytes("bad", bad);
  EXPECT_THAT([&] { read_idx(path("bad")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("bad magic 0x01000803")));
  bad = kTinyImages;
  bad[2] = 0x0d;  // float data
  write_bytes("float", bad);
  EXPECT_THAT([&] { read_idx(path("float")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("is not unsigned byte")));
  write_bytes("gz", {0x1f, 0x8b, 8, 0, 0, 0});
  EXPECT_THAT([&] { read_idx(path("gz")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("gzip-compressed")));
}

TEST_F(Idx, RejectsTruncatedFiles) {
  write_bytes("short", {0, 0});
  EXPECT_THAT([&] { read_idx(path("short")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("truncated")));
  write_bytes("header", std::vector<uint8_t>(kTinyImages.begin(), kTinyImages.begin() + 10));
  EXPECT_THAT(
      [&] { read_idx(path("header")); },
      ThrowsMessage<std::runtime_error>(HasSubstr("truncated: the header of 3 dimensions")));
  write_bytes("data", std::vector<uint8_t>(kTinyImages.begin(), kTinyImages.end() - 1));
  EXPECT_THAT([&] { read_idx(path("data")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("need 12 data bytes, the file has 11")));
  std::vector<uint8_t> longer = kTinyImages;
  longer.push_back(0);
  write_bytes("long", longer);
  EXPECT_THAT([&] { read_idx(path("long")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("trailing bytes")));
  EXPECT_THAT([&] { read_idx(path("missing")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("cannot open")));
}

TEST_F(Idx, RejectsWrongDimensionsForMnist) {
  write_bytes("images", kTinyImages);
  write_bytes("labels", kTinyLabels);
  EXPECT_THAT([&] { load_mnist(path("labels"), path("labels")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("images need 3 dimensions")));
  EXPECT_THAT([&] { load_mnist(path("images"), path("images")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("labels need 1 dimension")));
  write_bytes("three", {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3});
  EXPECT_THAT([&] { load_mnist(path("images"), path("three")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("has 3 labels for 2 images")));
  write_bytes("eleven", {0, 0, 8, 1, 0, 0, 0, 2, 1, 11});
  EXPECT_THAT([&] { load_mnist(path("images"), path("eleven")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("label 1 is 11")));
  std::vector<uint8_t> zero = kTinyImages;
  zero[11] = 0;  // second dimension 0
  write_bytes("zero", zero);
  EXPECT_THAT([&] { read_idx(path("zero")); },
              ThrowsMessage<std::runtime_error>(HasSubstr("dimension 1 is 0")));
}

TEST(Patterns, AreReproducibleAndBalanced) {
  const PatternOptions options{.count = 60, .image_size = 28, .noise = 0.25f, .seed = 5};
  const Dataset a = make_pattern_dataset(options), b = make_pattern_dataset(options);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.classes, kPatternClasses);
  EXPECT_EQ(a.image_elements(), 28 * 28);
  std::vector<int> counts(kPatternClasses, 0);
  for (int32_t label : a.labels) ++counts[std::size_t(label)];
  EXPECT_EQ(counts, std::vector<int>(kPatternClasses, 10));
  PatternOptions other = options;
  other.seed = 6;
  EXPECT_NE(make_pattern_dataset(other).images, a.images);
  EXPECT_EQ(pattern_name(5), "circle");
}

TEST(Patterns, DrawTheirStrokesWithoutNoise) {
  // Noise off: each image holds one pattern, lit somewhere, never beyond 1, and
  // nothing on the outermost pixel ring (strokes keep 2 pixels inside, their soft edge reaches
  // 1.6). Lines are a thin band: a horizontal one lights at most 4 rows, a vertical 4 columns.
  const Dataset data =
      make_pattern_dataset({.count = 120, .image_size = 28, .noise = 0.0f, .seed = 9});
  for (int64_t i = 0; i < data.size(); ++i) {
    const std::span<const float> image = data.image(i);
    float brightest = 0;
    std::vector<int> rows(28, 0), cols(28, 0);
    for (int64_t r = 0; r < 28; ++r) {
      for (int64_t c = 0; c < 28; ++c) {
        const float v = image[std::size_t(r * 28 + c)];
        ASSERT_GE(v, 0.0f);
        ASSERT_LE(v, 1.0f);
        brightest = std::max(brightest, v);
        if (v > 0.0f) {
          rows[std::size_t(r)] = cols[std::size_t(c)] = 1;
          ASSERT_TRUE(r >= 1 && r <= 26 && c >= 1 && c <= 26)
              << "image " << i << " at " << r << "," << c;
        }
      }
    }
    // Every stroke point lies within sqrt(2)/2 of a pixel centre, so with thickness >= 1 that
    // pixel's coverage is >= 1 - 0.7072, times an intensity >= 0.6.
    EXPECT_GE(brightest, 0.6f * (1.0f - 0.7072f)) << "image " << i;
    const int lit_rows = std::accumulate(rows.begin(), rows.end(), 0);
    const int lit_cols = std::accumulate(cols.begin(), cols.end(), 0);
    const auto kind = Pattern(data.labels[std::size_t(i)]);
    if (kind == Pattern::horizontal_line) {
      EXPECT_LE(lit_rows, 4) << "image " << i;
    }
    if (kind == Pattern::vertical_line) {
      EXPECT_LE(lit_cols, 4) << "image " << i;
    }
  }
  EXPECT_THAT([] { make_pattern_dataset({.count = 0}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("count must be >= 1 (got 0)")));
  EXPECT_THAT([] { make_pattern_dataset({.image_size = 8}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("image_size must be >= 16 (got 8)")));
}

}  // namespace
}  // namespace convgemm::nn
