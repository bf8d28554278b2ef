#pragma once
// Max and average pooling over the spatial axes of NCHW tensors, PyTorch's max_pool2d and
// avg_pool2d with ceil_mode=False and dilation 1.
//
// Output size per axis: out = floor((in + 2*pad - kernel) / stride) + 1.
// Padding (both sides of an axis) acts as -inf for max pooling; for average pooling it is zero and
// count_include_pad decides the divisor: kernel_height*kernel_width (true, PyTorch's default) or
// the number of window taps inside the input (false). As in PyTorch, padding is at most half the
// kernel, so every window holds at least one input pixel.
// Max pooling's argmax convention is PyTorch's: the first maximum in row-major window order wins
// (ties send the whole gradient to it); a NaN in the window is the maximum.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "convgemm/nn/layer.hpp"

namespace convgemm::nn {

struct Pool2dShape {
  int64_t batch = 1, channels = 1, in_height = 1, in_width = 1;
  int64_t kernel_height = 1, kernel_width = 1;
  int64_t stride_height = 1, stride_width = 1;
  int64_t pad_height = 0, pad_width = 0;  // on both sides of the axis

  int64_t out_height() const {
    return (in_height + 2 * pad_height - kernel_height) / stride_height + 1;
  }
  int64_t out_width() const { return (in_width + 2 * pad_width - kernel_width) / stride_width + 1; }
  int64_t input_elements() const { return batch * channels * in_height * in_width; }
  int64_t output_elements() const { return batch * channels * out_height() * out_width(); }

  // Throws std::invalid_argument naming the first bad field and its value: sizes below 1, padding
  // below 0 or above half the kernel, a kernel larger than the padded input, an element count
  // beyond int64_t, a plane (in_height*in_width) beyond int32_t (argmax indices are int32_t).
  void validate() const;
  // "n8_c16_h24w24_k2x2_s2x2_p0x0"
  std::string to_string() const;
};

Window2d window_of(const Pool2dShape& shape);

// Kernels for float (the layers) and double (gradient checks); they validate the shape and the
// pointers. argmax [N, C, OH, OW] holds, per output, the index ih*in_width + iw of the input pixel
// it took. Backward overwrites dx.
template <class T>
void max_pool2d_forward(const Pool2dShape& shape, const T* x, T* y, int32_t* argmax);
template <class T>
void max_pool2d_backward(const Pool2dShape& shape, const int32_t* argmax, const T* dy, T* dx);
template <class T>
void avg_pool2d_forward(const Pool2dShape& shape, bool count_include_pad, const T* x, T* y);
template <class T>
void avg_pool2d_backward(const Pool2dShape& shape, bool count_include_pad, const T* dy, T* dx);

class MaxPool2d final : public Layer {
 public:
  // Square window; stride 0 means stride = kernel_size (PyTorch's default).
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  // The window of `geometry`; its batch, channels and input sizes are ignored.
  explicit MaxPool2d(const Pool2dShape& geometry);

  std::string_view kind() const override { return "maxpool2d"; }
  std::string describe() const override;
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::optional<Window2d> window() const override { return window_of(geometry_); }

 private:
  Pool2dShape geometry_;
  Pool2dShape last_shape_;  // of the last forward, which argmax_ belongs to
  std::vector<int32_t> argmax_;
};

class AvgPool2d final : public Layer {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0,
                     bool count_include_pad = true);
  explicit AvgPool2d(const Pool2dShape& geometry, bool count_include_pad = true);

  std::string_view kind() const override { return "avgpool2d"; }
  std::string describe() const override;
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::optional<Window2d> window() const override { return window_of(geometry_); }

 private:
  Pool2dShape geometry_;
  bool count_include_pad_ = true;
};

}  // namespace convgemm::nn
