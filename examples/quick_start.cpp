// The smallest complete use of the engine: one 3x3 convolution layer, forward and both
// gradients, through a plan that is built once and reused.
#include <convgemm/convgemm.hpp>

#include <cstdio>
#include <vector>

int main() {
  convgemm::Conv2dShape shape{.batch = 2,
                              .in_channels = 3,
                              .in_height = 32,
                              .in_width = 32,
                              .out_channels = 16,
                              .kernel_height = 3,
                              .kernel_width = 3};
  shape.set_padding(1);  // 'same' output size for a 3x3 kernel at stride 1

  std::vector<float> x(shape.input_elements(), 1.0f), w(shape.weight_elements(), 0.01f);
  std::vector<float> bias(shape.bias_elements(), 0.5f), y(shape.output_elements());
  convgemm::Conv2d conv(shape);  // validates and allocates its workspace, once
  conv.forward(x.data(), w.data(), bias.data(), y.data());

  std::vector<float> dy(y.size(), 1.0f), dx(x.size()), dw(w.size()), dbias(bias.size());
  conv.backward_data(dy.data(), w.data(), dx.data());
  conv.backward_weights(x.data(), dy.data(), dw.data(), dbias.data());

  // Centre pixel: 27 taps of 1 * 0.01, plus the bias.
  std::printf("%s\ny[0,0,16,16] = %.2f (expected 0.77), dbias[0] = %.0f (expected %d)\n",
              shape.to_string().c_str(), y[16 * 32 + 16], dbias[0], 2 * 32 * 32);
  std::printf("workspace: %zu bytes on %d threads\n", conv.workspace_bytes(), conv.num_threads());
}
