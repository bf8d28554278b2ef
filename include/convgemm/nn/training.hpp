#pragma once
// The training loop shared by examples/train_cnn and the tests: shuffled micro-batches, softmax
// cross-entropy, an Sgd step per micro-batch (which applies every k-th), and held-out accuracy.

#include <cstdint>
#include <functional>
#include <random>

#include "convgemm/nn/data.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/sgd.hpp"

namespace convgemm::nn {

struct EpochResult {
  double mean_loss = 0.0;  // over the epoch's images
  int64_t images = 0;
};

// Called after every micro-batch with the images done so far and their mean loss.
using ProgressCallback = std::function<void(int64_t done, int64_t total, double mean_loss)>;

// One pass over `data` in an order drawn from rng, micro-batches of batch_size (the last may be
// smaller), then sgd.flush() so that no gradient carries over into the next epoch. Throws
// std::invalid_argument on batch_size < 1 or an empty dataset.
EpochResult train_epoch(Sequential& model, Sgd& sgd, const Dataset& data, int64_t batch_size,
                        std::mt19937_64& rng, const ProgressCallback& progress = {});

// Fraction of `data` whose largest logit is the label, batches of batch_size.
double evaluate_accuracy(Sequential& model, const Dataset& data, int64_t batch_size);

// The classifier of examples/train_cnn for images [1, size, size] and `classes` labels:
//   conv 5x5 (1->c1) -> ReLU -> maxpool 2x2/2 -> conv 5x5 (c1->c2) -> ReLU -> maxpool 2x2/2
//   -> flatten -> dense -> (softmax in the loss)
// conv_threads goes to the convolution plans (0: oneTBB's default).
Sequential make_small_cnn(int64_t image_size, int64_t classes, int64_t c1 = 8, int64_t c2 = 16,
                          int conv_threads = 0);

}  // namespace convgemm::nn
