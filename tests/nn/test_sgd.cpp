// Sgd: the update rule on hand-computed steps, accumulation of k micro-batches = one step on the
// whole batch (exactly on dyadic gradients; on a CNN with softmax cross-entropy, exactly up to the
// loss gradient and within the rounding bounds of its backward GEMMs after it), option validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "convgemm/nn/activation.hpp"
#include "convgemm/nn/conv2d.hpp"
#include "convgemm/nn/dense.hpp"
#include "convgemm/nn/flatten.hpp"
#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/pooling.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/sgemm.hpp"
#include "helpers.hpp"

namespace convgemm::nn {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
constexpr double kEps = std::numeric_limits<float>::epsilon();

// One parameter tensor with its gradient, owned by the test.
struct Owned {
  std::vector<float> values, gradients;
  Parameter view(std::string name) {
    return {std::move(name), {int64_t(values.size())}, values, gradients};
  }
};

TEST(Sgd, UpdateRuleMatchesHandComputedSteps) {
  Owned p{{1.0f, -2.0f}, {0.5f, 0.5f}};
  Sgd sgd({p.view("w")}, {.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f});
  ASSERT_TRUE(sgd.step());
  // d = g + wd*w = (0.51, 0.48); v = d; w -= 0.1 * v.
  EXPECT_NEAR(p.values[0], 0.949, 4 * kEps);
  EXPECT_NEAR(p.values[1], -2.048, 8 * kEps);
  EXPECT_EQ(p.gradients, (std::vector<float>{0.0f, 0.0f}));  // zeroed by the step
  p.gradients = {1.0f, -1.0f};
  ASSERT_TRUE(sgd.step());
  // d = (1 + 0.00949, -1 - 0.02048); v = 0.9 * (0.51, 0.48) + d = (1.46849, -0.58848).
  EXPECT_NEAR(p.values[0], 0.949 - 0.146849, 8 * kEps);
  EXPECT_NEAR(p.values[1], -2.048 + 0.058848, 16 * kEps);

  Owned plain{{1.0f}, {2.0f}};
  Sgd no_momentum({plain.view("w")}, {.learning_rate = 0.5f});
  no_momentum.step();
  EXPECT_EQ(plain.values[0], 0.0f);  // 1 - 0.5 * 2
}

TEST(Sgd, AccumulatedDyadicMicroBatchesEqualOneFullStepExactly) {
  // Gradients are multiples of 1/4 and k = 4, so the mean of the micro-batch gradients, and every
  // value of three steps with momentum and weight decay, is a short dyadic number: both paths are
  // exact, and must agree bit for bit.
  std::mt19937_64 rng(testing::kSeed);
  const std::size_t n = 64;
  const int64_t k = 4;
  Owned full{testing::dyadic(rng, n, 2, 4), std::vector<float>(n, 0.0f)};
  Owned micro{full.values, std::vector<float>(n, 0.0f)};
  const SgdOptions base{.learning_rate = 0.25f, .momentum = 0.5f, .weight_decay = 0.25f};
  SgdOptions accumulate = base;
  accumulate.accumulation_steps = k;
  Sgd sgd_full({full.view("w")}, base), sgd_micro({micro.view("w")}, accumulate);
  for (int cycle = 0; cycle < 3; ++cycle) {
    std::vector<float> sum(n, 0.0f);
    for (int64_t m = 0; m < k; ++m) {
      const std::vector<float> g = testing::dyadic(rng, n, 2, 4);
      for (std::size_t i = 0; i < n; ++i) {
        micro.gradients[i] += g[i];  // what a layer's backward does
        sum[i] += g[i];
      }
      EXPECT_EQ(sgd_micro.step(), m == k - 1);
      EXPECT_EQ(sgd_micro.pending_micro_batches(), m == k - 1 ? 0 : m + 1);
    }
    for (std::size_t i = 0; i < n; ++i) full.gradients[i] = sum[i] / float(k);
    ASSERT_TRUE(sgd_full.step());
    ASSERT_EQ(full.values, micro.values) << "cycle " << cycle;
  }
}

TEST(Sgd, FlushAppliesTheMeanOfThePendingMicroBatches) {
  Owned p{{1.0f}, {0.0f}};
  Sgd sgd({p.view("w")}, {.learning_rate = 1.0f, .accumulation_steps = 3});
  EXPECT_FALSE(sgd.flush());
  p.gradients[0] += 0.25f;
  EXPECT_FALSE(sgd.step());
  p.gradients[0] += 0.75f;
  EXPECT_FALSE(sgd.step());
  EXPECT_TRUE(sgd.flush());
  EXPECT_EQ(p.values[0], 0.5f);  // 1 - (0.25 + 0.75) / 2
  EXPECT_EQ(sgd.pending_micro_batches(), 0);
}

// conv 3x3 (pad 1) -> ReLU -> maxpool 2 -> flatten -> dense, run layer by layer so that the test
// sees every intermediate gradient.
struct SmallNet {
  Conv2d conv{1, 3, 3, 1, 1};
  ReLU relu;
  MaxPool2d pool{2};
  Flatten flatten;
  Dense dense{48, 5};
  SoftmaxCrossEntropy loss;
  Tensor a, b, c, d, logits, dlogits, dd, dc, db, da;

