#pragma once
// Dense (fully connected): y = x * W^T + b, x [N, in_features], W [out_features, in_features]
// (PyTorch's nn.Linear layout), b [out_features], y [N, out_features]. One GEMM per pass, on
// convgemm's batch-invariant Sgemm (convgemm/sgemm.hpp): a sample's y and dx are the same bits
// whatever the batch it is in.
//   forward           y  = x  [N x in]  * W^T [in x out]
//   backward_data     dx = dy [N x out] * W   [out x in]
//   backward_weights  dW += dy^T [out x N] * x [N x in],   db += column sums of dy

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "convgemm/nn/layer.hpp"

namespace convgemm::nn {

// The kernels: float through Sgemm (the layer; these free functions build a plan per call, the
// layer keeps one per pass), double in plain loops (the gradient checks' reference). They
// validate sizes (>= 1, products within int64) and pointers; bias and dbias may be null.
// backward_data overwrites dx; backward_weights overwrites dw and dbias, or adds to them when
// `accumulate` is set.
template <class T>
void dense_forward(int64_t batch, int64_t in_features, int64_t out_features, const T* x, const T* w,
                   const T* bias, T* y);
template <class T>
void dense_backward_data(int64_t batch, int64_t in_features, int64_t out_features, const T* dy,
                         const T* w, T* dx);
template <class T>
void dense_backward_weights(int64_t batch, int64_t in_features, int64_t out_features, const T* x,
                            const T* dy, T* dw, T* dbias, bool accumulate);

class Dense final : public Layer {
 public:
  // Throws std::invalid_argument naming in_features or out_features if below 1 or too large.
  Dense(int64_t in_features, int64_t out_features, bool bias = true);
  ~Dense() override;

  std::string_view kind() const override { return "dense"; }
  std::string describe() const override;
  // Needs [N, in_features] (put a Flatten before it for feature maps).
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const override;
  void forward(const Tensor& x, Tensor& y) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter> parameters() override;
  void reset_parameters(std::mt19937_64& rng) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Tensor& weight() { return weight_; }
  Tensor& bias() { return bias_; }  // empty without bias

 private:
  struct Gemms;
  int64_t in_features_, out_features_;
  Tensor weight_, weight_grad_, bias_, bias_grad_;
  std::unique_ptr<Gemms> gemms_;  // the passes' GEMM plans
};

}  // namespace convgemm::nn
