#pragma once
// Random convolution shapes that are valid by construction (never generated-then-filtered), with
// the awkward cases every sweep must meet: 1x1, strided 1x1, kernel = input, padding > kernel,
// depthwise, channel multipliers, dilation with stride, 23 -> 19 channels, batch 3, and nothing
// square unless by chance. Spatial sizes stay small (<= 14 on the input side) so that the naive
// reference stays fast, also under the sanitizers.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/shape.hpp"

namespace convgemm::test {

enum class ShapeKind {
  general,                 // groups 1..3, kernels 1..5, stride 1..3, dilation 1..3, any padding
  depthwise,               // groups == in_channels == out_channels
  channel_multiplier,      // groups == in_channels, out_channels = 2 or 3 times that
  pointwise,               // 1x1, stride 1, no padding: the engine's no-im2col path
  strided_pointwise,       // 1x1 with stride 2..3 (and maybe padding): goes through im2col
  kernel_equals_input,     // the kernel covers the whole input: a 1x1 output
  padding_exceeds_kernel,  // some padding > kernel: rows and columns that read only zeros
  dilated_strided,         // dilation 2..3 together with stride 2..3
  awkward_channels,        // 23 -> 19 channels, groups 1
  wide_stride_one,         // 32..40 input channels per group, stride 1, padding at most the
                           // dilated kernel's extent: where packed backward_data runs as a
                           // forward convolution with the flipped filter
};
inline constexpr ShapeKind kAllShapeKinds[] = {ShapeKind::general,
                                               ShapeKind::depthwise,
                                               ShapeKind::channel_multiplier,
                                               ShapeKind::pointwise,
                                               ShapeKind::strided_pointwise,
                                               ShapeKind::kernel_equals_input,
                                               ShapeKind::padding_exceeds_kernel,
                                               ShapeKind::dilated_strided,
                                               ShapeKind::awkward_channels,
                                               ShapeKind::wide_stride_one};

// A shape of the given kind; the first overload cycles through the kinds uniformly at random.
Conv2dShape random_valid_shape(std::mt19937_64& rng);
Conv2dShape random_valid_shape(std::mt19937_64& rng, ShapeKind kind);

// A transposed shape with output_padding below the stride (or, at stride 1, below the
// dilation), groups, asymmetric padding, a quarter of them with 32-40 output channels per
// group; input sides <= 8 so that outputs stay small.
ConvTranspose2dShape random_transposed_shape(std::mt19937_64& rng);

// Options that change how the work is cut without changing the result: num_threads 0..4, a
// block_bytes that is the default, tiny (4..2000 bytes: one-row blocks and the non-wave
// backward_data path) or medium (a few rows per block), and any GEMM backend this build has.
// A handful of small shapes, one of each kind, for the finite-difference gradient checks.
std::vector<Conv2dShape> finite_difference_shapes();

Conv2dOptions random_options(std::mt19937_64& rng);
// The same for a plan in `layout`: for nhwc, only the backends that run it (automatic, packed).
Conv2dOptions random_options(std::mt19937_64& rng, Layout layout);

// One line for SCOPED_TRACE, e.g.
//   "options: threads 2, block_bytes 1500, limit 0, gemm onednn, overwrite".
std::string describe(const Conv2dOptions& options);
std::string to_string(GemmBackend backend);

// Uniform integer in [lo, hi].
int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi);

}  // namespace convgemm::test
