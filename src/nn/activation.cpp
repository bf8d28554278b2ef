#include "convgemm/nn/activation.hpp"

#include "check.hpp"

namespace convgemm::nn {

template <class T>
void relu_forward(int64_t count, const T* x, T* y) {
  detail::require_at_least("relu count", count, 0);
  if (count == 0) return;
  detail::require_pointer("x", x);
  detail::require_pointer("y", y);
  // `x < 0 ? 0 : x` rather than std::max: a NaN stays NaN, as in PyTorch.
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
void relu_backward(int64_t count, const T* y, const T* dy, T* dx) {
  detail::require_at_least("relu count", count, 0);
  if (count == 0) return;
  detail::require_pointer("y", y);
  detail::require_pointer("dy", dy);
  detail::require_pointer("dx", dx);
  // y > 0 exactly where x > 0; the gradient at x = 0 is taken as 0 (PyTorch's threshold rule).
  for (int64_t i = 0; i < count; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template void relu_forward<float>(int64_t, const float*, float*);
template void relu_forward<double>(int64_t, const double*, double*);
template void relu_backward<float>(int64_t, const float*, const float*, float*);
template void relu_backward<double>(int64_t, const double*, const double*, double*);

std::vector<int64_t> ReLU::output_shape(std::span<const int64_t> input_shape) const {
  element_count(input_shape, "relu input shape");
  return {input_shape.begin(), input_shape.end()};
}

void ReLU::forward(const Tensor& x, Tensor& y) {
  y.resize(x.shape());
  relu_forward(x.size(), x.data(), y.data());
}

void ReLU::backward(const Tensor& /*x*/, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("relu", dy, y);
  if (dx == nullptr) return;
  dx->resize(y.shape());
  relu_backward(y.size(), y.data(), dy.data(), dx->data());
}

}  // namespace convgemm::nn
