#include "operands.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <type_traits>

#include "../im2col.hpp"
#include "convgemm/detail/check.hpp"
#include "panel_copies.hpp"

namespace convgemm::detail {

using namespace panel;

int64_t prepacked_floats(int64_t lanes, int64_t depth, int64_t width) {
  return (lanes + width - 1) / width * width * depth;
}

namespace {

// LanesAlongRows's packing for panels `Width` lanes wide (Width 0: the width given at run time).
// Eight panels at a time, step by step: one contiguous run of up to 8 x width lanes read per
// step, written as eight rows of `width`. A width known at compile time turns each full panel
// row into a few vector moves (a runtime one left a scalar loop: 40% of backward_data at 7x7).
// `lane_source(lane)` is where lane `lane` of step 0 is; lanes of one panel are contiguous there
// unless the panel spans two matrices (then they are copied one by one).
template <int64_t Width, class LaneSource>
void pack_along_rows(LaneSource lane_source, int64_t ld, int64_t lanes, int64_t steps,
                     int64_t runtime_width, float* buffer) {
  const int64_t width = Width != 0 ? Width : runtime_width;
  constexpr int64_t kGroupPanels = 8;
  const int64_t panels = ceil_div(lanes, width);
  for (int64_t group = 0; group < panels; group += kGroupPanels) {
    const int64_t group_end = std::min(panels, group + kGroupPanels);
    const float* sources[kGroupPanels];
    bool contiguous[kGroupPanels];
    const float* lane_sources[kGroupPanels * kMaxWidth];  // lane by lane, for the others
    for (int64_t panel = group; panel < group_end; ++panel) {
      const int64_t first = panel * width, used = std::min(width, lanes - first);
      sources[panel - group] = lane_source(first);
      contiguous[panel - group] =
          lane_source(first + used - 1) == sources[panel - group] + used - 1;
      if (!contiguous[panel - group]) {
        for (int64_t lane = 0; lane < used; ++lane) {
          lane_sources[(panel - group) * kMaxWidth + lane] = lane_source(first + lane);
        }
      }
    }
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t panel = group; panel < group_end; ++panel) {
        const int64_t first = panel * width, used = std::min(width, lanes - first);
        float* dst = buffer + panel * steps * width + t * width;
        if (!contiguous[panel - group]) {
          const float* const* from = lane_sources + (panel - group) * kMaxWidth;
          for (int64_t lane = 0; lane < used; ++lane) dst[lane] = from[lane][t * ld];
        } else if (used == width) {
          const float* src = sources[panel - group] + t * ld;
          if constexpr (Width != 0) {
            __builtin_memcpy(dst, src, Width * sizeof(float));  // (no aliasing: vector moves)
          } else {
            std::copy(src, src + width, dst);
          }
        } else {
          const float* src = sources[panel - group] + t * ld;
          for (int64_t lane = 0; lane < used; ++lane) dst[lane] = src[lane];
        }
        for (int64_t lane = used; lane < width; ++lane) dst[lane] = 0.0f;
      }
    }
  }
}

template <int64_t Width>
void pack_along_rows(const LanesAlongRows& op, int64_t first, int64_t lanes, int64_t step,
                     int64_t steps, int64_t width, float* buffer) {
  const float* start = op.m + step * op.ld;
  if (op.per_image == 0) {
    pack_along_rows<Width>([start, first](int64_t lane) { return start + first + lane; }, op.ld,
                           lanes, steps, width, buffer);
  } else {
    const int64_t per_image = op.per_image, image_stride = op.image_stride;
    pack_along_rows<Width>(
        [=](int64_t lane) {
          const int64_t l = first + lane;
          return start + l / per_image * image_stride + l % per_image;
        },
        op.ld, lanes, steps, width, buffer);
  }
}

}  // namespace

const float* LanesAlongRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                    int64_t width, float* buffer) const {
  with_static_width(width, [&](auto w) {
    pack_along_rows<decltype(w)::value>(*this, first, lanes, step, steps, width, buffer);
  });
  return buffer;
}

