// libFuzzer target: any Conv2dShape either is refused by validate() with std::invalid_argument,
// or, when its tensors are tiny, a plan computes all three passes on dyadic data and equals
// naive:: exactly. Extreme field values (strides, paddings, dilations up to 2^63 - 1) on tiny
// tensors are exactly where index arithmetic overflows.
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "convgemm/conv2d.hpp"
#include "convgemm/naive.hpp"
#include "dyadic.hpp"
#include "fuzz_input.hpp"

using convgemm::Conv2dShape;
using convgemm::fuzz::dyadic;
using convgemm::fuzz::expect_equal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  convgemm::fuzz::FuzzInput in({data, size});
  Conv2dShape s;
  convgemm::fuzz::read_shared_fields(in, s);
  const bool same_padding = in.byte() & 1;  // the paddings from set_same_padding() instead
  const convgemm::Conv2dOptions options = in.options();
  try {
    if (same_padding) s.set_same_padding();
    s.validate();
  } catch (const std::invalid_argument&) {
    return 0;
  }
  // Accepted: every getter is defined (validate() checked the products they form).
  const std::string name = s.to_string();
  if (!convgemm::fuzz::is_tiny(s.input_elements(), s.weight_elements(), s.output_elements(),
                               s.flops(convgemm::Pass::forward))) {
    return 0;
  }
  std::unique_ptr<convgemm::Conv2d> conv;
  try {
    conv = std::make_unique<convgemm::Conv2d>(s, options);
  } catch (const std::invalid_argument&) {
    return 0;  // the options refused by name (a workspace_limit too small for one block)
  }
  const uint64_t seed = in.byte();
  const auto x = dyadic(std::size_t(s.input_elements()), seed);
  const auto w = dyadic(std::size_t(s.weight_elements()), seed + 1);
  const auto bias = dyadic(std::size_t(s.bias_elements()), seed + 2);
  const auto dy = dyadic(std::size_t(s.output_elements()), seed + 3);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<float> y(dy.size(), nan), y_naive(dy.size());
  conv->forward(x.data(), w.data(), bias.data(), y.data());
  convgemm::naive::conv2d_forward(s, x.data(), w.data(), bias.data(), y_naive.data());
  expect_equal(y, y_naive, "forward", name);

  std::vector<float> dx(x.size(), nan), dx_naive(x.size());
  conv->backward_data(dy.data(), w.data(), dx.data());
  convgemm::naive::conv2d_backward_data(s, dy.data(), w.data(), dx_naive.data());
  expect_equal(dx, dx_naive, "backward_data", name);

  std::vector<float> dw(w.size(), nan), dw_naive(w.size()), db(bias.size(), nan),
      db_naive(bias.size());
  conv->backward_weights(x.data(), dy.data(), dw.data(), db.data());
  convgemm::naive::conv2d_backward_weights(s, x.data(), dy.data(), dw_naive.data(),
                                           db_naive.data());
  expect_equal(dw, dw_naive, "backward_weights dw", name);
  expect_equal(db, db_naive, "backward_weights dbias", name);
  return 0;
}
