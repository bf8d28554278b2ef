#include "convgemm/nn/dense.hpp"

#include <cblas.h>

#include <algorithm>
#include <limits>

#include "../gemm.hpp"
#include "check.hpp"
#include "convgemm/nn/init.hpp"

namespace convgemm::nn {
namespace {

// Row-major C [m x n] = op(A) * op(B) + beta * C through the BLAS of the element type. This layer
// calls CBLAS directly (the engine's sgemm() is float-only and runs a backend per pass) but keeps
// the engine's threading rule, one OpenBLAS thread: threaded OpenBLAS 0.3.21 changes the bits of
// dW = dy^T * x (the batch is the summed dimension) between 1 and 2 threads once the GEMM passes
// its threading threshold (batch >= ~192 for a 256 -> 6 head), and training must give the same
// weights whatever OPENBLAS_NUM_THREADS says (convgemm::distributed relies on it). A classifier
// head's GEMMs are small, so the lost parallelism costs little.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const convgemm::detail::SingleThreadedBlas single_threaded;
  cblas_sgemm(CblasRowMajor, ta, tb, blasint(m), blasint(n), blasint(k), /*alpha=*/1.0f, a,
              blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  const convgemm::detail::SingleThreadedBlas single_threaded;
  cblas_dgemm(CblasRowMajor, ta, tb, blasint(m), blasint(n), blasint(k), /*alpha=*/1.0, a,
              blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

void validate_sizes(int64_t batch, int64_t in_features, int64_t out_features) {
  constexpr int64_t kBlasMax = std::numeric_limits<blasint>::max();
  detail::require_at_least("batch", batch, 1);
  detail::require_at_least("in_features", in_features, 1);
  detail::require_at_least("out_features", out_features, 1);
  if (batch > kBlasMax) detail::fail("batch", batch, "must fit the BLAS integer type");
  if (in_features > kBlasMax)
    detail::fail("in_features", in_features, "must fit the BLAS integer type");
  if (out_features > kBlasMax) {
    detail::fail("out_features", out_features, "must fit the BLAS integer type");
  }
  detail::checked_mul(batch, in_features, "batch * in_features");
  detail::checked_mul(batch, out_features, "batch * out_features");
  detail::checked_mul(in_features, out_features, "in_features * out_features");
}

}  // namespace

template <class T>
void dense_forward(int64_t batch, int64_t in_features, int64_t out_features, const T* x, const T* w,
                   const T* bias, T* y) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("x", x);
  detail::require_pointer("w", w);
  detail::require_pointer("y", y);
  // y = bias broadcast over the rows, then y += x * W^T (beta 1); without bias, beta 0.
  if (bias != nullptr) {
    for (int64_t n = 0; n < batch; ++n) std::copy(bias, bias + out_features, y + n * out_features);
  }
  gemm(CblasNoTrans, CblasTrans, batch, out_features, in_features, x, in_features, w, in_features,
       /*beta=*/bias != nullptr ? T(1) : T(0), y, out_features);
}

template <class T>
void dense_backward_data(int64_t batch, int64_t in_features, int64_t out_features, const T* dy,
                         const T* w, T* dx) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("dy", dy);
  detail::require_pointer("w", w);
  detail::require_pointer("dx", dx);
  gemm(CblasNoTrans, CblasNoTrans, batch, in_features, out_features, dy, out_features, w,
       in_features, /*beta=*/T(0), dx, in_features);
}

template <class T>
void dense_backward_weights(int64_t batch, int64_t in_features, int64_t out_features, const T* x,
                            const T* dy, T* dw, T* dbias, bool accumulate) {
  validate_sizes(batch, in_features, out_features);
  detail::require_pointer("x", x);
  detail::require_pointer("dy", dy);
  detail::require_pointer("dw", dw);
  gemm(CblasTrans, CblasNoTrans, out_features, in_features, batch, dy, out_features, x, in_features,
       /*beta=*/accumulate ? T(1) : T(0), dw, in_features);
  if (dbias != nullptr) {
    if (!accumulate) std::fill(dbias, dbias + out_features, T(0));
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t o = 0; o < out_features; ++o) dbias[o] += dy[n * out_features + o];
    }
  }
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

Dense::Dense(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
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
  dense_forward(x.dim(0), in_features_, out_features_, x.data(), weight_.data(),
                bias_.size() > 0 ? bias_.data() : nullptr, y.data());
}

void Dense::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("dense", dy, y);
  if (x.rank() != 2 || x.dim(0) != y.dim(0) || x.dim(1) != in_features_) {
    detail::fail_shape("dense", "x", x.shape(), "must be the input of the last forward");
  }
  const int64_t batch = x.dim(0);
  dense_backward_weights(batch, in_features_, out_features_, x.data(), dy.data(),
                         weight_grad_.data(), bias_.size() > 0 ? bias_grad_.data() : nullptr,
                         /*accumulate=*/true);
  if (dx == nullptr) return;
  dx->resize(x.shape());
  dense_backward_data(batch, in_features_, out_features_, dy.data(), weight_.data(), dx->data());
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