const float* LanesAcrossRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                     int64_t width, float* buffer) const {
  assert(width <= kMaxWidth);
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t used = std::min(width, lanes - panel * width), lanes4 = used / 4 * 4;
    const float* panel_rows = m + (first + panel * width) * ld;
    float* out = buffer + panel * steps * width;
    // A chunk of steps at a time, so that the panel rows the lanes fill four by four stay in
    // cache until they are whole; within a chunk, runs within one image each. Runs depend on
    // the steps only, so every lane of the panel is read straight from its row.
    for (int64_t t = 0; t < steps;) {
      const int64_t chunk_end = std::min(steps, (t / kChunk + 1) * kChunk);
      const int64_t s = step + t, n = s / per_image, p = s % per_image;
      const int64_t run = std::min(per_image - p, chunk_end - t);
      const float* origin = panel_rows + n * image_stride + p;
      float* dst = out + t * width;
      for (int64_t lane = 0; lane < lanes4; lane += 4) {
        const float* const rows[4] = {origin + lane * ld, origin + (lane + 1) * ld,
                                      origin + (lane + 2) * ld, origin + (lane + 3) * ld};
        transpose_four_lanes(rows, run, width, dst + lane);
      }
      for (int64_t j = 0; j < run; ++j) {
        for (int64_t lane = lanes4; lane < used; ++lane)
          dst[j * width + lane] = origin[lane * ld + j];
        for (int64_t lane = used; lane < width; ++lane) dst[j * width + lane] = 0.0f;
      }
      t += run;
    }
  }
  return buffer;
}

namespace {

// ImageColumns's packing for panels `Width` lanes wide (Width 0: the width given at run time).
// Most runs are a whole panel row inside the image (only the runs at an output row's ends or
// at the padding differ): with the width known at compile time, such a run is a few vector
// moves at stride 1 (a library call per 12 floats, and the per-run clamps, took a quarter of a
// 3x3 forward's time).
template <int64_t Width>
void pack_image_columns(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                        int64_t steps, int64_t runtime_width, float* buffer) {
  const int64_t width = Width != 0 ? Width : runtime_width;
  const Conv2dShape& s = *op.shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), sw = s.stride_width;
  // The lanes cut into runs that stay within one output row and one panel, a group of panels
  // at a time: each step then copies whole runs into contiguous stretches of its panels (no
  // division per element, no store more than one panel row apart from the previous one).
  constexpr int64_t kGroupPanels = 8;
  struct Run {
    int64_t image_offset, oh, ow, length;
    float* out;  // the run's first lane at step 0; step t is t * width further
  };
  Run runs[kGroupPanels * kMaxWidth];
  assert(width <= kMaxWidth);
  // Each kernel column's output columns inside the image, computed once per call.
  constexpr int64_t kCachedTaps = 16;
  TapRange taps_of[kCachedTaps];
  for (int64_t kw = 0; kw < std::min(KW, kCachedTaps); ++kw) taps_of[kw] = tap_range(s, kw);
  const int64_t panel_floats = steps * width, P = s.gemm_p(), image_stride = s.in_channels * H * W;
  for (int64_t group = 0; group * kGroupPanels * width < lanes; ++group) {
    const int64_t group_begin = group * kGroupPanels * width;
    const int64_t group_end = std::min(lanes, group_begin + kGroupPanels * width);
    int64_t run_count = 0;
    for (int64_t lane = group_begin; lane < group_end;) {
      const int64_t q = op.first_lane + first + lane, p = q % P, ow = p % OW;
      const int64_t in_panel = lane % width;
      const int64_t length = std::min({OW - ow, width - in_panel, group_end - lane});
      runs[run_count++] = {q / P * image_stride, p / OW, ow, length,
                           buffer + lane / width * panel_floats + in_panel};
      lane += length;
    }
    int64_t k = step, c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    for (int64_t t = 0; t < steps; ++t) {
      const TapRange taps = kw < kCachedTaps ? taps_of[kw] : tap_range(s, kw);
      const float* plane = op.x_group + c * H * W;
      const int64_t ih_offset = kh * s.dilation_height - s.pad_top;
      for (int64_t r = 0; r < run_count; ++r) {
        const Run& run = runs[r];
        float* out = run.out + t * width;
        const int64_t ih = run.oh * s.stride_height + ih_offset;
        if (ih < 0 || ih >= H) {
          zero_lanes(out, run.length);
          continue;
        }
        if (run.length == width && taps.ow_begin <= run.ow && run.ow + width <= taps.ow_end) {
          const float* src = plane + run.image_offset + ih * W + run.ow * sw + taps.iw_offset;
          if (Width != 0 && sw == 1) {
            __builtin_memcpy(out, src, Width * sizeof(float));  // (no aliasing: vector moves)
          } else {
            copy_strided(src, sw, width, out);
          }
          continue;
        }
        const int64_t begin = std::clamp(taps.ow_begin, run.ow, run.ow + run.length);
        const int64_t end = std::clamp(taps.ow_end, begin, run.ow + run.length);
        zero_lanes(out, begin - run.ow);
        if (end > begin) {  // (the first pixel's address exists only then)
          const float* src = plane + run.image_offset + ih * W + begin * sw + taps.iw_offset;
          copy_strided(src, sw, end - begin, out + (begin - run.ow));
        }
        zero_lanes(out + (end - run.ow), run.ow + run.length - end);
      }
      if (++kw == KW) {
        kw = 0;
        if (++kh == KH) kh = 0, ++c;
      }
    }
  }
  zero_padding_lanes(buffer, lanes, steps, width);
}

}  // namespace

