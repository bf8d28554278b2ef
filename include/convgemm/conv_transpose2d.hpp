#pragma once
// Transposed convolution (PyTorch's conv_transpose2d), built on the convolution's kernels.
//
// A transposed convolution is the adjoint of a convolution that maps its output back to its
// input: its forward is that convolution's backward_data, its input gradient is that
// convolution's forward, its weight gradient is backward_weights with input and output swapped.
//
// Layouts (contiguous float32), chosen by `layout`:
//   nchw  x [N, C, H, W]   w [C, O/G, KH, KW] (PyTorch's transposed layout)   y [N, O, OH, OW]
//   nhwc  x [N, H, W, C]   w [C, KH, KW, O/G]                                 y [N, OH, OW, O]
//   bias [O] either way.
// Output size per axis:
//   out = (in - 1) * stride - pad_begin - pad_end + dilation * (kernel - 1) + output_padding + 1
// output_padding only adds rows/columns at the bottom/right; it must be smaller than the stride
// or than the dilation of its axis, as PyTorch requires.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "convgemm/conv2d.hpp"
#include "convgemm/shape.hpp"

namespace convgemm {

struct ConvTranspose2dShape {
  int64_t batch = 1, in_channels = 1, in_height = 1, in_width = 1;
  int64_t out_channels = 1, kernel_height = 1, kernel_width = 1;
  int64_t stride_height = 1, stride_width = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t output_padding_height = 0, output_padding_width = 0;
  int64_t dilation_height = 1, dilation_width = 1;
  int64_t groups = 1;
  Layout layout = Layout::nchw;

  int64_t out_height() const;
  int64_t out_width() const;

  int64_t input_elements() const { return batch * in_channels * in_height * in_width; }
  int64_t weight_elements() const;
  int64_t output_elements() const { return batch * out_channels * out_height() * out_width(); }

  // The convolution this one is the transpose of: its input is our output, its output our
  // input, its OIHW weight tensor is our weight tensor as stored. Its pad_bottom/pad_right
  // absorb output_padding and may be negative (that only trims taps no output reads); it is
  // meant for the library's kernels, not for Conv2dShape::validate().
  Conv2dShape as_convolution() const;

  // Throws std::invalid_argument naming the field: as Conv2dShape::validate(), plus
  // output_padding that is negative or not smaller than stride or dilation.
  void validate() const;
  std::string to_string() const;

  friend bool operator==(const ConvTranspose2dShape&, const ConvTranspose2dShape&) = default;
};

// The plan, as Conv2d: validates and allocates once, runs any number of times; one per thread.
class ConvTranspose2d {
 public:
  explicit ConvTranspose2d(const ConvTranspose2dShape& shape, const Conv2dOptions& options = {});
  ~ConvTranspose2d();
  ConvTranspose2d(ConvTranspose2d&&) noexcept;
  ConvTranspose2d& operator=(ConvTranspose2d&&) noexcept;
  ConvTranspose2d(const ConvTranspose2d&) = delete;
  ConvTranspose2d& operator=(const ConvTranspose2d&) = delete;

  // y = conv_transpose(x, w) (+ bias), overwriting y.
  void forward(const float* x, const float* w, const float* bias, float* y);
  // dx = dL/dx for dy = dL/dy: overwrites dx, or adds with accumulate_gradients.
  void backward_data(const float* dy, const float* w, float* dx);
  // dw, dbias (nullable) as Conv2d::backward_weights, bitwise reproducible across threads.
  void backward_weights(const float* x, const float* dy, float* dw, float* dbias);

  const ConvTranspose2dShape& shape() const;
  std::size_t workspace_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, const float* w,
                              const float* bias, float* y);
void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const float* dy,
                                    const float* w, float* dx);
void conv_transpose2d_backward_weights(const ConvTranspose2dShape& shape, const float* x,
                                       const float* dy, float* dw, float* dbias);

}  // namespace convgemm
