#include "support/shapes.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

namespace convgemm::test {
namespace {

constexpr int64_t kMaxInput = 14;  // input side, before padding

// Input size along one axis: at least what the dilated kernel needs beyond the padding (so the
// output is never empty), at most a few more, capped at kMaxInput when that allows it.
int64_t random_input(std::mt19937_64& rng, int64_t kernel, int64_t dilation, int64_t pad_begin,
                     int64_t pad_end) {
  const int64_t needed = std::max<int64_t>(1, dilation * (kernel - 1) + 1 - pad_begin - pad_end);
  const int64_t most = std::max(needed, std::min(kMaxInput, needed + 9));
  return uniform(rng, needed, most);
}

void random_channels(std::mt19937_64& rng, Conv2dShape& s) {
  s.groups = uniform(rng, 1, 3);
  s.in_channels = s.groups * uniform(rng, 1, 5);
  s.out_channels = s.groups * uniform(rng, 1, 5);
}

void random_kernel(std::mt19937_64& rng, Conv2dShape& s, int64_t max_kernel) {
  s.kernel_height = uniform(rng, 1, max_kernel);
  s.kernel_width = uniform(rng, 1, max_kernel);
  s.stride_height = uniform(rng, 1, 3);
  s.stride_width = uniform(rng, 1, 3);
  s.dilation_height = uniform(rng, 1, 3);
  s.dilation_width = uniform(rng, 1, 3);
}

// Each side independently, from none up to one more than the kernel (so sometimes > kernel).
void random_padding(std::mt19937_64& rng, Conv2dShape& s) {
  s.pad_top = uniform(rng, 0, s.kernel_height + 1);
  s.pad_bottom = uniform(rng, 0, s.kernel_height + 1);
  s.pad_left = uniform(rng, 0, s.kernel_width + 1);
  s.pad_right = uniform(rng, 0, s.kernel_width + 1);
}

void random_input_size(std::mt19937_64& rng, Conv2dShape& s) {
  s.in_height = random_input(rng, s.kernel_height, s.dilation_height, s.pad_top, s.pad_bottom);
  s.in_width = random_input(rng, s.kernel_width, s.dilation_width, s.pad_left, s.pad_right);
}

// Along one axis: does any tap of any output read the image rather than the padding?
bool reads_image(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad_begin,
                 int64_t out) {
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t i = o * stride - pad_begin + k * dilation;
      if (i >= 0 && i < in) return true;
    }
  return false;
}

// A valid shape whose every tap falls into the padding (e.g. a 1-row input, padding 1 and
// stride 2) computes nothing but zeros and the bias: the trust check would rightly refuse it
// as a reference. Such shapes get their own hand-written test; here the begin padding is taken
// back (with pad_begin = 0, output 0's first tap reads pixel 0) and the input regrown if the
// dilated kernel no longer fits.
void make_informative(Conv2dShape& s) {
  while (!reads_image(s.in_height, s.kernel_height, s.stride_height, s.dilation_height, s.pad_top,
                      s.out_height())) {
    --s.pad_top;
    s.in_height = std::max(
        s.in_height, s.dilation_height * (s.kernel_height - 1) + 1 - s.pad_top - s.pad_bottom);
  }
  while (!reads_image(s.in_width, s.kernel_width, s.stride_width, s.dilation_width, s.pad_left,
                      s.out_width())) {
    --s.pad_left;
    s.in_width = std::max(s.in_width,
                          s.dilation_width * (s.kernel_width - 1) + 1 - s.pad_left - s.pad_right);
  }
}

}  // namespace

int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

Conv2dShape random_valid_shape(std::mt19937_64& rng) {
  const auto kinds = static_cast<int64_t>(std::size(kAllShapeKinds));
  return random_valid_shape(rng, kAllShapeKinds[uniform(rng, 0, kinds - 1)]);
}

