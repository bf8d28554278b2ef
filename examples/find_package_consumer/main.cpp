// Links the installed static library and checks one convolution against the naive loops, so
// that a broken install (missing headers, unresolved BLAS or TBB symbols) fails loudly.
#include <convgemm/convgemm.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  convgemm::Conv2dShape shape{.batch = 2,
                              .in_channels = 4,
                              .in_height = 9,
                              .in_width = 7,
                              .out_channels = 6,
                              .kernel_height = 3,
                              .kernel_width = 3,
                              .stride_height = 2,
                              .groups = 2};
  shape.set_padding(1);
  std::vector<float> x(shape.input_elements()), w(shape.weight_elements());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 7) - 3.0f;
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i % 5) * 0.25f - 0.5f;

  std::vector<float> y(shape.output_elements()), y_naive(y.size());
  convgemm::conv2d_forward(shape, x.data(), w.data(), nullptr, y.data());
  convgemm::naive::conv2d_forward(shape, x.data(), w.data(), nullptr, y_naive.data());

  // Inputs are small integers times powers of two: every product and sum is exact in float.
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] != y_naive[i]) {
      std::printf("mismatch at %zu: %g != %g\n", i, y[i], y_naive[i]);
      return 1;
    }
  }
  std::printf("installed convgemm OK: %s\n", shape.to_string().c_str());
  return 0;
}
