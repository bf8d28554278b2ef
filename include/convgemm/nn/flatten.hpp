#pragma once
// Flatten: [N, d1, d2, ...] -> [N, d1*d2*...] (row-major, so the values do not move); the
// gradient is reshaped back. The bridge from convolution feature maps to a Dense layer.

#include <string>
#include <string_view>

#include "convgemm/nn/layer.hpp"

namespace convgemm::nn {

class Flatten final : public Layer {
 public:
  std::string_view kind() const override { return "flatten"; }
  std::string describe() const override { return "flatten"; }
  // Needs rank >= 2; throws std::invalid_argument otherwise.
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
};

}  // namespace convgemm::nn
