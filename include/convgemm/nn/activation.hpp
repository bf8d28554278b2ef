#pragma once
// ReLU: y = max(x, 0) elementwise, any shape. Its gradient passes dy where y > 0 and is zero
// elsewhere (zero at x = 0, as in PyTorch); NaN inputs propagate.

#include <cstdint>
#include <string>
#include <string_view>

#include "convgemm/nn/layer.hpp"

namespace convgemm::nn {

// The kernels, for float (the layer) and double (gradient checks). `count` elements each.
// y may alias x and dx may alias dy. Throw std::invalid_argument on a negative count or a null
// pointer with count > 0.
template <class T>
void relu_forward(int64_t count, const T* x, T* y);
template <class T>
void relu_backward(int64_t count, const T* y, const T* dy, T* dx);  // dx overwritten

class ReLU final : public Layer {
 public:
  std::string_view kind() const override { return "relu"; }
  std::string describe() const override { return "relu"; }
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::optional<Window2d> window() const override { return Window2d{}; }
};

}  // namespace convgemm::nn
