#pragma once
// Sequential: layers applied in order, with the activations and their gradients kept between
// forward and backward.
//
// Example (the CNN of examples/train_cnn):
//   nn::Sequential model;
//   model.emplace<nn::Conv2d>(/*in_channels=*/1, /*out_channels=*/8, /*kernel_size=*/5);
//   model.emplace<nn::ReLU>();
//   model.emplace<nn::MaxPool2d>(2);
//   ...
//   model.emplace<nn::Dense>(256, 6);
//   model.initialize(/*seed=*/1);                 // He-uniform, reproducible
//   nn::SoftmaxCrossEntropy loss;
//   nn::Sgd sgd(model.parameters(), {.learning_rate = 0.05f, .momentum = 0.9f});
//   double l = loss.forward(model.forward(images), labels);
//   loss.backward(dlogits);
//   model.backward(dlogits);                      // adds to the parameter gradients
//   sgd.step();                                   // updates, zeros the gradients

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "convgemm/nn/layer.hpp"
#include "convgemm/nn/parameter.hpp"
#include "convgemm/nn/receptive_field.hpp"
#include "convgemm/nn/tensor.hpp"

namespace convgemm::nn {

class Sequential {
 public:
  Sequential() = default;
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;

  // Appends a layer (std::invalid_argument if null) and returns it.
  Layer& add(std::unique_ptr<Layer> layer);
  template <class L, class... Args>
  L& emplace(Args&&... args) {
    return static_cast<L&>(add(std::make_unique<L>(std::forward<Args>(args)...)));
  }

  int64_t size() const { return static_cast<int64_t>(layers_.size()); }
  Layer& layer(int64_t index) { return *layers_.at(static_cast<std::size_t>(index)); }
  const Layer& layer(int64_t index) const { return *layers_.at(static_cast<std::size_t>(index)); }

  // Runs every layer; returns the output, which stays valid until the next forward. The input is
  // copied (into a buffer reused across calls), so x need not outlive the call.
  const Tensor& forward(const Tensor& x);

  // Backpropagates dy (the gradient of the last forward's output, same shape) through every
  // layer, adding to the parameter gradients. With dx not null it also gets dL/d(input).
  // Throws std::logic_error without a preceding forward, std::invalid_argument on a bad dy.
  void backward(const Tensor& dy, Tensor* dx = nullptr);
  // The same, calling layer_done(i) after layer i's backward (last layer first): from then on
  // layer i's parameter gradients hold this backward's contribution, so a caller can ship them
  // (e.g. start their exchange across ranks) while the earlier layers still compute.
  void backward(const Tensor& dy, Tensor* dx, const std::function<void(int64_t)>& layer_done);

  // All parameters, layer order, named "<index>.<kind>.<role>" (e.g. "0.conv2d.weight").
  std::vector<Parameter> parameters();
  void zero_grad();
  // Fresh parameters for every layer, drawn in layer order from std::mt19937_64(seed).
  void initialize(uint64_t seed);

  // Shape after each layer, for an input of this shape (throws std::invalid_argument naming the
  // first layer that cannot take its input).
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const;
  // One line per layer: index, description, output shape, parameter count; then the total.
  std::string summary(std::span<const int64_t> input_shape);

  // After forward: activation(0) is the input, activation(i + 1) the output of layer i.
  const Tensor& activation(int64_t index) const;

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Tensor> activations_;  // size() + 1 once forward ran
  std::vector<Tensor> gradients_;    // gradients_[i] = dL/d(activation i), 1 <= i < size()
  bool has_forward_ = false;
};

// Receptive field of the first `layer_count` layers of `model` (all of them by default). Throws
// std::invalid_argument naming the first layer in that range without a window (flatten, dense).
ReceptiveField receptive_field(const Sequential& model, int64_t layer_count = -1);

}  // namespace convgemm::nn
