#pragma once
// The layer interface shared by every layer of the library and by Sequential.
//
// The lifecycle is Caffe's: forward(x, y), then backward(x, y, dy, dx) with the same x and y, so
// a layer keeps no copy of its input (Sequential owns the activations). Layers resize their
// outputs and keep their scratch between calls: at a fixed input shape nothing allocates.
// A layer is not thread-safe: one model per calling thread.

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "convgemm/nn/parameter.hpp"
#include "convgemm/nn/receptive_field.hpp"
#include "convgemm/nn/tensor.hpp"

namespace convgemm::nn {

class Layer {
 public:
  virtual ~Layer() = default;

  // Short lower-case name, e.g. "conv2d"; part of parameter names and checkpoints.
  virtual std::string_view kind() const = 0;
  // One line for summaries, e.g. "conv2d(1->8, 5x5, stride 1x1, pad 0.0.0.0)".
  virtual std::string describe() const = 0;

  // Output shape for an input of this shape. Throws std::invalid_argument, naming the layer, the
  // offending dimension and its value, when the layer cannot take such an input.
  virtual std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const = 0;

  // y = layer(x); y is resized (no allocation at a shape it already had) and overwritten.
  // Throws std::invalid_argument before writing anything when x has the wrong shape.
  virtual void forward(const Tensor& x, Tensor& y) = 0;

  // Gradients of the last forward(x, y): adds dL/dparameters to the parameter gradients
  // (accumulating, so that micro-batches sum; Sgd zeros them), and, when dx is not null,
  // resizes dx to x's shape and overwrites it with dL/dx. dy must have y's shape.
  virtual void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) = 0;

  // Views of the parameters, named by role ("weight", "bias"); empty for parameter-free layers.
  virtual std::vector<Parameter> parameters() { return {}; }

  // Draws fresh parameters from rng (He-uniform weights, zero biases); no-op without parameters.
  virtual void reset_parameters(std::mt19937_64& /*rng*/) {}

  // The sliding window over the two spatial axes, for receptive_field(); pointwise layers have
  // the 1x1 identity window, layers that mix all positions (flatten, dense) have none.
  virtual std::optional<Window2d> window() const { return std::nullopt; }
};

}  // namespace convgemm::nn