void pack_image_columns_portable(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                                 int64_t steps, int64_t width, float* buffer) {
  with_static_width(width, [&](auto w) {
    pack_image_columns<decltype(w)::value>(op, first, lanes, step, steps, width, buffer);
  });
}

const float* ImageColumns::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                  int64_t width, float* buffer) const {
  if (!pack_image_columns_avx512(*this, first, lanes, step, steps, width, buffer))
    pack_image_columns_portable(*this, first, lanes, step, steps, width, buffer);
  return buffer;
}

const float* ImageRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                               int64_t width, float* buffer) const {
  if (!pack_image_rows_avx512(*this, first, lanes, step, steps, width, buffer))
    pack_image_rows_portable(*this, first, lanes, step, steps, width, buffer);
  return buffer;
}

void pack_image_rows_portable(const ImageRows& op, int64_t first, int64_t lanes, int64_t step,
                              int64_t steps, int64_t width, float* buffer) {
  const Conv2dShape& s = *op.shape;
  const float* x_group = op.x_group;
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
  alignas(64) float tile[4 * kChunk];  // four lanes' runs that need zeros or a stride
  struct Run {
    int64_t n, oh, ow, length, at;  // steps of one output row of one image
  };
  Run runs[kChunk];  // (at most one per step)
  // A lane's entries over one run, zeros for the taps in the padding, into out[0, length).
  auto fill_run = [&](const Lane& l, const Run& run, float* out) {
    const int64_t ih = run.oh * s.stride_height + l.ih_offset;
    if (ih < 0 || ih >= H) {
      zero_lanes(out, run.length);
      return;
    }
    const int64_t begin = std::clamp(l.taps.ow_begin, run.ow, run.ow + run.length);
    const int64_t end = std::clamp(l.taps.ow_end, begin, run.ow + run.length);
    zero_lanes(out, begin - run.ow);
    if (end > begin) {  // (the first pixel's address exists only then)
      const float* src = l.plane + run.n * image_stride + ih * W + begin * sw + l.taps.iw_offset;
      copy_strided(src, sw, end - begin, out + (begin - run.ow));
    }
    zero_lanes(out + (end - run.ow), run.ow + run.length - end);
  };
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
      float* panel_rows = buffer + panel * steps * width + t0 * width;
      // Four lanes at a time, run by run: a lane whose run lies wholly inside the image (stride 1)
      // is transposed straight from the image row; the others go through the tile first, with
      // their zeros. The lanes past a multiple of four, and the panel's padding lanes, step by
      // step at the end.
      const int64_t lanes4 = used / 4 * 4;
      for (int64_t lane = 0; lane < lanes4; lane += 4) {
        for (int64_t r = 0; r < run_count; ++r) {
          const Run& run = runs[r];
          const float* rows[4];
          for (int64_t i = 0; i < 4; ++i) {
            const Lane& l = lane_of[lane + i];
            const int64_t ih = run.oh * s.stride_height + l.ih_offset;
            const bool inside = sw == 1 && ih >= 0 && ih < H && l.taps.ow_begin <= run.ow &&
                                run.ow + run.length <= l.taps.ow_end;
            if (inside) {
              rows[i] = l.plane + run.n * image_stride + ih * W + run.ow + l.taps.iw_offset;
            } else {
              fill_run(l, run, tile + i * kChunk);
              rows[i] = tile + i * kChunk;
            }
          }
          transpose_four_lanes(rows, run.length, width, panel_rows + run.at * width + lane);
        }
      }
      for (int64_t lane = lanes4; lane < used; ++lane) {
        for (int64_t r = 0; r < run_count; ++r) {
          const Run& run = runs[r];
          fill_run(lane_of[lane], run, tile);
          for (int64_t j = 0; j < run.length; ++j)
            panel_rows[(run.at + j) * width + lane] = tile[j];
        }
      }
      for (int64_t t = 0; t < chunk; ++t) zero_lanes(panel_rows + t * width + used, width - used);
    }
  }
}

}  // namespace convgemm::detail
