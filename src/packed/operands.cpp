#include "operands.hpp"

#include <algorithm>
#include <cstring>

#include "../im2col.hpp"

namespace convgemm::detail {
namespace {

// Where lane l of step t goes in a block of panels `width` wide over `steps` steps.
struct PanelCursor {
  float* dst;
  int64_t steps, width;
  float* at(int64_t lane, int64_t step) const {
    return dst + (lane / width) * steps * width + step * width + lane % width;
  }
  // Lanes [lane, lane + count) of one step, written run by run within each panel: value(i) is
  // the i-th of them.
  template <class Value>
  void put(int64_t step, int64_t lane, int64_t count, Value value) const {
    int64_t i = 0;
    while (i < count) {
      float* out = at(lane + i, step);
      const int64_t run = std::min(width - (lane + i) % width, count - i);
      for (int64_t r = 0; r < run; ++r) out[r] = value(i + r);
      i += run;
    }
  }
  void zeros(int64_t step, int64_t lane, int64_t count) const {
    put(step, lane, count, [](int64_t) { return 0.0f; });
  }
  // The lanes of the last panel past `lanes`, for every step.
  void pad(int64_t lanes) const {
    const int64_t padded = (lanes + width - 1) / width * width;
    for (int64_t t = 0; t < steps; ++t) zeros(t, lanes, padded - lanes);
  }
};

}  // namespace

int64_t prepacked_floats(int64_t lanes, int64_t depth, int64_t width) {
  return (lanes + width - 1) / width * width * depth;
}

const float* LanesAlongRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                    int64_t width, float* buffer) const {
  const PanelCursor out{buffer, steps, width};
  for (int64_t t = 0; t < steps; ++t) {
    const float* row = m + (step + t) * ld + first;
    out.put(t, 0, lanes, [row](int64_t i) { return row[i]; });
  }
  out.pad(lanes);
  return buffer;
}

const float* LanesAcrossRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                     int64_t width, float* buffer) const {
  const PanelCursor out{buffer, steps, width};
  // Lane by lane, each reading its row's run of steps (per image) and writing it `width` apart.
  for (int64_t lane = 0; lane < lanes; ++lane) {
    int64_t t = 0;
    while (t < steps) {
      const int64_t s = step + t, n = s / per_image, p = s % per_image;
      const int64_t run = std::min(per_image - p, steps - t);
      const float* src = m + n * image_stride + (first + lane) * ld + p;
      float* dst = out.at(lane, t);
      for (int64_t r = 0; r < run; ++r) dst[r * width] = src[r];
      t += run;
    }
  }
  out.pad(lanes);
  return buffer;
}

const float* ImageColumns::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                  int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), sw = s.stride_width;
  const PanelCursor out{buffer, steps, width};
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t k = step + t, c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    const TapRange taps = tap_range(s, kw);
    const float* plane = x_group + c * H * W;
    // The lanes cut into runs of one output row each: zeros, the pixels inside, zeros.
    for (int64_t lane = 0; lane < lanes;) {
      const int64_t p = first + lane, oh = p / OW, ow = p % OW;
      const int64_t run = std::min(OW - ow, lanes - lane);
      const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
      if (ih < 0 || ih >= H) {
        out.zeros(t, lane, run);
      } else {
        const int64_t inside_begin = std::clamp(taps.ow_begin, ow, ow + run);
        const int64_t inside_end = std::clamp(taps.ow_end, inside_begin, ow + run);
        out.zeros(t, lane, inside_begin - ow);
        if (inside_end > inside_begin) {  // (the first pixel's address exists only then)
          const float* src = plane + ih * W + inside_begin * sw + taps.iw_offset;
          if (sw == 1) {
            out.put(t, lane + inside_begin - ow, inside_end - inside_begin,
                    [src](int64_t i) { return src[i]; });
          } else {
            out.put(t, lane + inside_begin - ow, inside_end - inside_begin,
                    [src, sw](int64_t i) { return src[i * sw]; });
          }
        }
        out.zeros(t, lane + inside_end - ow, ow + run - inside_end);
      }
      lane += run;
    }
  }
  out.pad(lanes);
  return buffer;
}

const float* ImageRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                               int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), P = s.gemm_p(), sw = s.stride_width;
  const int64_t image_stride = s.in_channels * H * W;
  const PanelCursor out{buffer, steps, width};
  for (int64_t lane = 0; lane < lanes; ++lane) {
    const int64_t k = first + lane, c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    const TapRange taps = tap_range(s, kw);
    float* dst = out.at(lane, 0);
    // The steps cut into runs of one output row of one image each.
    for (int64_t t = 0; t < steps;) {
      const int64_t q = step + t, n = q / P, oh = q % P / OW, ow = q % OW;
      const int64_t run = std::min(OW - ow, steps - t);
      const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
      float* row_out = dst + t * width;
      if (ih < 0 || ih >= H) {
        for (int64_t r = 0; r < run; ++r) row_out[r * width] = 0.0f;
      } else {
        const float* row = x_group + n * image_stride + c * H * W + ih * W;
        for (int64_t r = 0; r < run; ++r) {
          const int64_t o = ow + r;
          row_out[r * width] =
              o >= taps.ow_begin && o < taps.ow_end ? row[o * sw + taps.iw_offset] : 0.0f;
        }
      }
      t += run;
    }
  }
  out.pad(lanes);
  return buffer;
}

}  // namespace convgemm::detail
