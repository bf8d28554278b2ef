#include "convgemm/nn/flatten.hpp"

#include <algorithm>

#include "check.hpp"

namespace convgemm::nn {

std::vector<int64_t> Flatten::output_shape(std::span<const int64_t> input_shape) const {
  if (input_shape.size() < 2) {
    detail::fail_shape("flatten", "input", input_shape, "must have rank >= 2 ([N, ...])");
  }
  return {input_shape[0], element_count(input_shape.subspan(1), "flatten input shape")};
}

void Flatten::forward(const Tensor& x, Tensor& y) {
  if (x.rank() < 2)
    detail::fail_shape("flatten", "input", x.shape(), "must have rank >= 2 ([N, ...])");
  y.resize({x.dim(0), element_count(std::span(x.shape()).subspan(1), "flatten input shape")});
  std::copy(x.values().begin(), x.values().end(), y.values().begin());
}

void Flatten::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("flatten", dy, y);
  if (dx == nullptr) return;
  dx->resize(x.shape());
  std::copy(dy.values().begin(), dy.values().end(), dx->values().begin());
}

}  // namespace convgemm::nn
