#pragma once
// Receptive fields of a stack of sliding-window layers (convolutions, pooling, pointwise layers).
//
// Per axis, a layer with kernel k, stride s, leading padding p and dilation d spans
// k_eff = d*(k-1)+1 of its input. Walking the stack from the input, with r the field size, j the
// jump (input pixels between neighbouring outputs) and a the first input row of output 0:
//   r' = r + (k_eff - 1) * j,    j' = j * s,    a' = a - p * j       (r = j = 1, a = 0 at the
//   input)
// Output index i of the last layer then reads input rows [a + i*j, a + i*j + r - 1]: the rows of
// that range inside [0, in) are exactly the pixels it depends on (negative ones are padding).

#include <cstdint>
#include <span>
#include <string>

#include "convgemm/shape.hpp"

namespace convgemm::nn {

// One axis of a sliding window: kernel taps, stride, padding before the first row, dilation.
struct WindowAxis {
  int64_t kernel = 1, stride = 1, pad_begin = 0, dilation = 1;
};

struct Window2d {
  WindowAxis height, width;
};

// The window of a convolution (its batch, channel and input sizes play no part).
Window2d window_of(const Conv2dShape& shape);

struct ReceptiveFieldAxis {
  int64_t size = 1;   // input pixels one output spans, r
  int64_t jump = 1;   // input pixels between neighbouring outputs, j (the total stride)
  int64_t start = 0;  // first input pixel of output 0, a (negative: it starts in the padding)
};

struct ReceptiveField {
  ReceptiveFieldAxis height, width;
  std::string to_string() const;  // "size 9x9, jump 1x1, start -2,-2"
};

// Folds the recurrence above over `stack`, first layer first. An empty stack is the identity
// (size 1, jump 1, start 0). Throws std::invalid_argument naming the layer index and field on a
// kernel, stride or dilation below 1, a negative padding, or a size that overflows int64_t.
//
// Example: two stacked 5x5 convolutions, stride 1, no padding:
//   Window2d five{{5, 1, 0, 1}, {5, 1, 0, 1}};
//   receptive_field(std::array{five, five}).height.size == 9
ReceptiveField receptive_field(std::span<const Window2d> stack);

}  // namespace convgemm::nn
