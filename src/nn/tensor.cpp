#include "convgemm/nn/tensor.hpp"

#include <algorithm>

#include "check.hpp"

namespace convgemm::nn {

int64_t element_count(std::span<const int64_t> shape, const char* what) {
  int64_t count = 1;
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] < 0) {
      detail::fail_shape("tensor", what, shape, "must have no negative dimension");
    }
    count = detail::checked_mul(count, shape[axis], what);
  }
  return count;
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::string text = "[";
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(shape[axis]);
  }
  text += "]";
  return text;
}

Tensor::Tensor(std::span<const int64_t> shape, float fill_value) {
  resize(shape);
  fill(fill_value);
}

Tensor::Tensor(std::initializer_list<int64_t> shape, float fill_value)
    : Tensor(std::span(shape.begin(), shape.size()), fill_value) {}

void Tensor::resize(std::span<const int64_t> shape) {
  const int64_t count = element_count(shape);
  shape_.assign(shape.begin(), shape.end());  // reuses the capacity: no allocation at a known rank
  values_.resize(static_cast<std::size_t>(count));
}

void Tensor::fill(float value) { std::fill(values_.begin(), values_.end(), value); }

}  // namespace convgemm::nn