Conv2dShape random_valid_shape(std::mt19937_64& rng, ShapeKind kind) {
  Conv2dShape s;
  s.batch = uniform(rng, 1, 3);
  switch (kind) {
    case ShapeKind::general:
      random_channels(rng, s);
      random_kernel(rng, s, /*max_kernel=*/5);
      random_padding(rng, s);
      random_input_size(rng, s);
      break;
    case ShapeKind::depthwise:
    case ShapeKind::channel_multiplier:
      s.in_channels = s.groups = uniform(rng, 1, 8);
      s.out_channels = s.in_channels * (kind == ShapeKind::depthwise ? 1 : uniform(rng, 2, 3));
      random_kernel(rng, s, /*max_kernel=*/5);
      random_padding(rng, s);
      random_input_size(rng, s);
      break;
    case ShapeKind::pointwise:
      random_channels(rng, s);
      s.dilation_height = uniform(rng, 1, 3);  // no effect on a 1x1 kernel, but allowed
      s.dilation_width = uniform(rng, 1, 3);
      s.in_height = uniform(rng, 1, kMaxInput);
      s.in_width = uniform(rng, 1, kMaxInput);
      break;
    case ShapeKind::strided_pointwise:
      random_channels(rng, s);
      s.stride_height = uniform(rng, 1, 3);
      s.stride_width = uniform(rng, 2, 3);
      if (uniform(rng, 0, 1) == 1) std::swap(s.stride_height, s.stride_width);
      if (uniform(rng, 0, 2) == 0) random_padding(rng, s);
      random_input_size(rng, s);
      break;
    case ShapeKind::kernel_equals_input:
      random_channels(rng, s);
      s.kernel_height = s.in_height = uniform(rng, 1, 6);
      s.kernel_width = s.in_width = uniform(rng, 1, 6);
      s.stride_height = uniform(rng, 1, 3);
      s.stride_width = uniform(rng, 1, 3);
      break;
    case ShapeKind::padding_exceeds_kernel:
      random_channels(rng, s);
      random_kernel(rng, s, /*max_kernel=*/3);
      s.pad_top = s.kernel_height + uniform(rng, 1, 3);
      s.pad_bottom = uniform(rng, 0, s.kernel_height + 3);
      s.pad_left = uniform(rng, 0, s.kernel_width + 3);
      s.pad_right = s.kernel_width + uniform(rng, 1, 3);
      random_input_size(rng, s);
      break;
    case ShapeKind::dilated_strided:
      random_channels(rng, s);
      random_kernel(rng, s, /*max_kernel=*/3);
      s.kernel_height = uniform(rng, 2, 3);
      s.dilation_height = uniform(rng, 2, 3);
      s.dilation_width = uniform(rng, 2, 3);
      s.stride_height = uniform(rng, 2, 3);
      s.stride_width = uniform(rng, 2, 3);
      random_padding(rng, s);
      random_input_size(rng, s);
      break;
    case ShapeKind::awkward_channels:
      s.in_channels = 23;
      s.out_channels = 19;
      random_kernel(rng, s, /*max_kernel=*/3);
      random_padding(rng, s);
      random_input_size(rng, s);
      break;
    case ShapeKind::wide_stride_one:
      s.groups = uniform(rng, 1, 2);
      s.in_channels = s.groups * uniform(rng, 32, 40);
      s.out_channels = s.groups * uniform(rng, 1, 6);
      random_kernel(rng, s, /*max_kernel=*/3);
      s.stride_height = s.stride_width = 1;
      s.dilation_height = uniform(rng, 1, 2);
      s.dilation_width = uniform(rng, 1, 2);
      s.pad_top = uniform(rng, 0, (s.kernel_height - 1) * s.dilation_height);
      s.pad_bottom = uniform(rng, 0, (s.kernel_height - 1) * s.dilation_height);
      s.pad_left = uniform(rng, 0, (s.kernel_width - 1) * s.dilation_width);
      s.pad_right = uniform(rng, 0, (s.kernel_width - 1) * s.dilation_width);
      random_input_size(rng, s);
      break;
  }
  make_informative(s);
  s.validate();  // a throw here is a bug of this generator, reported with the shape
  return s;
}

