#include "convgemm/nn/dense.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include "check.hpp"
#include "convgemm/nn/init.hpp"
#include "convgemm/sgemm.hpp"

namespace convgemm::nn {
namespace {

bool same(const SgemmShape& a, const SgemmShape& b) {
  return a.m == b.m && a.n == b.n && a.k == b.k && a.transpose_a == b.transpose_a &&
         a.transpose_b == b.transpose_b;
}

// Row-major C = op(A) * op(B), or C += with accumulate. Float runs on convgemm's batch-invariant
// Sgemm (so a sample's logits and gradients do not depend on the batch it is in, nor on any
// thread count), in `cached` when given (rebuilt when the shape changes: a new batch size);
// double, the gradient checks' reference, in plain loops in index order.
void matmul(const SgemmShape& s, const float* a, const float* b, float* c, bool accumulate,
            std::optional<Sgemm>* cached) {
  if (cached == nullptr) {
    Sgemm(s).multiply(a, b, c, accumulate);
    return;
  }
  if (!cached->has_value() || !same((*cached)->shape(), s)) cached->emplace(s);
  (*cached)->multiply(a, b, c, accumulate);
}
void matmul(const SgemmShape& s, const double* a, const double* b, double* c, bool accumulate,
            std::optional<Sgemm>*) {
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = accumulate ? c[i * s.n + j] : 0.0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double a_ip = s.transpose_a ? a[p * s.m + i] : a[i * s.k + p];
        const double b_pj = s.transpose_b ? b[j * s.k + p] : b[p * s.n + j];
        sum += a_ip * b_pj;
      }
      c[i * s.n + j] = sum;
    }
  }
}

void validate_sizes(int64_t batch, int64_t in_features, int64_t out_features) {
  detail::require_at_least("batch", batch, 1);
  detail::require_at_least("in_features", in_features, 1);
  detail::require_at_least("out_features", out_features, 1);
  detail::checked_mul(batch, in_features, "batch * in_features");
  detail::checked_mul(batch, out_features, "batch * out_features");
  detail::checked_mul(in_features, out_features, "in_features * out_features");
}

template <class T>
void forward_into(int64_t batch, int64_t in_features, int64_t out_features, const T* x, const T* w,
                  const T* bias, T* y, std::optional<Sgemm>* cached) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("x", x);
  detail::require_pointer("w", w);
  detail::require_pointer("y", y);
  // y = bias broadcast over the rows, then y += x * W^T; without bias, y = x * W^T.
  if (bias != nullptr) {
    for (int64_t n = 0; n < batch; ++n) std::copy(bias, bias + out_features, y + n * out_features);
  }
  matmul({.m = batch, .n = out_features, .k = in_features, .transpose_b = true}, x, w, y,
         /*accumulate=*/bias != nullptr, cached);
}

template <class T>
void backward_data_into(int64_t batch, int64_t in_features, int64_t out_features, const T* dy,
                        const T* w, T* dx, std::optional<Sgemm>* cached) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("dy", dy);
  detail::require_pointer("w", w);
  detail::require_pointer("dx", dx);
  matmul({.m = batch, .n = in_features, .k = out_features}, dy, w, dx, /*accumulate=*/false,
         cached);
}

template <class T>
void backward_weights_into(int64_t batch, int64_t in_features, int64_t out_features, const T* x,
                           const T* dy, T* dw, T* dbias, bool accumulate,
                           std::optional<Sgemm>* cached) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("x", x);
  detail::require_pointer("dy", dy);
  detail::require_pointer("dw", dw);
  matmul({.m = out_features, .n = in_features, .k = batch, .transpose_a = true}, dy, x, dw,
         accumulate, cached);
  if (dbias != nullptr) {
    if (!accumulate) std::fill(dbias, dbias + out_features, T(0));
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t o = 0; o < out_features; ++o) dbias[o] += dy[n * out_features + o];
    }
  }
}

}  // namespace

template <class T>
void dense_forward(int64_t batch, int64_t in_features, int64_t out_features, const T* x, const T* w,
                   const T* bias, T* y) {
  forward_into(batch, in_features, out_features, x, w, bias, y, nullptr);
}

template <class T>
void dense_backward_data(int64_t batch, int64_t in_features, int64_t out_features, const T* dy,
                         const T* w, T* dx) {
  backward_data_into(batch, in_features, out_features, dy, w, dx, nullptr);
}

