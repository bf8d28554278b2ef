#pragma once
// Labelled image sets for the classifier: a generated set of line patterns, and MNIST-format IDX
// files.

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace convgemm::nn {

// Images [size, channels, height, width] as floats, one int32 label per image.
struct Dataset {
  int64_t channels = 1, height = 0, width = 0;
  int64_t classes = 0;
  std::vector<float> images;
  std::vector<int32_t> labels;

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_elements() const { return channels * height * width; }
  std::span<const float> image(int64_t index) const;
};

// --- Generated patterns ------------------------------------------------------------------------
// One class per kind of stroke pattern a convolution kernel can learn to detect, drawn
// anti-aliased at a random position, length, thickness and brightness over Gaussian noise.
enum class Pattern : int32_t {
  horizontal_line,  // a horizontal segment
  vertical_line,    // a vertical segment
  diagonal_line,    // a 45-degree segment, rising or falling
  corner,           // two perpendicular arms meeting at a vertex, in any of 4 orientations
  cross,            // a '+': a horizontal and a vertical arm crossing
  circle,           // a ring
};
inline constexpr int32_t kPatternClasses = 6;
std::string_view pattern_name(int32_t label);

struct PatternOptions {
  int64_t count = 1000;     // images
  int64_t image_size = 28;  // square, 1 channel, >= 16
  float noise = 0.25f;      // standard deviation of the Gaussian pixel noise, >= 0
  uint64_t seed = 1;
};

// Labels cycle through the classes (balanced), images are independent draws from one
// std::mt19937_64(seed): the same options give the same set. Throws std::invalid_argument
// naming a bad option.
Dataset make_pattern_dataset(const PatternOptions& options);

// --- IDX files (the MNIST distribution format) -------------------------------------------------
// Big-endian: magic 0x0000TTDD (TT = 0x08 unsigned byte, DD = number of dimensions), DD u32
// dimensions, then the data.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads an unsigned-byte IDX file. Throws std::runtime_error naming the path and the problem:
// unreadable, too short for its header, a bad magic (a gzip file is recognised and named), a
// type other than unsigned byte, a zero dimension, data shorter or longer than the dimensions
// say.
IdxArray read_idx(const std::filesystem::path& path);
// Writes an unsigned-byte IDX file (tests, conversions). Throws std::invalid_argument when the
// data size is not the product of dims, std::runtime_error when the file cannot be written.
void write_idx(const std::filesystem::path& path, std::span<const int64_t> dims,
               std::span<const uint8_t> data);

// An MNIST pair: images [count, rows, cols] and labels [count] (values < 10), scaled to [0, 1].
// Throws std::runtime_error naming the file when its rank is wrong, a label is >= 10, or the two
// counts differ.
Dataset load_mnist(const std::filesystem::path& images_path,
                   const std::filesystem::path& labels_path);

}  // namespace convgemm::nn