  std::vector<Parameter> parameters() {
    std::vector<Parameter> all = conv.parameters();
    for (Parameter& p : dense.parameters()) all.push_back(p);
    return all;
  }
  void forward_backward(const Tensor& x, std::span<const int32_t> labels) {
    conv.forward(x, a);
    relu.forward(a, b);
    pool.forward(b, c);
    flatten.forward(c, d);
    dense.forward(d, logits);
    loss.forward(logits, labels);
    loss.backward(dlogits);
    dense.backward(d, logits, dlogits, &dd);
    flatten.backward(c, d, dd, &dc);
    pool.backward(b, c, dc, &db);
    relu.backward(a, b, db, &da);  // da = dL/d(conv output)
    conv.backward(x, a, da, nullptr);
  }
};

Tensor slice(const Tensor& x, int64_t begin, int64_t count) {
  std::vector<int64_t> shape = x.shape();
  const int64_t per_item = x.size() / shape[0];
  shape[0] = count;
  Tensor part(shape);
  std::copy(x.data() + begin * per_item, x.data() + (begin + count) * per_item, part.data());
  return part;
}

TEST(Sgd, AccumulatedMicroBatchesOfACnnEqualOneFullBatchStep) {
  // Which parts are exact, and why. The images and every weight are short dyadic numbers (x in
  // quarters, the conv's weights and bias in sixteenths, the dense ones in 64ths, all in [-1, 1]):
  // every product and partial sum of the forward pass fits in a float's 24 bits, so the logits
  // are exact whatever the order of the additions, and one image's logits are the same bits in
  // a batch of 8 and in a batch of 2 on any GEMM (the batch-invariant Sgemm would give that
  // anyway; OpenBLAS, its fallback without BLIS, rounds an element differently for another M).
  // The loss gradient is then exact too (per-row softmax, times 1/batch, a power of two).
  // The gradient reaching the convolution is exact as explained below; the weight gradients are
  // sums in another order (8 images at once against 4 x 2), bounded below.
  std::mt19937_64 rng(testing::kSeed + 1);
  const int64_t batch = 8, k = 4, micro = batch / k;
  SmallNet full, split;
  auto fill = [&](Tensor& t, int denominator) {
    const std::vector<float> v = testing::dyadic(rng, std::size_t(t.size()), 1, denominator);
    std::copy(v.begin(), v.end(), t.data());
  };
  fill(full.conv.weight(), 16);
  fill(full.conv.bias(), 16);
  fill(full.dense.weight(), 64);
  fill(full.dense.bias(), 64);
  const std::vector<Parameter> pf = full.parameters(), ps = split.parameters();
  for (std::size_t i = 0; i < pf.size(); ++i) {
    std::copy(pf[i].values.begin(), pf[i].values.end(), ps[i].values.begin());
  }
  Tensor x({batch, 1, 8, 8});
  fill(x, 4);
  const std::vector<int32_t> labels = {0, 1, 2, 3, 4, 0, 2, 4};

  const SgdOptions options{.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f};
  SgdOptions accumulated = options;
  accumulated.accumulation_steps = k;
  Sgd sgd_full(pf, options), sgd_split(ps, accumulated);

  full.forward_backward(x, labels);
  // Each element of dd = dlogits * W (5 products) may round differently on the two sides, by at
  // most tolerance(5, sum|terms|) each (in the full batch's scale); max pooling routes it to one
  // position and ReLU keeps or drops it, so it reaches da unchanged.
  const Tensor& w_dense = full.dense.weight();
  std::vector<double> dd_tolerance(std::size_t(full.dd.size()));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t i = 0; i < 48; ++i) {
      double abs_terms = 0;
      for (int64_t j = 0; j < 5; ++j) {
        abs_terms += std::fabs(double(full.dlogits[n * 5 + j]) * w_dense[j * 48 + i]);
      }
      dd_tolerance[std::size_t(n * 48 + i)] = 2.0 * 5.0 * kEps * abs_terms;
    }
  }
  // da (conv output gradient) -> the dd element that max pooling routed to it (its 2x2 window).
  auto da_tolerance = [&](int64_t n, int64_t o, int64_t p) {
    const int64_t window = o * 16 + (p / 8 / 2) * 4 + (p % 8) / 2;
    return dd_tolerance[std::size_t(n * 48 + window)];
  };
  EXPECT_GT(*std::max_element(dd_tolerance.begin(), dd_tolerance.end()), 0.0)
      << "every loss gradient is zero: the test would check nothing";

  std::vector<std::vector<double>> gradient_tolerance(pf.size());
  for (std::size_t i = 0; i < pf.size(); ++i) gradient_tolerance[i].resize(pf[i].values.size());
  const std::vector<float> w_before(pf[0].values.begin(), pf[0].values.end());
  for (int64_t m = 0; m < k; ++m) {
    split.forward_backward(slice(x, m * micro, micro),
                           std::span(labels).subspan(std::size_t(m * micro), std::size_t(micro)));
    // Exact (see the top): the logits, and the loss gradient exactly k times larger (1/micro
    // instead of 1/batch).
    for (int64_t i = 0; i < split.logits.size(); ++i) {
      ASSERT_EQ(split.logits[i], full.logits[m * split.logits.size() + i]) << "logit " << i;
    }
    for (int64_t i = 0; i < split.dlogits.size(); ++i) {
      ASSERT_EQ(split.dlogits[i], float(k) * full.dlogits[m * split.dlogits.size() + i])
          << "loss gradient " << i;
    }
    // The gradient reaching the convolution: dense backward_data runs on the batch-invariant
    // Sgemm, so each image's row is the same sequence of operations in both batches, on a loss
    // gradient exactly k times larger: exactly k times larger too (a power of two commutes with
    // rounding). Without BLIS (the OpenBLAS fallback) only within that GEMM's rounding.
    const bool invariant = Sgemm({.m = 1, .n = 1, .k = 1}).reproducible();
    for (int64_t n = 0; n < micro; ++n) {
      for (int64_t o = 0; o < 3; ++o) {
        for (int64_t p = 0; p < 64; ++p) {
          const int64_t at = (n * 3 + o) * 64 + p, at_full = (m * micro * 3) * 64 + at;
          if (invariant) {
            ASSERT_EQ(split.da[at], float(k) * full.da[at_full]) << "conv gradient " << at;
          } else {
            EXPECT_NEAR(split.da[at] / double(k), full.da[at_full],
                        da_tolerance(m * micro + n, o, p))
                << "conv gradient " << at;
          }
        }
      }
    }
    if (m == k - 1) {
      // The weight gradients differ in how the per-image terms were summed: n terms in any
      // order err by at most n * eps * sum|terms| each way (eps = 2u, a factor 2 to spare).
      // Conv weight (o, c, kh, kw): N*OH*OW terms dY * x with |x| <= 1, each dY also within its
      // da tolerance above (the sum of those, times |x| <= 1, is added); conv bias: the dY.
      // Dense weight (j, i): N terms dlogit * h, both exact; dense bias: the dlogits.
      const int64_t plane = 64, terms_conv = batch * plane + k, terms_dense = batch + k;
      auto check = [&](std::size_t index, int64_t entry, double abs_terms, int64_t terms,
                       double propagated) {
        const double g_full = pf[index].gradients[std::size_t(entry)];
        const double g_split = ps[index].gradients[std::size_t(entry)] / double(k);
        const double tolerance = 2.0 * double(terms) * kEps * abs_terms + propagated;
        EXPECT_NEAR(g_full, g_split, tolerance) << pf[index].name << "[" << entry << "]";
        gradient_tolerance[index][std::size_t(entry)] = tolerance;
      };
      for (int64_t o = 0; o < 3; ++o) {
        double abs_dy = 0, propagated = 0;
        for (int64_t n = 0; n < batch; ++n) {
          for (int64_t p = 0; p < plane; ++p) {
            abs_dy += std::fabs(full.da[(n * 3 + o) * plane + p]);
            propagated += da_tolerance(n, o, p);
          }
        }
        for (int64_t e = o * 9; e < (o + 1) * 9; ++e) check(0, e, abs_dy, terms_conv, propagated);
        check(1, o, abs_dy, terms_conv, propagated);
      }
      for (int64_t j = 0; j < 5; ++j) {
        double abs_dz = 0;
        for (int64_t n = 0; n < batch; ++n) abs_dz += std::fabs(full.dlogits[n * 5 + j]);
        for (int64_t i = 0; i < 48; ++i) {
          double abs_terms = 0;
          for (int64_t n = 0; n < batch; ++n) {
            abs_terms += std::fabs(full.dlogits[n * 5 + j] * full.d[n * 48 + i]);
          }
          check(2, j * 48 + i, abs_terms, terms_dense, /*propagated=*/0.0);
        }
        check(3, j, abs_dz, terms_dense, /*propagated=*/0.0);
      }
    }
    EXPECT_EQ(sgd_split.step(), m == k - 1);
  }
  std::vector<std::vector<double>> w_old(pf.size()), g_old(pf.size());
  for (std::size_t i = 0; i < pf.size(); ++i) {
    w_old[i].assign(pf[i].values.begin(), pf[i].values.end());
    g_old[i].assign(pf[i].gradients.begin(), pf[i].gradients.end());
  }
  ASSERT_TRUE(sgd_full.step());
  EXPECT_NE(std::vector<float>(pf[0].values.begin(), pf[0].values.end()), w_before);
  // After the step: w' = w - lr * (g + wd * w) on both sides (the velocity starts at 0), so they
  // differ by lr times the gradient difference above, plus the roundings of the update itself:
  // four operations per side, each within eps of its result (|w'|, lr*|g|, wd*|w|, ...).
  const double lr = options.learning_rate, wd = options.weight_decay;
  for (std::size_t i = 0; i < pf.size(); ++i) {
    for (std::size_t j = 0; j < pf[i].values.size(); ++j) {
      const double w = w_old[i][j], g = g_old[i][j];
      const double update = std::fabs(g) + wd * std::fabs(w);
      const double tolerance =
          lr * gradient_tolerance[i][j] + 2.0 * 4.0 * kEps * (std::fabs(w) + lr * update + update);
      EXPECT_NEAR(pf[i].values[j], ps[i].values[j], tolerance) << pf[i].name << "[" << j << "]";
    }
  }
}

TEST(Sgd, RejectsBadOptions) {
  Owned p{{1.0f}, {0.0f}};
  EXPECT_THAT(
      [&] { Sgd({p.view("w")}, {.learning_rate = 0.0f}); },
      ThrowsMessage<std::invalid_argument>(HasSubstr("learning_rate must be finite and > 0")));
  EXPECT_THAT([&] { Sgd({p.view("w")}, {.momentum = 1.0f}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("momentum must be in [0, 1)")));
  EXPECT_THAT([&] { Sgd({p.view("w")}, {.weight_decay = -1.0f}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("weight_decay")));
  EXPECT_THAT(
      [&] { Sgd({p.view("w")}, {.accumulation_steps = 0}); },
      ThrowsMessage<std::invalid_argument>(HasSubstr("accumulation_steps must be >= 1 (got 0)")));
}

}  // namespace
}  // namespace convgemm::nn
