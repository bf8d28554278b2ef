#include "convgemm/nn/sequential.hpp"

#include <algorithm>
#include <stdexcept>

#include "check.hpp"

namespace convgemm::nn {

Layer& Sequential::add(std::unique_ptr<Layer> layer) {
  if (layer == nullptr) detail::fail_message("Sequential::add: layer must not be null");
  layers_.push_back(std::move(layer));
  has_forward_ = false;
  return *layers_.back();
}

const Tensor& Sequential::forward(const Tensor& x) {
  if (layers_.empty()) detail::fail_message("Sequential::forward: the model has no layers");
  activations_.resize(layers_.size() + 1);
  has_forward_ = false;
  activations_[0].resize(x.shape());
  std::copy(x.values().begin(), x.values().end(), activations_[0].values().begin());
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->forward(activations_[i], activations_[i + 1]);
  }
  has_forward_ = true;
  return activations_.back();
}

void Sequential::backward(const Tensor& dy, Tensor* dx) { backward(dy, dx, {}); }

void Sequential::backward(const Tensor& dy, Tensor* dx,
                          const std::function<void(int64_t)>& layer_done) {
  if (!has_forward_) throw std::logic_error("convgemm: Sequential::backward needs a forward first");
  detail::require_same_shape("Sequential::backward", dy, activations_.back());
  gradients_.resize(layers_.size());
  // Layer i reads dL/d(activation i+1) and writes dL/d(activation i); the first layer's input
  // gradient is only computed when the caller asks for it.
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const Tensor& upstream = i + 1 == layers_.size() ? dy : gradients_[i + 1];
    Tensor* downstream = i > 0 ? &gradients_[i] : dx;
    layers_[i]->backward(activations_[i], activations_[i + 1], upstream, downstream);
    if (layer_done) layer_done(static_cast<int64_t>(i));
  }
}

std::vector<Parameter> Sequential::parameters() {
  std::vector<Parameter> list;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    for (Parameter& p : layers_[i]->parameters()) {
      std::string name = std::to_string(i);
      name += ".";
      name += layers_[i]->kind();
      name += ".";
      name += p.name;
      p.name = std::move(name);
      list.push_back(std::move(p));
    }
  }
  return list;
}

void Sequential::zero_grad() { zero_gradients(parameters()); }

void Sequential::initialize(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (auto& layer : layers_) layer->reset_parameters(rng);
}

std::vector<int64_t> Sequential::output_shape(std::span<const int64_t> input_shape) const {
  std::vector<int64_t> shape(input_shape.begin(), input_shape.end());
  for (const auto& layer : layers_) shape = layer->output_shape(shape);
  return shape;
}

std::string Sequential::summary(std::span<const int64_t> input_shape) {
  std::string text = "input ";
  text += shape_to_string(input_shape);
  text += "\n";
  std::vector<int64_t> shape(input_shape.begin(), input_shape.end());
  int64_t total = 0;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    shape = layers_[i]->output_shape(shape);
    int64_t count = 0;
    for (const Parameter& p : layers_[i]->parameters())
      count += static_cast<int64_t>(p.values.size());
    total += count;
    std::string line = std::to_string(i);
    line += "  ";
    line += layers_[i]->describe();
    line.resize(std::max<std::size_t>(line.size(), 48), ' ');
    line += " -> ";
    line += shape_to_string(shape);
    if (count > 0) {
      line += "  (";
      line += std::to_string(count);
      line += " parameters)";
    }
    text += line;
    text += "\n";
  }
  text += "total parameters: ";
  text += std::to_string(total);
  return text;
}

const Tensor& Sequential::activation(int64_t index) const {
  if (!has_forward_)
    throw std::logic_error("convgemm: Sequential::activation needs a forward first");
  return activations_.at(static_cast<std::size_t>(index));
}

ReceptiveField receptive_field(const Sequential& model, int64_t layer_count) {
  if (layer_count < 0) layer_count = model.size();
  if (layer_count > model.size()) {
    std::string rule = "must be <= the model's layer count (";
    rule += std::to_string(model.size());
    rule += ")";
    detail::fail("layer_count", layer_count, rule);
  }
  std::vector<Window2d> stack;
  for (int64_t i = 0; i < layer_count; ++i) {
    const std::optional<Window2d> window = model.layer(i).window();
    if (!window) {
      std::string message = "receptive_field: layer ";
      message += std::to_string(i);
      message += " (";
      message += model.layer(i).kind();
      message += ") has no sliding window; count only the layers before it";
      detail::fail_message(message);
    }
    stack.push_back(*window);
  }
  return receptive_field(stack);
}

}  // namespace convgemm::nn