ConvTranspose2dShape random_transposed_shape(std::mt19937_64& rng) {
  ConvTranspose2dShape s;
  s.batch = uniform(rng, 1, 3);
  s.groups = uniform(rng, 1, 3);
  s.in_channels = s.groups * uniform(rng, 1, 4);
  // A quarter with 32-40 output channels per group: the convolution's input channels, where its
  // stride-1 backward_data (this forward) runs as a forward convolution on the packed driver.
  s.out_channels = s.groups * (uniform(rng, 0, 3) == 0 ? uniform(rng, 32, 40) : uniform(rng, 1, 4));
  s.kernel_height = uniform(rng, 1, 4);
  s.kernel_width = uniform(rng, 1, 4);
  s.stride_height = uniform(rng, 1, 3);
  s.stride_width = uniform(rng, 1, 3);
  s.dilation_height = uniform(rng, 1, 3);
  s.dilation_width = uniform(rng, 1, 3);
  s.in_height = uniform(rng, 1, 8);
  s.in_width = uniform(rng, 1, 8);
  // Below the stride, or below the dilation (the only choice at stride 1 with dilation > 1).
  s.output_padding_height = uniform(rng, 0, std::max(s.stride_height, s.dilation_height) - 1);
  s.output_padding_width = uniform(rng, 0, std::max(s.stride_width, s.dilation_width) - 1);
  s.pad_top = uniform(rng, 0, s.dilation_height * (s.kernel_height - 1));
  s.pad_bottom = uniform(rng, 0, s.dilation_height * (s.kernel_height - 1));
  s.pad_left = uniform(rng, 0, s.dilation_width * (s.kernel_width - 1));
  s.pad_right = uniform(rng, 0, s.dilation_width * (s.kernel_width - 1));
  // Padding crops the output; give back what would leave it empty.
  while (s.out_height() < 1) --(s.pad_top > s.pad_bottom ? s.pad_top : s.pad_bottom);
  while (s.out_width() < 1) --(s.pad_left > s.pad_right ? s.pad_left : s.pad_right);
  // As make_informative: some tap must land inside the output, not only in the cropped border
  // (an input pixel's taps land at i * stride - pad_begin + k * dilation).
  while (!reads_image(s.out_height(), s.kernel_height, s.stride_height, s.dilation_height,
                      s.pad_top, s.in_height)) {
    --s.pad_top;
  }
  while (!reads_image(s.out_width(), s.kernel_width, s.stride_width, s.dilation_width, s.pad_left,
                      s.in_width)) {
    --s.pad_left;
  }
  s.validate();
  return s;
}

Conv2dOptions random_options(std::mt19937_64& rng) { return random_options(rng, Layout::nchw); }

Conv2dOptions random_options(std::mt19937_64& rng, Layout layout) {
  Conv2dOptions options;
  options.num_threads = static_cast<int>(uniform(rng, 0, 4));
  switch (uniform(rng, 0, 2)) {
    case 0:
      options.block_bytes = 0;  // this machine's L2: usually one block per image here
      break;
    case 1:
      options.block_bytes = static_cast<std::size_t>(uniform(rng, 4, 2000));
      break;
    default:
      options.block_bytes = static_cast<std::size_t>(uniform(rng, 2001, 65536));
      break;
  }
  // Every GEMM backend this build has: each is a fast path that must match the oracle.
  // (nhwc runs on the packed driver only.)
  std::vector<GemmBackend> backends = {GemmBackend::automatic};
  if (layout == Layout::nchw) backends.push_back(GemmBackend::openblas);
  if (layout == Layout::nchw && gemm_backend_available(GemmBackend::onednn))
    backends.push_back(GemmBackend::onednn);
  if (gemm_backend_available(GemmBackend::packed)) backends.push_back(GemmBackend::packed);
  options.gemm_backend =
      backends[static_cast<std::size_t>(uniform(rng, 0, int64_t(backends.size()) - 1))];
  return options;
}

std::string to_string(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::automatic:
      return "automatic";
    case GemmBackend::openblas:
      return "openblas";
    case GemmBackend::onednn:
      return "onednn";
    case GemmBackend::packed:
      return "packed";
  }
  return "gemm_backend " + std::to_string(static_cast<int>(backend));
}

std::string describe(const Conv2dOptions& options) {
  return "options: threads " + std::to_string(options.num_threads) + ", block_bytes " +
         std::to_string(options.block_bytes) + ", limit " +
         std::to_string(options.workspace_limit) + ", gemm " + to_string(options.gemm_backend) +
         (options.accumulate_gradients ? ", accumulate" : ", overwrite");
}

