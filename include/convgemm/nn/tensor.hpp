#pragma once
// A small owning float tensor for the layers: a shape (row-major, NCHW for images) and its values.
//
// Resizing keeps the allocation: a layer that resizes its output to the shape it had on the
// previous call (the steady state of a training loop) does not allocate. Values are left
// unspecified by resize(); the layer that resizes a tensor writes all of it.

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace convgemm::nn {

class Tensor {
 public:
  Tensor() = default;
  // Throws std::invalid_argument on a negative dimension or an element count beyond int64_t.
  explicit Tensor(std::span<const int64_t> shape, float fill = 0.0f);
  Tensor(std::initializer_list<int64_t> shape, float fill = 0.0f);

  // Gives the tensor this shape; no allocation unless the element count outgrows the capacity.
  // The values are unspecified afterwards. Throws like the constructor.
  void resize(std::span<const int64_t> shape);
  void resize(std::initializer_list<int64_t> shape) {
    resize(std::span(shape.begin(), shape.size()));
  }

  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int axis) const { return shape_[static_cast<std::size_t>(axis)]; }
  int64_t size() const { return static_cast<int64_t>(values_.size()); }

  float* data() { return values_.data(); }
  const float* data() const { return values_.data(); }
  std::span<float> values() { return values_; }
  std::span<const float> values() const { return values_; }
  float& operator[](int64_t i) { return values_[static_cast<std::size_t>(i)]; }
  float operator[](int64_t i) const { return values_[static_cast<std::size_t>(i)]; }

  void fill(float value);

 private:
  std::vector<int64_t> shape_;
  std::vector<float> values_;
};

// "[64, 1, 28, 28]": the form every shape takes in an error message.
std::string shape_to_string(std::span<const int64_t> shape);

// Product of the dimensions; throws std::invalid_argument naming `what` on a negative dimension
// or an overflow of int64_t.
int64_t element_count(std::span<const int64_t> shape, const char* what = "tensor shape");

}  // namespace convgemm::nn
