#pragma once
// Conv2d as a layer over the engine's plan (convgemm/conv2d.hpp): PyTorch conv2d semantics,
// weight [O, C/G, KH, KW], bias [O].
//
// An engine plan is built for one input shape (batch size included), so the layer keeps a small
// cache of plans keyed by the full shape, least recently used evicted: a training loop that
// alternates the training batch, the evaluation batch and the last partial batch of each builds
// each plan once, and at a shape it has seen a call allocates nothing.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/nn/layer.hpp"
#include "convgemm/shape.hpp"

namespace convgemm::nn {

class Conv2d final : public Layer {
 public:
  // Square kernel, equal stride and padding on both axes.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, bool bias = true);
  // Full geometry (asymmetric padding, dilation, groups): `geometry`'s batch, in_height and
  // in_width are placeholders, each input brings its own. options.num_threads, workspace_limit
  // and block_bytes go to every plan; accumulate_gradients is set by the layer (parameter
  // gradients accumulate, see Layer::backward). Throws std::invalid_argument on a bad geometry.
  explicit Conv2d(const Conv2dShape& geometry, bool bias = true, const Conv2dOptions& options = {});
  ~Conv2d() override;
  Conv2d(Conv2d&&) noexcept;
  Conv2d& operator=(Conv2d&&) noexcept;

  std::string_view kind() const override { return "conv2d"; }
  std::string describe() const override;
  // Needs [N, in_channels, H, W] with a non-empty output.
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter> parameters() override;
  void reset_parameters(std::mt19937_64& rng) override;
  std::optional<Window2d> window() const override { return window_of(geometry_); }

  // The geometry with this input's batch and spatial size; throws like output_shape().
  Conv2dShape shape_for(std::span<const int64_t> input_shape) const;
  const Conv2dShape& geometry() const { return geometry_; }
  Tensor& weight() { return weight_; }
  Tensor& bias() { return bias_; }  // empty without bias
  // Plans currently cached (at most kMaxPlans).
  int64_t cached_plans() const { return static_cast<int64_t>(plans_.size()); }
  static constexpr int64_t kMaxPlans = 4;

 private:
  convgemm::Conv2d& plan_for(const Conv2dShape& shape);

  Conv2dShape geometry_;
  Conv2dOptions options_;
  Tensor weight_, weight_grad_, bias_, bias_grad_;
  std::vector<std::unique_ptr<convgemm::Conv2d>> plans_;  // most recently used last
};

}  // namespace convgemm::nn