// Small shapes for the finite-difference checks (naive in double is slow): stride,
// asymmetric padding, dilation with and without stride, groups, a channel multiplier and a
// depthwise kernel with padding beyond the kernel.
std::vector<Conv2dShape> finite_difference_shapes() {
  Conv2dShape plain{.batch = 2,
                    .in_channels = 3,
                    .in_height = 5,
                    .in_width = 6,
                    .out_channels = 4,
                    .kernel_height = 3,
                    .kernel_width = 3};
  plain.set_padding(1);
  const Conv2dShape strided{.batch = 2,
                            .in_channels = 2,
                            .in_height = 7,
                            .in_width = 6,
                            .out_channels = 3,
                            .kernel_height = 3,
                            .kernel_width = 2,
                            .stride_height = 2,
                            .stride_width = 1,
                            .pad_top = 0,
                            .pad_bottom = 1,
                            .pad_left = 2,
                            .pad_right = 1};
  const Conv2dShape dilated{.batch = 1,
                            .in_channels = 2,
                            .in_height = 8,
                            .in_width = 7,
                            .out_channels = 2,
                            .kernel_height = 2,
                            .kernel_width = 3,
                            .stride_height = 2,
                            .stride_width = 2,
                            .pad_top = 1,
                            .pad_bottom = 0,
                            .pad_left = 0,
                            .pad_right = 2,
                            .dilation_height = 3,
                            .dilation_width = 2};
  Conv2dShape grouped{.batch = 2,
                      .in_channels = 4,
                      .in_height = 5,
                      .in_width = 5,
                      .out_channels = 6,
                      .kernel_height = 3,
                      .kernel_width = 3,
                      .groups = 2};
  grouped.set_padding(1);
  const Conv2dShape multiplier{.batch = 3,
                               .in_channels = 3,
                               .in_height = 3,
                               .in_width = 4,
                               .out_channels = 6,
                               .kernel_height = 2,
                               .kernel_width = 2,
                               .pad_top = 3,
                               .pad_bottom = 0,
                               .pad_left = 1,
                               .pad_right = 2,
                               .groups = 3};

  const Conv2dShape strided_both_axes{.batch = 3,
                                      .in_channels = 2,
                                      .in_height = 7,
                                      .in_width = 6,
                                      .out_channels = 3,
                                      .kernel_height = 3,
                                      .kernel_width = 2,
                                      .stride_height = 2,
                                      .stride_width = 3,
                                      .pad_top = 2,
                                      .pad_bottom = 0,
                                      .pad_left = 1,
                                      .pad_right = 1};
  const Conv2dShape dilated_stride_1{.batch = 2,
                                     .in_channels = 2,
                                     .in_height = 8,
                                     .in_width = 7,
                                     .out_channels = 2,
                                     .kernel_height = 2,
                                     .kernel_width = 3,
                                     .stride_height = 1,
                                     .stride_width = 2,
                                     .pad_top = 0,
                                     .pad_bottom = 2,
                                     .pad_left = 1,
                                     .pad_right = 0,
                                     .dilation_height = 3,
                                     .dilation_width = 2};
  Conv2dShape grouped_rectangular{.batch = 2,
                                  .in_channels = 6,
                                  .in_height = 4,
                                  .in_width = 5,
                                  .out_channels = 4,
                                  .kernel_height = 3,
                                  .kernel_width = 2,
                                  .groups = 2};
  grouped_rectangular.set_padding(1, 0);
  const Conv2dShape depthwise{.batch = 3,
                              .in_channels = 3,
                              .in_height = 4,
                              .in_width = 3,
                              .out_channels = 3,
                              .kernel_height = 2,
                              .kernel_width = 2,
                              .pad_top = 0,
                              .pad_bottom = 3,
                              .pad_left = 2,
                              .pad_right = 0,
                              .groups = 3};
  return {plain,      strided,           dilated,          grouped,
          multiplier, strided_both_axes, dilated_stride_1, grouped_rectangular,
          depthwise};
}

}  // namespace convgemm::test