template <class T>
void dense_backward_weights(int64_t batch, int64_t in_features, int64_t out_features, const T* x,
                            const T* dy, T* dw, T* dbias, bool accumulate) {
  backward_weights_into(batch, in_features, out_features, x, dy, dw, dbias, accumulate, nullptr);
}

template void dense_forward<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                   const float*, float*);
template void dense_forward<double>(int64_t, int64_t, int64_t, const double*, const double*,
                                    const double*, double*);
template void dense_backward_data<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                         float*);
template void dense_backward_data<double>(int64_t, int64_t, int64_t, const double*, const double*,
                                          double*);
template void dense_backward_weights<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                            float*, float*, bool);
template void dense_backward_weights<double>(int64_t, int64_t, int64_t, const double*,
                                             const double*, double*, double*, bool);

// One GEMM plan per pass, kept while the batch size stays the same.
struct Dense::Gemms {
  std::optional<Sgemm> forward, backward_data, backward_weights;
};

Dense::~Dense() = default;

Dense::Dense(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features), gemms_(std::make_unique<Gemms>()) {
  validate_sizes(/*batch=*/1, in_features, out_features);
  weight_.resize({out_features, in_features});
  weight_.fill(0.0f);
  weight_grad_.resize({out_features, in_features});
  weight_grad_.fill(0.0f);
  if (bias) {
    bias_.resize({out_features});
    bias_.fill(0.0f);
    bias_grad_.resize({out_features});
    bias_grad_.fill(0.0f);
  }
}

std::string Dense::describe() const {
  std::string text = "dense(";
  text += std::to_string(in_features_);
  text += "->";
  text += std::to_string(out_features_);
  text += bias_.size() > 0 ? ")" : ", no bias)";
  return text;
}

std::vector<int64_t> Dense::output_shape(std::span<const int64_t> input_shape) const {
  detail::require_rank("dense", input_shape, 2, "[N, in_features]; put a flatten before it");
  if (input_shape[1] != in_features_) {
    std::string rule = "must have in_features = ";
    rule += std::to_string(in_features_);
    rule += " columns";
    detail::fail_shape("dense", "input", input_shape, rule);
  }
  detail::require_at_least("dense batch", input_shape[0], 1);
  return {input_shape[0], out_features_};
}

void Dense::forward(const Tensor& x, Tensor& y) {
  // The checks of output_shape(), without its allocation.
  detail::require_rank("dense", x.shape(), 2, "[N, in_features]; put a flatten before it");
  if (x.dim(1) != in_features_) output_shape(x.shape());  // throws, naming the columns
  detail::require_at_least("dense batch", x.dim(0), 1);
  y.resize({x.dim(0), out_features_});
  forward_into(x.dim(0), in_features_, out_features_, x.data(), weight_.data(),
               bias_.size() > 0 ? bias_.data() : nullptr, y.data(), &gemms_->forward);
}

void Dense::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("dense", dy, y);
  if (x.rank() != 2 || x.dim(0) != y.dim(0) || x.dim(1) != in_features_) {
    detail::fail_shape("dense", "x", x.shape(), "must be the input of the last forward");
  }
  const int64_t batch = x.dim(0);
  backward_weights_into(batch, in_features_, out_features_, x.data(), dy.data(),
                        weight_grad_.data(), bias_.size() > 0 ? bias_grad_.data() : nullptr,
                        /*accumulate=*/true, &gemms_->backward_weights);
  if (dx == nullptr) return;
  dx->resize(x.shape());
  backward_data_into(batch, in_features_, out_features_, dy.data(), weight_.data(), dx->data(),
                     &gemms_->backward_data);
}

std::vector<Parameter> Dense::parameters() {
  std::vector<Parameter> list;
  list.push_back({"weight", weight_.shape(), weight_.values(), weight_grad_.values()});
  if (bias_.size() > 0)
    list.push_back({"bias", bias_.shape(), bias_.values(), bias_grad_.values()});
  return list;
}

void Dense::reset_parameters(std::mt19937_64& rng) {
  kaiming_uniform(weight_.values(), in_features_, rng);
  bias_.fill(0.0f);
}

}  // namespace convgemm::nn
