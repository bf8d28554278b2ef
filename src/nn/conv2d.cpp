#include "convgemm/nn/conv2d.hpp"

#include <algorithm>

#include "check.hpp"
#include "convgemm/nn/init.hpp"

namespace convgemm::nn {
namespace {

// Validates the geometry on the smallest input its kernels fit (the spatial size of a real input
// is checked per call), so that a bad kernel, stride, padding or group count fails here.
Conv2dShape validated_geometry(Conv2dShape geometry) {
  geometry.batch = 1;
  // At least 1, so that a bad kernel or dilation, not the placeholder, is what gets reported.
  geometry.in_height =
      std::max<int64_t>(1, geometry.dilation_height * (geometry.kernel_height - 1) + 1);
  geometry.in_width =
      std::max<int64_t>(1, geometry.dilation_width * (geometry.kernel_width - 1) + 1);
  geometry.validate();
  return geometry;
}

Conv2dShape square(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
                   int64_t padding) {
  Conv2dShape g{.in_channels = in_channels,
                .out_channels = out_channels,
                .kernel_height = kernel_size,
                .kernel_width = kernel_size,
                .stride_height = stride,
                .stride_width = stride};
  g.set_padding(padding);
  return g;
}

}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, bool bias)
    : Conv2d(square(in_channels, out_channels, kernel_size, stride, padding), bias) {}

Conv2d::Conv2d(const Conv2dShape& geometry, bool bias, const Conv2dOptions& options)
    : geometry_(validated_geometry(geometry)), options_(options) {
  detail::require_at_least("num_threads", options.num_threads, 0);
  // Parameter gradients accumulate across backward calls (Layer::backward); dx is zeroed first.
  options_.accumulate_gradients = true;
  const int64_t weight_shape[] = {geometry_.out_channels, geometry_.in_channels / geometry_.groups,
                                  geometry_.kernel_height, geometry_.kernel_width};
  weight_.resize(weight_shape);
  weight_.fill(0.0f);
  weight_grad_.resize(weight_shape);
  weight_grad_.fill(0.0f);
  if (bias) {
    bias_.resize({geometry_.out_channels});
    bias_.fill(0.0f);
    bias_grad_.resize({geometry_.out_channels});
    bias_grad_.fill(0.0f);
  }
}

Conv2d::~Conv2d() = default;
Conv2d::Conv2d(Conv2d&&) noexcept = default;
Conv2d& Conv2d::operator=(Conv2d&&) noexcept = default;

std::string Conv2d::describe() const {
  const Conv2dShape& g = geometry_;
  std::string text = "conv2d(";
  text += std::to_string(g.in_channels);
  text += "->";
  text += std::to_string(g.out_channels);
  text += ", ";
  text += std::to_string(g.kernel_height);
  text += "x";
  text += std::to_string(g.kernel_width);
  text += ", stride ";
  text += std::to_string(g.stride_height);
  text += "x";
  text += std::to_string(g.stride_width);
  text += ", pad ";
  text += std::to_string(g.pad_top);
  text += ".";
  text += std::to_string(g.pad_bottom);
  text += ".";
  text += std::to_string(g.pad_left);
  text += ".";
  text += std::to_string(g.pad_right);
  if (g.dilation_height != 1 || g.dilation_width != 1) {
    text += ", dilation ";
    text += std::to_string(g.dilation_height);
    text += "x";
    text += std::to_string(g.dilation_width);
  }
  if (g.groups != 1) {
    text += ", groups ";
    text += std::to_string(g.groups);
  }
  if (bias_.size() == 0) text += ", no bias";
  text += ")";
  return text;
}

Conv2dShape Conv2d::shape_for(std::span<const int64_t> input_shape) const {
  detail::require_rank("conv2d", input_shape, 4, "[N, C, H, W]");
  if (input_shape[1] != geometry_.in_channels) {
    std::string rule = "must have in_channels = ";
    rule += std::to_string(geometry_.in_channels);
    rule += " channels";
    detail::fail_shape("conv2d", "input", input_shape, rule);
  }
  Conv2dShape shape = geometry_;
  shape.batch = input_shape[0];
  shape.in_height = input_shape[2];
  shape.in_width = input_shape[3];
  shape.validate();
  return shape;
}

std::vector<int64_t> Conv2d::output_shape(std::span<const int64_t> input_shape) const {
  const Conv2dShape s = shape_for(input_shape);
  return {s.batch, s.out_channels, s.out_height(), s.out_width()};
}

convgemm::Conv2d& Conv2d::plan_for(const Conv2dShape& shape) {
  auto found = std::find_if(plans_.begin(), plans_.end(),
                            [&shape](const auto& plan) { return plan->shape() == shape; });
  if (found != plans_.end()) {
    std::rotate(found, found + 1, plans_.end());  // most recently used last; no allocation
    return *plans_.back();
  }
  if (static_cast<int64_t>(plans_.size()) == kMaxPlans) plans_.erase(plans_.begin());
  plans_.push_back(std::make_unique<convgemm::Conv2d>(shape, options_));
  return *plans_.back();
}

void Conv2d::forward(const Tensor& x, Tensor& y) {
  const Conv2dShape shape = shape_for(x.shape());
  convgemm::Conv2d& plan = plan_for(shape);
  y.resize({shape.batch, shape.out_channels, shape.out_height(), shape.out_width()});
  plan.forward(x.data(), weight_.data(), bias_.size() > 0 ? bias_.data() : nullptr, y.data());
}

void Conv2d::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("conv2d", dy, y);
  const Conv2dShape shape = shape_for(x.shape());
  const int64_t expected[] = {shape.batch, shape.out_channels, shape.out_height(),
                              shape.out_width()};
  if (!std::equal(y.shape().begin(), y.shape().end(), std::begin(expected), std::end(expected))) {
    detail::fail_shape("conv2d", "x", x.shape(), "must be the input of the last forward");
  }
  convgemm::Conv2d& plan = plan_for(shape);
  plan.backward_weights(x.data(), dy.data(), weight_grad_.data(),
                        bias_.size() > 0 ? bias_grad_.data() : nullptr);
  if (dx == nullptr) return;
  dx->resize(x.shape());
  dx->fill(0.0f);  // the plan accumulates (for the parameter gradients), dx must be overwritten
  plan.backward_data(dy.data(), weight_.data(), dx->data());
}

std::vector<Parameter> Conv2d::parameters() {
  std::vector<Parameter> list;
  list.push_back({"weight", weight_.shape(), weight_.values(), weight_grad_.values()});
  if (bias_.size() > 0)
    list.push_back({"bias", bias_.shape(), bias_.values(), bias_grad_.values()});
  return list;
}

void Conv2d::reset_parameters(std::mt19937_64& rng) {
  kaiming_uniform(weight_.values(), geometry_.gemm_k(), rng);
  bias_.fill(0.0f);
}

}  // namespace convgemm::nn
