#pragma once
// Softmax + cross-entropy, the loss of a classifier, mean over the batch:
//   p[n, j] = exp(z[n, j] - m_n) / sum_k exp(z[n, k] - m_n),    m_n = max_k z[n, k]
//   L = (1/N) sum_n ( log sum_k exp(z[n, k] - m_n) - (z[n, label_n] - m_n) )
//   dL/dz[n, j] = (p[n, j] - [j == label_n]) / N
// Subtracting the row maximum keeps every exponent <= 0, so logits of any size (1e4, 1e30) give
// a finite loss and gradient; the loss is accumulated in double.

#include <cstdint>
#include <span>
#include <vector>

#include "convgemm/nn/tensor.hpp"

namespace convgemm::nn {

// Kernels for float (the loss object) and double (gradient checks). logits and probabilities
// [batch, classes]; labels in [0, classes). Forward writes the probabilities and returns the mean
// loss; backward overwrites dlogits with the gradient above. Throw std::invalid_argument on sizes
// below 1, null pointers, or a label out of range (naming its index and value).
template <class T>
double softmax_cross_entropy_forward(int64_t batch, int64_t classes, const T* logits,
                                     const int32_t* labels, T* probabilities);
template <class T>
void softmax_cross_entropy_backward(int64_t batch, int64_t classes, const T* probabilities,
                                    const int32_t* labels, T* dlogits);

class SoftmaxCrossEntropy {
 public:
  // logits [N, classes], labels.size() == N. Returns the mean loss; keeps the probabilities and
  // labels for backward(). Throws std::invalid_argument on mismatched sizes or a bad label.
  double forward(const Tensor& logits, std::span<const int32_t> labels);
  // dlogits (resized to [N, classes]) = gradient of the last forward's mean loss.
  void backward(Tensor& dlogits) const;
  const Tensor& probabilities() const { return probabilities_; }

 private:
  Tensor probabilities_;
  std::vector<int32_t> labels_;
};

// Index of the largest logit of each row of [N, classes] (the first on ties); predicted.size()
// must be N.
void argmax_rows(const Tensor& logits, std::span<int32_t> predicted);

}  // namespace convgemm::nn
