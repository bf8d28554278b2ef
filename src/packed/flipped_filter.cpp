#include "flipped_filter.hpp"

#include <algorithm>

namespace convgemm::detail {
namespace {

// Output channels per group the forward convolution needs at least: its gather costs the same
// per position whatever their count, and with few it dominates (measured 2026-12-04, the
// textbook's 3 input channels, 5x5: 19 GFLOP/s that way, 76 through col2im).
constexpr int64_t kMinForwardOutputs = 32;

}  // namespace

bool data_gradient_fits_a_forward(const Conv2dShape& s) {
  const int64_t extent_h = (s.kernel_height - 1) * s.dilation_height;
  const int64_t extent_w = (s.kernel_width - 1) * s.dilation_width;
  return s.stride_height == 1 && s.stride_width == 1 && s.pad_top <= extent_h &&
         s.pad_bottom <= extent_h && s.pad_left <= extent_w && s.pad_right <= extent_w;
}

bool data_gradient_is_a_forward(const Conv2dShape& s) {
  return data_gradient_fits_a_forward(s) && s.in_channels / s.groups >= kMinForwardOutputs;
}

Conv2dShape data_gradient_forward_shape(const Conv2dShape& s) {
  const int64_t extent_h = (s.kernel_height - 1) * s.dilation_height;
  const int64_t extent_w = (s.kernel_width - 1) * s.dilation_width;
  return Conv2dShape{.batch = s.batch,
                     .in_channels = s.out_channels,
                     .in_height = s.out_height(),
                     .in_width = s.out_width(),
                     .out_channels = s.in_channels,
                     .kernel_height = s.kernel_height,
                     .kernel_width = s.kernel_width,
                     .pad_top = extent_h - s.pad_top,
                     .pad_bottom = extent_h - s.pad_bottom,
                     .pad_left = extent_w - s.pad_left,
                     .pad_right = extent_w - s.pad_right,
                     .dilation_height = s.dilation_height,
                     .dilation_width = s.dilation_width,
                     .groups = s.groups,
                     .layout = s.layout};
}

const float* FlippedFilter::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                   int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t T = s.kernel_height * s.kernel_width, M = s.gemm_m(), K = s.gemm_k();
  const int64_t group_channels = s.in_channels / s.groups;
  if (s.layout == Layout::nhwc) {
    // Step k' = (tap', o): its lanes are C/G contiguous floats of tap T-1-tap' in OHWI row o.
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t k = step + t, o = k % M, tap = T - 1 - k / M;
      const float* lane_zero = w_group + o * K + tap * group_channels;
      for (int64_t panel = 0; panel * width < lanes; ++panel) {
        const int64_t used = std::min(width, lanes - panel * width);
        const float* src = lane_zero + first + panel * width;
        float* dst = buffer + panel * steps * width + t * width;
        std::copy(src, src + used, dst);
        std::fill(dst + used, dst + width, 0.0f);
      }
    }
    return buffer;
  }
  // Steps k' = (o, tap'): in OIHW row o, each lane (channel) holds its T taps contiguously, so
  // a panel takes one filter row at a time, each lane's taps read in order and written in
  // reverse down the panel's column.
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t lane_begin = first + panel * width;
    const int64_t used = std::min(width, lanes - panel * width);
    float* panel_start = buffer + panel * steps * width;
    for (int64_t k = step; k < step + steps;) {
      const int64_t o = k / T, tap_begin = k % T;
      const int64_t run = std::min(T - tap_begin, step + steps - k);
      const float* src = w_group + o * K + lane_begin * T + (T - 1 - tap_begin);
      float* dst = panel_start + (k - step) * width;
      for (int64_t lane = 0; lane < used; ++lane) {
        for (int64_t j = 0; j < run; ++j) dst[j * width + lane] = src[lane * T - j];
      }
      for (int64_t j = 0; j < run; ++j)
        std::fill(dst + j * width + used, dst + (j + 1) * width, 0.0f);
      k += run;
    }
  }
  return buffer;
}

}  // namespace convgemm::detail
