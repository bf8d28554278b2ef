// libFuzzer target: any ConvTranspose2dShape either is refused by validate() with
// std::invalid_argument, or, when its tensors are tiny, a plan computes all three passes on
// dyadic data and equals the scatter-form definition exactly: naive::conv_transpose2d_forward
// for the forward pass, and for the gradients the loops below, which differentiate that same
// scatter sum directly (they share nothing with the engine's mapping onto a convolution).
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/naive.hpp"
#include "dyadic.hpp"
#include "fuzz_input.hpp"

namespace {

using convgemm::ConvTranspose2dShape;

// y[n, o, r, s] += x[n, c, ih, iw] * w[c, o - g*O/G, kh, kw],  r = ih*sh - pt + kh*dh, s alike.
// Visits every (x element, w element, y element) triple of that sum.
template <class Visit>
void for_each_term(const ConvTranspose2dShape& t, Visit visit) {
  const int64_t C = t.in_channels, O = t.out_channels, G = t.groups;
  const int64_t CG = C / G, OG = O / G, OH = t.out_height(), OW = t.out_width();
  for (int64_t n = 0; n < t.batch; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t g = c / CG;
      for (int64_t ih = 0; ih < t.in_height; ++ih) {
        for (int64_t iw = 0; iw < t.in_width; ++iw) {
          for (int64_t og = 0; og < OG; ++og) {
            for (int64_t kh = 0; kh < t.kernel_height; ++kh) {
              const int64_t r = ih * t.stride_height - t.pad_top + kh * t.dilation_height;
              if (r < 0 || r >= OH) continue;
              for (int64_t kw = 0; kw < t.kernel_width; ++kw) {
                const int64_t s = iw * t.stride_width - t.pad_left + kw * t.dilation_width;
                if (s < 0 || s >= OW) continue;
                const int64_t o = g * OG + og;
                visit(((n * C + c) * t.in_height + ih) * t.in_width + iw,
                      ((c * OG + og) * t.kernel_height + kh) * t.kernel_width + kw,
                      ((n * O + o) * OH + r) * OW + s);
              }
            }
          }
        }
      }
    }
  }
}

std::vector<float> rounded(const std::vector<double>& v) { return {v.begin(), v.end()}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  convgemm::fuzz::FuzzInput in({data, size});
  ConvTranspose2dShape t;
  convgemm::fuzz::read_shared_fields(in, t);
  t.output_padding_height = in.field();
  t.output_padding_width = in.field();
  const convgemm::Conv2dOptions options = in.options();
  try {
    t.validate();
  } catch (const std::invalid_argument&) {
    return 0;
  }
  const std::string name = t.to_string();
  const double flops =
      2.0 * double(t.input_elements()) * double(t.weight_elements()) / double(t.in_channels);
  if (!convgemm::fuzz::is_tiny(t.input_elements(), t.weight_elements(), t.output_elements(),
                               flops)) {
    return 0;
  }
  std::unique_ptr<convgemm::ConvTranspose2d> plan;
  try {
    plan = std::make_unique<convgemm::ConvTranspose2d>(t, options);
  } catch (const std::invalid_argument&) {
    return 0;  // the options refused by name
  }
  using convgemm::fuzz::dyadic;
  using convgemm::fuzz::expect_equal;
  const uint64_t seed = in.byte();
  const auto x = dyadic(std::size_t(t.input_elements()), seed);
  const auto w = dyadic(std::size_t(t.weight_elements()), seed + 1);
  const auto bias = dyadic(std::size_t(t.out_channels), seed + 2);
  const auto dy = dyadic(std::size_t(t.output_elements()), seed + 3);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<float> y(dy.size(), nan), y_naive(dy.size());
  plan->forward(x.data(), w.data(), bias.data(), y.data());
  convgemm::naive::conv_transpose2d_forward(t, x.data(), w.data(), bias.data(), y_naive.data());
  expect_equal(y, y_naive, "forward", name);

  std::vector<double> dx_ref(x.size()), dw_ref(w.size()), db_ref(bias.size());
  for_each_term(t, [&](int64_t xi, int64_t wi, int64_t yi) {
    dx_ref[std::size_t(xi)] += double(dy[std::size_t(yi)]) * w[std::size_t(wi)];
    dw_ref[std::size_t(wi)] += double(dy[std::size_t(yi)]) * x[std::size_t(xi)];
  });
  const int64_t plane = t.out_height() * t.out_width();
  for (std::size_t i = 0; i < dy.size(); ++i) {
    db_ref[std::size_t(int64_t(i) / plane % t.out_channels)] += dy[i];
  }

  std::vector<float> dx(x.size(), nan);
  plan->backward_data(dy.data(), w.data(), dx.data());
  expect_equal(dx, rounded(dx_ref), "backward_data", name);

  std::vector<float> dw(w.size(), nan), db(bias.size(), nan);
  plan->backward_weights(x.data(), dy.data(), dw.data(), db.data());
  expect_equal(dw, rounded(dw_ref), "backward_weights dw", name);
  expect_equal(db, rounded(db_ref), "backward_weights dbias", name);
  return 0;
}
