#include "convgemm/nn/loss.hpp"

#include <cmath>

#include "check.hpp"

namespace convgemm::nn {
namespace {

void validate(int64_t batch, int64_t classes, const int32_t* labels) {
  detail::require_at_least("batch", batch, 1);
  detail::require_at_least("classes", classes, 1);
  detail::checked_mul(batch, classes, "batch * classes");
  detail::require_pointer("labels", labels);
  for (int64_t n = 0; n < batch; ++n) {
    if (labels[n] < 0 || labels[n] >= classes) {
      std::string field = "labels[";
      field += std::to_string(n);
      field += "]";
      std::string rule = "must be in [0, classes) = [0, ";
      rule += std::to_string(classes);
      rule += ")";
      detail::fail(field, labels[n], rule);
    }
  }
}

}  // namespace

template <class T>
double softmax_cross_entropy_forward(int64_t batch, int64_t classes, const T* logits,
                                     const int32_t* labels, T* probabilities) {
  validate(batch, classes, labels);
  detail::require_pointer("logits", logits);
  detail::require_pointer("probabilities", probabilities);
  double total = 0.0;
  for (int64_t n = 0; n < batch; ++n) {
    const T* z = logits + n * classes;
    T* p = probabilities + n * classes;
    T max = z[0];
    for (int64_t j = 1; j < classes; ++j) max = z[j] > max ? z[j] : max;
    // Shifted by the maximum, every exponent is <= 0 and one of them is exactly 0: the sum lies
    // in [1, classes], so neither exp nor log can overflow, whatever the logits' size.
    double sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) {
      p[j] = std::exp(z[j] - max);
      sum += double(p[j]);
    }
    const T inverse = T(1.0 / sum);
    for (int64_t j = 0; j < classes; ++j) p[j] *= inverse;
    // log(sum exp(z - max)) - (z_label - max): the difference is taken before any rounding of
    // large logits can cancel.
    total += std::log(sum) - double(z[labels[n]] - max);
  }
  return total / double(batch);
}

template <class T>
void softmax_cross_entropy_backward(int64_t batch, int64_t classes, const T* probabilities,
                                    const int32_t* labels, T* dlogits) {
  validate(batch, classes, labels);
  detail::require_pointer("probabilities", probabilities);
  detail::require_pointer("dlogits", dlogits);
  const T scale = T(1) / T(batch);
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t j = 0; j < classes; ++j) {
      const T target = j == labels[n] ? T(1) : T(0);
      dlogits[n * classes + j] = (probabilities[n * classes + j] - target) * scale;
    }
  }
}

template double softmax_cross_entropy_forward<float>(int64_t, int64_t, const float*, const int32_t*,
                                                     float*);
template double softmax_cross_entropy_forward<double>(int64_t, int64_t, const double*,
                                                      const int32_t*, double*);
template void softmax_cross_entropy_backward<float>(int64_t, int64_t, const float*, const int32_t*,
                                                    float*);
template void softmax_cross_entropy_backward<double>(int64_t, int64_t, const double*,
                                                     const int32_t*, double*);

double SoftmaxCrossEntropy::forward(const Tensor& logits, std::span<const int32_t> labels) {
  if (logits.rank() != 2) {
    detail::fail_shape("softmax_cross_entropy", "logits", logits.shape(),
                       "must have rank 2 ([N, classes])");
  }
  if (static_cast<int64_t>(labels.size()) != logits.dim(0)) {
    std::string rule = "must equal the logits' batch (";
    rule += std::to_string(logits.dim(0));
    rule += ")";
    detail::fail("labels.size()", static_cast<int64_t>(labels.size()), rule);
  }
  probabilities_.resize(logits.shape());
  const double loss = softmax_cross_entropy_forward(logits.dim(0), logits.dim(1), logits.data(),
                                                    labels.data(), probabilities_.data());
  labels_.assign(labels.begin(), labels.end());
  return loss;
}

void SoftmaxCrossEntropy::backward(Tensor& dlogits) const {
  if (probabilities_.rank() != 2) {
    throw std::logic_error("convgemm: softmax_cross_entropy backward needs a forward first");
  }
  dlogits.resize(probabilities_.shape());
  softmax_cross_entropy_backward(probabilities_.dim(0), probabilities_.dim(1),
                                 probabilities_.data(), labels_.data(), dlogits.data());
}

void argmax_rows(const Tensor& logits, std::span<int32_t> predicted) {
  if (logits.rank() != 2) {
    detail::fail_shape("argmax_rows", "logits", logits.shape(), "must have rank 2 ([N, classes])");
  }
  if (static_cast<int64_t>(predicted.size()) != logits.dim(0)) {
    detail::fail("predicted.size()", static_cast<int64_t>(predicted.size()),
                 "must equal the logits' batch");
  }
  const int64_t classes = logits.dim(1);
  for (int64_t n = 0; n < logits.dim(0); ++n) {
    const float* z = logits.data() + n * classes;
    int64_t best = 0;
    for (int64_t j = 1; j < classes; ++j) best = z[j] > z[best] ? j : best;
    predicted[static_cast<std::size_t>(n)] = static_cast<int32_t>(best);
  }
}

}  // namespace convgemm::nn
