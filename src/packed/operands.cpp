#include "operands.hpp"

#include <algorithm>
#include <cassert>
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

// Operands whose lanes run along the source's rows (each lane a contiguous run of steps) are
// packed through a small tile: kChunk steps of each lane of one panel are read first (runs of
// the source), then written to the panel step by step, so that every store to the panel is
// contiguous. (Writing lane by lane, `width` floats apart, touched a new cache line per float:
// 44% of backward_weights' time went into that gather.)
constexpr int64_t kChunk = 64;
constexpr int64_t kMaxWidth = 64;  // BLIS's single-precision tiles are at most 32 wide

// Four floats: one SSE register, which every x86-64 CPU has (the library is built without
// -march); GCC turns the shuffles below into unpcklps/unpckhps/movlhps/movhlps.
using Vec4 = float __attribute__((vector_size(4 * sizeof(float))));

// Panel `dst` (width lanes over `steps` steps), steps [t0, t0 + chunk): lane l of step s is
// tile[l * kChunk + s]; lanes from `used` up to `width` are zeros. Four lanes by four steps at a
// time through registers (a 4x4 transpose), the rest one by one.
void transpose_into_panel(const float* tile, int64_t used, int64_t chunk, int64_t width,
                          float* dst) {
  const int64_t lanes4 = used / 4 * 4, steps4 = chunk / 4 * 4;
  for (int64_t lane = 0; lane < lanes4; lane += 4) {
    for (int64_t s = 0; s < steps4; s += 4) {
      Vec4 v0, v1, v2, v3;
      __builtin_memcpy(&v0, tile + (lane + 0) * kChunk + s, sizeof v0);
      __builtin_memcpy(&v1, tile + (lane + 1) * kChunk + s, sizeof v1);
      __builtin_memcpy(&v2, tile + (lane + 2) * kChunk + s, sizeof v2);
      __builtin_memcpy(&v3, tile + (lane + 3) * kChunk + s, sizeof v3);
      const Vec4 t0 = __builtin_shufflevector(v0, v1, 0, 4, 1, 5);
      const Vec4 t1 = __builtin_shufflevector(v0, v1, 2, 6, 3, 7);
      const Vec4 t2 = __builtin_shufflevector(v2, v3, 0, 4, 1, 5);
      const Vec4 t3 = __builtin_shufflevector(v2, v3, 2, 6, 3, 7);
      const Vec4 w0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
      const Vec4 w1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
      const Vec4 w2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
      const Vec4 w3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
      __builtin_memcpy(dst + (s + 0) * width + lane, &w0, sizeof w0);
      __builtin_memcpy(dst + (s + 1) * width + lane, &w1, sizeof w1);
      __builtin_memcpy(dst + (s + 2) * width + lane, &w2, sizeof w2);
      __builtin_memcpy(dst + (s + 3) * width + lane, &w3, sizeof w3);
    }
    for (int64_t s = steps4; s < chunk; ++s) {
      for (int64_t l = lane; l < lane + 4; ++l) dst[s * width + l] = tile[l * kChunk + s];
    }
  }
  for (int64_t s = 0; s < chunk; ++s) {
    float* out = dst + s * width;
    for (int64_t lane = lanes4; lane < used; ++lane) out[lane] = tile[lane * kChunk + s];
    for (int64_t lane = used; lane < width; ++lane) out[lane] = 0.0f;
  }
}

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
  assert(width <= kMaxWidth);
  alignas(64) float tile[kMaxWidth * kChunk];
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t used = std::min(width, lanes - panel * width);
    for (int64_t t0 = 0; t0 < steps; t0 += kChunk) {
      const int64_t chunk = std::min(kChunk, steps - t0);
      for (int64_t lane = 0; lane < used; ++lane) {
        const float* row = m + (first + panel * width + lane) * ld;
        // The chunk's runs within one image each.
        for (int64_t t = 0; t < chunk;) {
          const int64_t s = step + t0 + t, n = s / per_image, p = s % per_image;
          const int64_t run = std::min(per_image - p, chunk - t);
          const float* src = row + n * image_stride + p;
          std::copy(src, src + run, tile + lane * kChunk + t);
          t += run;
        }
      }
      transpose_into_panel(tile, used, chunk, width, buffer + panel * steps * width + t0 * width);
    }
  }
  return buffer;
}

