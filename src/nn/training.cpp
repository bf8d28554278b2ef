#include "convgemm/nn/training.hpp"

#include <algorithm>

#include "check.hpp"
#include "convgemm/nn/activation.hpp"
#include "convgemm/nn/conv2d.hpp"
#include "convgemm/nn/dense.hpp"
#include "convgemm/nn/flatten.hpp"
#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/pooling.hpp"

namespace convgemm::nn {
namespace {

void validate(const Dataset& data, int64_t batch_size) {
  detail::require_at_least("batch_size", batch_size, 1);
  detail::require_at_least("dataset size", data.size(), 1);
  if (static_cast<int64_t>(data.images.size()) != data.size() * data.image_elements()) {
    detail::fail("dataset images.size()", static_cast<int64_t>(data.images.size()),
                 "must be size() * channels * height * width");
  }
}

// Copies the images and labels at order[begin, begin + count) into a batch (reused buffers).
void gather(const Dataset& data, std::span<const int64_t> order, Tensor& images,
            std::vector<int32_t>& labels) {
  const auto count = static_cast<int64_t>(order.size());
  images.resize({count, data.channels, data.height, data.width});
  labels.resize(order.size());
  const int64_t elements = data.image_elements();
  for (int64_t i = 0; i < count; ++i) {
    const std::span<const float> image = data.image(order[static_cast<std::size_t>(i)]);
    std::copy(image.begin(), image.end(), images.data() + i * elements);
    labels[static_cast<std::size_t>(i)] = data.labels[static_cast<std::size_t>(order[i])];
  }
}

}  // namespace

EpochResult train_epoch(Sequential& model, Sgd& sgd, const Dataset& data, int64_t batch_size,
                        std::mt19937_64& rng, const ProgressCallback& progress) {
  validate(data, batch_size);
  // Fisher-Yates on the raw generator (std::shuffle's algorithm is the library's choice, and a
  // seed should mean the same run everywhere).
  std::vector<int64_t> order(static_cast<std::size_t>(data.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);

  Tensor images, dlogits;
  std::vector<int32_t> labels;
  SoftmaxCrossEntropy loss;
  double loss_sum = 0.0;
  for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
    const int64_t count = std::min(batch_size, data.size() - begin);
    gather(
        data,
        std::span(order).subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count)),
        images, labels);
    loss_sum += loss.forward(model.forward(images), labels) * double(count);
    loss.backward(dlogits);
    model.backward(dlogits);
    sgd.step();
    if (progress) progress(begin + count, data.size(), loss_sum / double(begin + count));
  }
  sgd.flush();
  return {loss_sum / double(data.size()), data.size()};
}

double evaluate_accuracy(Sequential& model, const Dataset& data, int64_t batch_size) {
  validate(data, batch_size);
  Tensor images;
  std::vector<int32_t> labels, predicted;
  std::vector<int64_t> order(static_cast<std::size_t>(batch_size));
  int64_t correct = 0;
  for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
    const int64_t count = std::min(batch_size, data.size() - begin);
    order.resize(static_cast<std::size_t>(count));
    for (int64_t i = 0; i < count; ++i) order[static_cast<std::size_t>(i)] = begin + i;
    gather(data, order, images, labels);
    predicted.resize(static_cast<std::size_t>(count));
    argmax_rows(model.forward(images), predicted);
    for (int64_t i = 0; i < count; ++i) {
      correct += predicted[static_cast<std::size_t>(i)] == labels[static_cast<std::size_t>(i)];
    }
  }
  return double(correct) / double(data.size());
}

Sequential make_small_cnn(int64_t image_size, int64_t classes, int64_t c1, int64_t c2,
                          int conv_threads) {
  detail::require_at_least("image_size", image_size, 16);  // leaves a 1x1 map after the stack
  detail::require_at_least("classes", classes, 1);
  Conv2dOptions options;
  options.num_threads = conv_threads;
  auto conv5x5 = [](int64_t in, int64_t out) {
    return Conv2dShape{
        .in_channels = in, .out_channels = out, .kernel_height = 5, .kernel_width = 5};
  };
  // Each 5x5 convolution (no padding) takes 4 pixels, each 2x2/2 pool halves (rounding down).
  const int64_t side = ((image_size - 4) / 2 - 4) / 2;
  Sequential model;
  model.emplace<Conv2d>(conv5x5(1, c1), /*bias=*/true, options);
  model.emplace<ReLU>();
  model.emplace<MaxPool2d>(2);
  model.emplace<Conv2d>(conv5x5(c1, c2), /*bias=*/true, options);
  model.emplace<ReLU>();
  model.emplace<MaxPool2d>(2);
  model.emplace<Flatten>();
  model.emplace<Dense>(c2 * side * side, classes);
  return model;
}

}  // namespace convgemm::nn
