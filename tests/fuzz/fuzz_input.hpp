#pragma once
// Turns a fuzzer's bytes into shape fields and plan options. Each field takes one byte: most
// bytes give a small value (0..7, where valid problems live), the rest pick from a table of the
// values where index arithmetic breaks (negative, zero, 2^31, 2^40, 2^61 ... 2^63 - 1), so that
// both tiny valid problems and extreme fields are a mutation away. Bytes past the end read as 1.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "convgemm/conv2d.hpp"

namespace convgemm::fuzz {

class FuzzInput {
 public:
  explicit FuzzInput(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  uint8_t byte() { return next_ < bytes_.size() ? bytes_[next_++] : 1; }

  int64_t field() {
    static constexpr int64_t kExtremes[] = {-1,
                                            0,
                                            8,
                                            13,
                                            64,
                                            1000,
                                            int64_t{1} << 31,
                                            (int64_t{1} << 31) - 1,
                                            int64_t{1} << 32,
                                            int64_t{1} << 40,
                                            int64_t{1} << 61,
                                            int64_t{1} << 62,
                                            std::numeric_limits<int64_t>::max(),
                                            std::numeric_limits<int64_t>::max() - 1,
                                            std::numeric_limits<int64_t>::min(),
                                            -(int64_t{1} << 40)};
    const uint8_t b = byte();
    if (b < 0xC0) return b & 7;
    return kExtremes[(b - 0xC0) % (sizeof(kExtremes) / sizeof(kExtremes[0]))];
  }

  // Threads 1..3, the column block and the workspace cap either default or a power of two
  // (small ones shrink blocks, tiny ones are refused by name).
  Conv2dOptions options() {
    Conv2dOptions o;
    o.num_threads = 1 + byte() % 3;
    const uint8_t block = byte(), limit = byte();
    if (block & 0x80) o.block_bytes = std::size_t{1} << (block % 26);
    if (limit & 0x80) o.workspace_limit = std::size_t{1} << (limit % 30);
    return o;
  }

 private:
  std::span<const uint8_t> bytes_;
  std::size_t next_ = 0;
};

// The fields Conv2dShape and ConvTranspose2dShape share, in their declaration order.
template <class Shape>
void read_shared_fields(FuzzInput& in, Shape& s) {
  for (int64_t* field :
       {&s.batch, &s.in_channels, &s.in_height, &s.in_width, &s.out_channels, &s.kernel_height,
        &s.kernel_width, &s.stride_height, &s.stride_width, &s.pad_top, &s.pad_bottom, &s.pad_left,
        &s.pad_right, &s.dilation_height, &s.dilation_width, &s.groups}) {
    *field = in.field();
  }
}

// Small enough to allocate every tensor and to run naive:: many times a second.
inline bool is_tiny(int64_t input, int64_t weights, int64_t output, double flops) {
  constexpr int64_t kMaxElements = 4096;
  return input <= kMaxElements && weights <= kMaxElements && output <= kMaxElements && flops <= 4e5;
}

}  // namespace convgemm::fuzz