const float* ImageColumns::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                  int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), sw = s.stride_width;
  // The lanes cut into runs that stay within one output row and one panel, a group of panels
  // at a time: each step then copies whole runs into contiguous stretches of its panels (no
  // division per element, no store more than one panel row apart from the previous one).
  constexpr int64_t kGroupPanels = 8;
  struct Run {
    int64_t oh, ow, length;
    float* out;  // the run's first lane at step 0; step t is t * width further
  };
  Run runs[kGroupPanels * kMaxWidth];
  assert(width <= kMaxWidth);
  const int64_t panel_floats = steps * width;
  for (int64_t group = 0; group * kGroupPanels * width < lanes; ++group) {
    const int64_t group_begin = group * kGroupPanels * width;
    const int64_t group_end = std::min(lanes, group_begin + kGroupPanels * width);
    int64_t run_count = 0;
    for (int64_t lane = group_begin; lane < group_end;) {
      const int64_t p = first + lane, ow = p % OW, in_panel = lane % width;
      const int64_t length = std::min({OW - ow, width - in_panel, group_end - lane});
      runs[run_count++] = {p / OW, ow, length, buffer + lane / width * panel_floats + in_panel};
      lane += length;
    }
    int64_t k = step, c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    for (int64_t t = 0; t < steps; ++t) {
      const TapRange taps = tap_range(s, kw);
      const float* plane = x_group + c * H * W;
      const int64_t ih_offset = kh * s.dilation_height - s.pad_top;
      for (int64_t r = 0; r < run_count; ++r) {
        const Run& run = runs[r];
        float* out = run.out + t * width;
        const int64_t ih = run.oh * s.stride_height + ih_offset;
        if (ih < 0 || ih >= H) {
          std::fill(out, out + run.length, 0.0f);
          continue;
        }
        const int64_t begin = std::clamp(taps.ow_begin, run.ow, run.ow + run.length);
        const int64_t end = std::clamp(taps.ow_end, begin, run.ow + run.length);
        std::fill(out, out + (begin - run.ow), 0.0f);
        if (end > begin) {  // (the first pixel's address exists only then)
          const float* src = plane + ih * W + begin * sw + taps.iw_offset;
          float* copy_out = out + (begin - run.ow);
          if (sw == 1) {
            std::copy(src, src + (end - begin), copy_out);
          } else {
            for (int64_t i = 0; i < end - begin; ++i) copy_out[i] = src[i * sw];
          }
        }
        std::fill(out + (end - run.ow), out + run.length, 0.0f);
      }
      if (++kw == KW) {
        kw = 0;
        if (++kh == KH) kh = 0, ++c;
      }
    }
  }
  PanelCursor{buffer, steps, width}.pad(lanes);
  return buffer;
}

const float* ImageRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                               int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), P = s.gemm_p(), sw = s.stride_width;
  const int64_t image_stride = s.in_channels * H * W;
  assert(width <= kMaxWidth);
  // What each lane (X_col row k = (c, kh, kw)) of the panel reads: its plane, the input row
  // offset of its tap, and the output columns whose tap is inside the image.
  struct Lane {
    const float* plane;
    int64_t ih_offset;
    TapRange taps;
  };
  Lane lane_of[kMaxWidth];
  alignas(64) float tile[kMaxWidth * kChunk];
  struct Run {
    int64_t n, oh, ow, length, at;  // steps of one output row of one image
  };
  Run runs[kChunk];  // (at most one per step)
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t used = std::min(width, lanes - panel * width);
    for (int64_t lane = 0; lane < used; ++lane) {
      const int64_t k = first + panel * width + lane, c = k / (KH * KW);
      const int64_t kh = k / KW % KH, kw = k % KW;
      lane_of[lane] = {x_group + c * H * W, kh * s.dilation_height - s.pad_top, tap_range(s, kw)};
    }
    for (int64_t t0 = 0; t0 < steps; t0 += kChunk) {
      const int64_t chunk = std::min(kChunk, steps - t0);
      int64_t run_count = 0;
      for (int64_t t = 0; t < chunk;) {
        const int64_t q = step + t0 + t, ow = q % OW;
        const int64_t length = std::min(OW - ow, chunk - t);
        runs[run_count++] = {q / P, q % P / OW, ow, length, t};
        t += length;
      }
      for (int64_t lane = 0; lane < used; ++lane) {
        const Lane& l = lane_of[lane];
        float* out = tile + lane * kChunk;
        for (int64_t r = 0; r < run_count; ++r) {
          const Run& run = runs[r];
          float* run_out = out + run.at;
          const int64_t ih = run.oh * s.stride_height + l.ih_offset;
          if (ih < 0 || ih >= H) {
            std::fill(run_out, run_out + run.length, 0.0f);
            continue;
          }
          const int64_t begin = std::clamp(l.taps.ow_begin, run.ow, run.ow + run.length);
          const int64_t end = std::clamp(l.taps.ow_end, begin, run.ow + run.length);
          std::fill(run_out, run_out + (begin - run.ow), 0.0f);
          if (end > begin) {  // (the first pixel's address exists only then)
            const float* src =
                l.plane + run.n * image_stride + ih * W + begin * sw + l.taps.iw_offset;
            float* copy_out = run_out + (begin - run.ow);
            for (int64_t i = 0; i < end - begin; ++i) copy_out[i] = src[i * sw];
          }
          std::fill(run_out + (end - run.ow), run_out + run.length, 0.0f);
        }
      }
      transpose_into_panel(tile, used, chunk, width, buffer + panel * steps * width + t0 * width);
    }
  }
  return buffer;
}

}  // namespace convgemm::detail
