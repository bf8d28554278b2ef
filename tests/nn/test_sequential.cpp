// Sequential and the parameter list: naming and order, reproducible initialisation, the fused
// gradient buffer, steady-state buffers, the chain rule through the container.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "convgemm/nn/activation.hpp"
#include "convgemm/nn/dense.hpp"
#include "convgemm/nn/flatten.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/training.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(Sequential, ParametersAreNamedInLayerOrder) {
  Sequential model = make_small_cnn(28, 6);
  const std::vector<Parameter> params = model.parameters();
  std::vector<std::string> names;
  for (const Parameter& p : params) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.conv2d.weight", "0.conv2d.bias", "3.conv2d.weight",
                                             "3.conv2d.bias", "7.dense.weight", "7.dense.bias"}));
  EXPECT_EQ(params[0].shape, (std::vector<int64_t>{8, 1, 5, 5}));
  EXPECT_EQ(params[2].shape, (std::vector<int64_t>{16, 8, 5, 5}));
  EXPECT_EQ(params[4].shape, (std::vector<int64_t>{6, 256}));
  EXPECT_EQ(total_size(params), 208 + 3216 + 1542);
  const int64_t input[] = {1, 1, 28, 28};
  EXPECT_EQ(model.output_shape(input), (std::vector<int64_t>{1, 6}));
  EXPECT_THAT(model.summary(input), HasSubstr("total parameters: 4966"));
}

TEST(Sequential, InitializeIsReproducibleAndHeUniform) {
  Sequential a = make_small_cnn(28, 6), b = make_small_cnn(28, 6), c = make_small_cnn(28, 6);
  a.initialize(7);
  b.initialize(7);
  c.initialize(8);
  const auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(std::equal(pa[i].values.begin(), pa[i].values.end(), pb[i].values.begin()));
  }
  EXPECT_FALSE(std::equal(pa[0].values.begin(), pa[0].values.end(), pc[0].values.begin()));
  // Weights in (-b, b), b = sqrt(6 / fan_in), and spread over it; biases zero.
  const std::pair<std::size_t, double> weights[] = {{0, 25.0}, {2, 200.0}, {4, 256.0}};
  for (auto [index, fan_in] : weights) {
    const double bound = std::sqrt(6.0 / fan_in);
    double largest = 0;
    for (float v : pa[index].values) largest = std::max(largest, std::fabs(double(v)));
    EXPECT_LE(largest, bound) << pa[index].name;
    EXPECT_GT(largest, 0.9 * bound) << pa[index].name;
    for (float v : pa[index + 1].values) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Sequential, PackAndUnpackGradientsRoundTrip) {
  Sequential model = make_small_cnn(16, 3);
  const std::vector<Parameter> params = model.parameters();
  float next = 1.0f;
  for (const Parameter& p : params) {
    for (float& g : p.gradients) g = next++;
  }
  std::vector<float> fused(std::size_t(total_size(params)));
  pack_gradients(params, fused);
  for (std::size_t i = 0; i < fused.size(); ++i) ASSERT_EQ(fused[i], float(i + 1));
  for (float& f : fused) f *= 2.0f;  // what an all-reduce over two equal ranks would give
  unpack_gradients(fused, params);
  EXPECT_EQ(params.back().gradients.back(), 2.0f * float(fused.size()));
  model.zero_grad();
  for (const Parameter& p : params) {
    for (float g : p.gradients) ASSERT_EQ(g, 0.0f);
  }
  std::vector<float> short_buffer(3);
  EXPECT_THAT([&] { pack_gradients(params, short_buffer); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("fused.size()")));
}

TEST(Sequential, KeepsItsBuffersAtAFixedInputShape) {
  Sequential model = make_small_cnn(20, 4);
  model.initialize(1);
  Tensor x({3, 1, 20, 20}, 0.25f);
  const float* out = model.forward(x).data();
  std::vector<const float*> activations;
  for (int64_t i = 0; i <= model.size(); ++i) activations.push_back(model.activation(i).data());
  Tensor dy(model.activation(model.size()).shape(), 1.0f);
  model.backward(dy);
  EXPECT_EQ(model.forward(x).data(), out);
  for (int64_t i = 0; i <= model.size(); ++i)
    EXPECT_EQ(model.activation(i).data(), activations[std::size_t(i)]);
}

TEST(Sequential, BackwardChainsTheLayers) {
  // dense -> relu -> dense: the model's input gradient equals the layers run by hand.
  std::mt19937_64 rng(testing::kSeed);
  Sequential model;
  Dense& first = model.emplace<Dense>(6, 5);
  model.emplace<ReLU>();
  Dense& second = model.emplace<Dense>(5, 3);
  model.initialize(3);
  Tensor x({4, 6}), dy({4, 3}), dx;
  for (float& v : x.values()) v = float(testing::draw(rng, -1, 1));
  for (float& v : dy.values()) v = float(testing::draw(rng, -1, 1));
  model.forward(x);
  model.backward(dy, &dx);

  Dense a(6, 5), b(5, 3);
  ReLU relu;
  std::copy(first.weight().values().begin(), first.weight().values().end(), a.weight().data());
  std::copy(second.weight().values().begin(), second.weight().values().end(), b.weight().data());
  Tensor h1, h2, y, dh2, dh1, dx_hand;
  a.forward(x, h1);
  relu.forward(h1, h2);
  b.forward(h2, y);
  b.backward(h2, y, dy, &dh2);
  relu.backward(h1, h2, dh2, &dh1);
  a.backward(x, h1, dh1, &dx_hand);
  EXPECT_EQ(std::vector<float>(dx.values().begin(), dx.values().end()),
            std::vector<float>(dx_hand.values().begin(), dx_hand.values().end()));
  const auto model_grads = model.parameters()[0].gradients, hand = a.parameters()[0].gradients;
  EXPECT_TRUE(std::equal(model_grads.begin(), model_grads.end(), hand.begin()));
}

TEST(Sequential, ReportsMisuse) {
  Sequential model;
  EXPECT_THAT(
      [&] {
        model.forward(Tensor({1, 1}));
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("no layers")));
  model.emplace<Dense>(2, 2);
  EXPECT_THROW(model.backward(Tensor({1, 2})), std::logic_error);
  model.forward(Tensor({1, 2}));
  EXPECT_THAT(
      [&] {
        model.backward(Tensor({1, 3}));
      },
      ThrowsMessage<std::invalid_argument>(HasSubstr("dy must have the output's shape [1, 2]")));
  EXPECT_THAT([&] { model.add(nullptr); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("must not be null")));
}

}  // namespace
}  // namespace convgemm::nn
