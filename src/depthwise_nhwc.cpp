// Direct depthwise kernels in nhwc (kernels.hpp): a tap of an output pixel is a contiguous run
// of channels, so every loop below runs along the channels, a vector of them at a time, with
// the filters stored tap-major ([KH*KW][O], transposed once per call) so that one tap's weights
// are contiguous too. No padded copy is needed: a tap in the padding is skipped whole.
//
// Two forms of each pass compute the same sums. The register-blocked one (channel multiplier
// 1, pixels whose taps all lie inside the image, whole vectors of channels) keeps the sums of
// kPixels output pixels (forward: of up to kVectors vectors of channels each), or of one where
// fewer are left (backward_weights: up to three kernel rows' taps), in registers and loads each
// weight once per block; forward's border pixels take one-pixel blocks over the taps inside the
// image. The per-pixel form handles everything else (the other passes' borders, the channels
// after the last whole vector, multipliers). Which form computes a value depends on the shape and
// the value's position only, and both add the terms in the same order: for each channel, taps in
// (kh, kw) order, from the value the output held (zero, or the output itself when
// accumulating). backward_weights sums over output positions in order within chunks of rows
// fixed by the shape, then adds the chunks in order. So the bits depend on the shape and the
// CPU's variant of the kernel only, never on the task, the row range or the thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "convgemm/detail/check.hpp"
#include "kernels.hpp"
#include "packed/flipped_filter.hpp"

namespace convgemm::detail {
namespace {

// The kernels are compiled for AVX-512, AVX2+FMA and the baseline; the loader picks the widest
// this CPU runs (the library itself is built without -march).
#define CONVGEMM_NHWC_KERNEL [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]

// Sixteen channels in one GCC vector: one AVX-512 register, two AVX2 or four SSE ones. memcpy
// keeps unaligned loads and stores well-defined; loads go through references so that no vector
// crosses a function boundary (which would change the ABI between the clones, -Wpsabi).
constexpr int64_t kLanes = 16;
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

[[gnu::always_inline]] inline void load(Vec& v, const float* src) {
  std::memcpy(&v, src, sizeof v);
}
[[gnu::always_inline]] inline void store(float* dst, const Vec& v) {
  std::memcpy(dst, &v, sizeof v);
}

// Output pixels whose sums a register block holds: with the weight and the input vector, six
// AVX-512 registers per channel vector (twelve AVX2 ones).
constexpr int64_t kPixels = 4;

// Vectors of channels a forward block holds side by side where the CPU has 32 vector registers
// of 16 floats (AVX-512): 4 x 3 sums, a weight and an input. Twelve independent sums per tap
// instead of four: 3x3 144@56 (stride 1 and 2) ran 3-8% faster on the Xeon of 2026-12-04.
constexpr int kVectors = 3;
// Whether the CPU running this has those registers. Asked at run time because all the clones
// share one source; the answer changes only how many sums share a block, never their order, so
// never a result.
inline bool has_wide_registers() { return __builtin_cpu_supports("avx512f"); }

// How far ahead forward's and backward_data's blocked forms ask for the pixels they will read:
// the hardware prefetchers miss these strided runs (backward_weights, at this distance then,
// ran at 9 GFLOP/s without at batch 8, 14 with).
constexpr int64_t kPrefetchPixels = 8;

// backward_weights reads x and dy from memory at batch 8, farther than kPrefetchPixels covers;
// its prefetches run this many pixels ahead, and past a row's end they wrap onto the row's start
// in the next vector of channels, which the next pass over these rows reads (across the row's
// end they had fetched lines of another row, needed only later, and slowed batch 1, whose
// tensors are in cache; 3x3 144@56 at batch 8, 47 -> 68 GFLOP/s, batch 1 even).
constexpr int64_t kFarPrefetchPixels = 40;

// The floats from pixel `ow` of a row of `pixels` (each `step` floats on from the last) to the
// one kFarPrefetchPixels on, wrapped as above.
[[gnu::always_inline]] inline int64_t far_ahead(int64_t ow, int64_t pixels, int64_t step) {
  return ow + kFarPrefetchPixels < pixels ? kFarPrefetchPixels * step
                                          : (kFarPrefetchPixels - pixels) * step + kLanes;
}

// A prefetch `floats` after p. The address is computed as an integer: it may lie past the end
// of the tensor, where a prefetch reads nothing but pointer arithmetic would be undefined.
[[gnu::always_inline]] inline void prefetch(const float* p, int64_t floats) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) +
                                                   static_cast<std::uintptr_t>(floats) * 4));
}

// Channels of one pixel the per-pixel form handles at a time: its sums stay in L1.
constexpr int64_t kChannelChunk = 64;

// The geometry every kernel needs, in one place.
struct Geometry {
  int64_t C, O, multiplier, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
  int64_t whole_channels;  // channels in whole vectors (multiplier 1; else 0)
};
Geometry geometry_of(const Conv2dShape& s) {
  Geometry g{.C = s.in_channels,
             .O = s.out_channels,
             .multiplier = s.out_channels / s.in_channels,
             .H = s.in_height,
             .W = s.in_width,
             .OH = s.out_height(),
             .OW = s.out_width(),
             .KH = s.kernel_height,
             .KW = s.kernel_width,
             .sh = s.stride_height,
             .sw = s.stride_width,
             .dh = s.dilation_height,
             .dw = s.dilation_width,
             .pt = s.pad_top,
             .pl = s.pad_left,
             .whole_channels = 0};
  if (g.multiplier == 1) g.whole_channels = g.C / kLanes * kLanes;
  return g;
}

// A half-open range [first, end) of columns, rows or taps.
struct Range {
  int64_t first, end;
};
// Forward: the output columns that read only input columns inside the image.
Range forward_interior(const Geometry& g) {
  const int64_t first = std::min((g.pl + g.sw - 1) / g.sw, g.OW);  // ow * sw - pl >= 0
  const int64_t last_tap = (g.KW - 1) * g.dw - g.pl;               // ow * sw + last_tap <= W - 1
  const int64_t end = g.W - 1 - last_tap < 0 ? 0 : (g.W - 1 - last_tap) / g.sw + 1;
  return {first, std::max(first, std::min(end, g.OW))};
}

// acc[o] += sum over the multiplier's filters: outputs [o_begin, o_begin + count) read input
// channel o / multiplier. One form for the common multiplier 1, which vectorizes plainly.
[[gnu::always_inline]] inline void add_tap(const float* weights, const float* x_pixel,
                                           int64_t o_begin, int64_t count, int64_t multiplier,
                                           float* acc) {
  if (multiplier == 1) {
    const float* x = x_pixel + o_begin;
    for (int64_t o = 0; o < count; ++o) acc[o] += weights[o] * x[o];
    return;
  }
  // Input channel c and filter j of output o_begin + o, stepped along without a division.
  int64_t c = o_begin / multiplier, j = o_begin % multiplier;
  for (int64_t o = 0; o < count; ++o) {
    acc[o] += weights[o] * x_pixel[c];
    if (++j == multiplier) {
      j = 0;
      ++c;
    }
  }
}

// Forward, per pixel: output channels [o_first, O) of pixel (oh, ow).
[[gnu::always_inline]] inline void forward_pixel(const Geometry& g, const float* x_image,
                                                 const float* filters, const float* bias,
                                                 bool accumulate, float* y, int64_t oh, int64_t ow,
                                                 int64_t o_first) {
  const int64_t ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
  float acc[kChannelChunk];
  for (int64_t o0 = o_first; o0 < g.O; o0 += kChannelChunk) {
    const int64_t count = std::min(kChannelChunk, g.O - o0);
    for (int64_t o = 0; o < count; ++o) acc[o] = accumulate ? y[o0 + o] : 0.0f;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ih = ih0 + kh * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t iw = iw0 + kw * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        add_tap(filters + (kh * g.KW + kw) * g.O + o0, x_image + (ih * g.W + iw) * g.C, o0, count,
                g.multiplier, acc);
      }
    }
    if (bias != nullptr) {
      for (int64_t o = 0; o < count; ++o) y[o0 + o] = acc[o] + bias[o0 + o];
    } else {
      for (int64_t o = 0; o < count; ++o) y[o0 + o] = acc[o];
    }
  }
}

// Forward: the kernel rows output row oh reads inside the image, found once per row: the first
// one's input row and weights, their count, and the steps to the next.
struct KernelRows {
  const float* input;    // image row of the first kernel row inside the image, at column 0
  const float* weights;  // its taps' weights (tap-major)
  int64_t count, input_step, weight_step;
};
// The taps [first, end) of a kernel extent whose positions start + k * dilation lie in [0, size)
// (consecutive: the dilation is positive).
Range taps_inside(int64_t start, int64_t taps, int64_t dilation, int64_t size) {
  int64_t first = 0, end = taps;
  while (first < end && start + first * dilation < 0) ++first;
  while (end > first && start + (end - 1) * dilation >= size) --end;
  return {first, end};
}

KernelRows kernel_rows(const Geometry& g, const float* x_image, const float* filters, int64_t oh) {
  const int64_t ih0 = oh * g.sh - g.pt;
  const auto [kh, kh_end] = taps_inside(ih0, g.KH, g.dh, g.H);
  return {.input = kh < kh_end ? x_image + (ih0 + kh * g.dh) * g.W * g.C : x_image,
          .weights = filters + kh * g.KW * g.O,
          .count = kh_end - kh,
          .input_step = g.dh * g.W * g.C,
          .weight_step = g.KW * g.O};
}

// Forward, register-blocked: V vectors of channels from c of U pixels from ow, over the kernel
// columns `taps` (all of them, but for a border pixel's block of one), their U*V sums in
// registers while the taps pass (each tap: V weight loads for U*V products).
template <int U, int V>
[[gnu::always_inline]] inline void forward_block(const Geometry& g, const KernelRows& rows,
                                                 Range taps, const float* bias, bool accumulate,
                                                 float* y, int64_t ow, int64_t c) {
  const int64_t pixel_step = g.sw * g.C, tap_step = g.dw * g.C;
  Vec acc[U][V];
  for (int u = 0; u < U; ++u) {
    for (int v = 0; v < V; ++v) {
      if (accumulate) {
        load(acc[u][v], y + u * g.O + c + v * kLanes);
      } else {
        acc[u][v] = Vec{};
      }
    }
  }
  // No tap inside (paddings past the kernel's extent): no address of the image is formed.
  const int64_t kernel_rows = taps.first < taps.end ? rows.count : 0;
  const float* row = rows.input;
  const float* row_weights = rows.weights;
  if (kernel_rows > 0) {
    row += (ow * g.sw - g.pl + taps.first * g.dw) * g.C + c;
    row_weights += taps.first * g.O + c;
  }
  for (int64_t kh = 0; kh < kernel_rows; ++kh) {
    const float* src = row;
    const float* weights = row_weights;
    prefetch(row, kPrefetchPixels * pixel_step);
    for (int64_t kw = taps.first; kw < taps.end; ++kw) {
      for (int v = 0; v < V; ++v) {
        Vec weight, input;
        load(weight, weights + v * kLanes);
        for (int u = 0; u < U; ++u) {
          load(input, src + u * pixel_step + v * kLanes);
          acc[u][v] += weight * input;
        }
      }
      src += tap_step;
      weights += g.O;
    }
    row += rows.input_step;
    row_weights += rows.weight_step;
  }
  for (int v = 0; v < V; ++v) {
    Vec b = Vec{};
    if (bias != nullptr) load(b, bias + c + v * kLanes);
    for (int u = 0; u < U; ++u) {
      if (bias != nullptr) acc[u][v] += b;
      store(y + u * g.O + c + v * kLanes, acc[u][v]);
    }
  }
}

// Forward, register-blocked: the whole vectors of channels of U interior pixels from ow, in
// groups of kVectors (kVectors = 1: the AVX2 and baseline clones, whose registers hold fewer
// sums) and then one by one.
template <int U>
[[gnu::always_inline]] inline void forward_blocks(const Geometry& g, const KernelRows& rows,
                                                  Range taps, const float* bias, bool accumulate,
                                                  float* y, int64_t ow, bool wide) {
  int64_t c = 0;
  if (wide) {
    for (; c + kVectors * kLanes <= g.whole_channels; c += kVectors * kLanes)
      forward_block<U, kVectors>(g, rows, taps, bias, accumulate, y, ow, c);
  }
  for (; c < g.whole_channels; c += kLanes)
    forward_block<U, 1>(g, rows, taps, bias, accumulate, y, ow, c);
}

// Forward: the kernel columns whose taps of output column ow lie inside the image.
Range kernel_columns(const Geometry& g, int64_t ow) {
  return taps_inside(ow * g.sw - g.pl, g.KW, g.dw, g.W);
}

// Backward_data, per pixel: channels [c_first, C) of dx pixel (ih, iw), gathered tap by tap
// from the output pixels that read it (oh * sh - pt + kh * dh = ih, likewise for columns).
template <int SH, int SW>
[[gnu::always_inline]] inline void backward_data_pixel(const Geometry& g, const float* dy_image,
                                                       const float* filters, bool accumulate,
                                                       float* dx, int64_t ih, int64_t iw,
                                                       int64_t c_first) {
  const int64_t sh = SH ? SH : g.sh, sw = SW ? SW : g.sw;
  float acc[kChannelChunk];
  for (int64_t c0 = c_first; c0 < g.C; c0 += kChannelChunk) {
    const int64_t count = std::min(kChannelChunk, g.C - c0);
    for (int64_t c = 0; c < count; ++c) acc[c] = accumulate ? dx[c0 + c] : 0.0f;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t rows = ih + g.pt - kh * g.dh;
      if (rows < 0 || rows % sh != 0 || rows / sh >= g.OH) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t cols = iw + g.pl - kw * g.dw;
        if (cols < 0 || cols % sw != 0 || cols / sw >= g.OW) continue;
        const float* weights = filters + (kh * g.KW + kw) * g.O;
        const float* dy = dy_image + (rows / sh * g.OW + cols / sw) * g.O;
        if (g.multiplier == 1) {
          for (int64_t c = 0; c < count; ++c) acc[c] += weights[c0 + c] * dy[c0 + c];
        } else {
          for (int64_t c = 0; c < count; ++c) {
            for (int64_t j = 0; j < g.multiplier; ++j) {
              const int64_t o = (c0 + c) * g.multiplier + j;
              acc[c] += weights[o] * dy[o];
            }
          }
        }
      }
    }
    for (int64_t c = 0; c < count; ++c) dx[c0 + c] = acc[c];
  }
}

// Whether the U dx pixels iw, iw + sw, ... of a row take the register-blocked form: every tap
// column that reaches them (cols divisible by sw, the same taps for the whole block) reads
// output columns inside the image for all of them.
template <int U, int SW>
[[gnu::always_inline]] inline bool backward_data_block_is_interior(const Geometry& g, int64_t iw) {
  const int64_t sw = SW ? SW : g.sw;
  for (int64_t kw = 0; kw < g.KW; ++kw) {
    const int64_t cols = iw + g.pl - kw * g.dw;
    if (cols >= 0 && cols % sw != 0) continue;
    if (cols < 0 || cols / sw + U > g.OW) return false;
  }
  return true;
}

// The taps that reach a backward_data block, in (kh, kw) order: each one's offset into the
// tap-major filters and into dy (from the block's first output pixel), found once per block
// rather than once per vector of channels.
struct BlockTaps {
  static constexpr int kMax = 64;  // 8 x 8: larger kernels go pixel by pixel
  int count = 0;
  int64_t weight[kMax], gradient[kMax];
};

template <int SH, int SW>
[[gnu::always_inline]] inline void find_block_taps(const Geometry& g, int64_t ih, int64_t iw,
                                                   BlockTaps& taps) {
  const int64_t sh = SH ? SH : g.sh, sw = SW ? SW : g.sw;
  taps.count = 0;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t rows = ih + g.pt - kh * g.dh;
    if (rows < 0 || rows % sh != 0 || rows / sh >= g.OH) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t cols = iw + g.pl - kw * g.dw;
      if (cols % sw != 0) continue;  // cols >= 0: the block is interior
      taps.weight[taps.count] = (kh * g.KW + kw) * g.O;
      taps.gradient[taps.count] = (rows / sh * g.OW + cols / sw) * g.O;
      ++taps.count;
    }
  }
}

// Backward_data, register-blocked: V vectors of channels from c of U dx pixels iw, iw + sw,
// ..., whose output pixels are neighbours: ow, ow + 1, ...
template <int U, int V>
[[gnu::always_inline]] inline void backward_data_block(const Geometry& g, const float* dy_image,
                                                       const float* filters, const BlockTaps& taps,
                                                       bool accumulate, float* dx,
                                                       int64_t pixel_step, int64_t c) {
  Vec acc[U][V];
  for (int u = 0; u < U; ++u) {
    for (int v = 0; v < V; ++v) {
      if (accumulate) {
        load(acc[u][v], dx + u * pixel_step + c + v * kLanes);
      } else {
        acc[u][v] = Vec{};
      }
    }
  }
  for (int t = 0; t < taps.count; ++t) {
    const float* weights = filters + taps.weight[t] + c;
    const float* src = dy_image + taps.gradient[t] + c;
    for (int v = 0; v < V; ++v) {
      prefetch(src + v * kLanes, kPrefetchPixels * g.O);
      Vec weight, gradient;
      load(weight, weights + v * kLanes);
      for (int u = 0; u < U; ++u) {
        load(gradient, src + u * g.O + v * kLanes);
        acc[u][v] += weight * gradient;
      }
    }
  }
  for (int u = 0; u < U; ++u)
    for (int v = 0; v < V; ++v) store(dx + u * pixel_step + c + v * kLanes, acc[u][v]);
}

// The whole vectors of channels of a block: kVectors at a time where the registers are wide.
// The block's taps are `taps`, with dy offsets `shift` output pixels short.
template <int U>
[[gnu::always_inline]] inline void backward_data_blocks(const Geometry& g, const float* dy_image,
                                                        const float* filters, const BlockTaps& taps,
                                                        int64_t shift, bool accumulate, float* dx,
                                                        int64_t pixel_step, bool wide) {
  const float* dy = dy_image + shift * g.O;
  int64_t c = 0;
  if (wide) {
    for (; c + kVectors * kLanes <= g.whole_channels; c += kVectors * kLanes)
      backward_data_block<U, kVectors>(g, dy, filters, taps, accumulate, dx, pixel_step, c);
  }
  for (; c < g.whole_channels; c += kLanes)
    backward_data_block<U, 1>(g, dy, filters, taps, accumulate, dx, pixel_step, c);
}

// Backward_data's rows for strides SH x SW (0: the shape's): a runtime divisor is a hardware
// division per tap, so the common strides 1 and 2 get instances where it is a constant.
// A block is kPixels pixels of one column phase (iw mod sw): they meet the same taps, and so do
// all the blocks of a row's phase that take the register-blocked form (every tap of the phase
// reaches them), at dy pixels one further per sw columns. The taps are found once per phase.
template <int SH, int SW>
[[gnu::always_inline]] inline void backward_data_rows(const Geometry& g, const float* dy_image,
                                                      const float* filters, bool accumulate,
                                                      float* dx_image, int64_t ih_begin,
                                                      int64_t ih_end) {
  const int64_t sw = SW ? SW : g.sw;
  // The channels the blocks leave (after the last whole vector), pixel by pixel.
  const auto tail = [&](float* dx_row, int64_t ih, int64_t iw, int64_t pixels) {
    if (g.whole_channels == g.C) return;
    for (int64_t u = 0; u < pixels; ++u) {
      const int64_t column = iw + u * sw;
      backward_data_pixel<SH, SW>(g, dy_image, filters, accumulate, dx_row + column * g.C, ih,
                                  column, g.whole_channels);
    }
  };
  const bool wide = has_wide_registers(), blocked = g.KH * g.KW <= BlockTaps::kMax;
  BlockTaps taps;
  for (int64_t ih = ih_begin; ih < ih_end; ++ih) {
    float* dx_row = dx_image + ih * g.W * g.C;
    for (int64_t phase = 0; phase < std::min(sw, g.W); ++phase) {
      int64_t taps_iw = -1;  // the block whose taps `taps` holds (none yet)
      const auto block_taps = [&](int64_t iw) {
        if (taps_iw < 0) {
          find_block_taps<SH, SW>(g, ih, iw, taps);
          taps_iw = iw;
        }
        return (iw - taps_iw) / sw;
      };
      int64_t iw = phase;
      while (iw < g.W) {
        if (blocked && iw + (kPixels - 1) * sw < g.W &&
            backward_data_block_is_interior<kPixels, SW>(g, iw)) {
          const int64_t shift = block_taps(iw);
          backward_data_blocks<kPixels>(g, dy_image, filters, taps, shift, accumulate,
                                        dx_row + iw * g.C, sw * g.C, wide);
          tail(dx_row, ih, iw, kPixels);
          iw += kPixels * sw;
        } else if (blocked && backward_data_block_is_interior<1, SW>(g, iw)) {
          const int64_t shift = block_taps(iw);
          backward_data_blocks<1>(g, dy_image, filters, taps, shift, accumulate, dx_row + iw * g.C,
                                  sw * g.C, wide);
          tail(dx_row, ih, iw, 1);
          iw += sw;
        } else {
          backward_data_pixel<SH, SW>(g, dy_image, filters, accumulate, dx_row + iw * g.C, ih, iw,
                                      0);
          iw += sw;
        }
      }
    }
  }
}

// Backward_weights, per range: the taps' sums of outputs [o_begin, o_begin + count) over output
// pixel (oh, ow) of one image; sums [KH*KW][kLanes].
[[gnu::always_inline]] inline void weights_pixel(const Geometry& g, const float* x_image,
                                                 const float* gradients, int64_t o_begin,
                                                 int64_t count, int64_t oh, int64_t ow,
                                                 float* sums) {
  const int64_t ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = ih0 + kh * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = iw0 + kw * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      add_tap(gradients, x_image + (ih * g.W + iw) * g.C, o_begin, count, g.multiplier,
              sums + (kh * g.KW + kw) * kLanes);
    }
  }
}

// db's chains: a double per channel, summed over the output pixels in order (the floats are
// converted exactly; the adds round). They live in the chunk's workspace between rows, as bytes
// (the workspace holds floats).
//
// The chains of a whole vector of channels, in registers while the pixels of a row pass in a
// weight sum's loop: there the conversions overlap the multiply-adds instead of running as a
// pass of their own (which took a quarter of backward_weights' time at batch 1, bound by the
// conversions).
using Doubles = double __attribute__((vector_size(kLanes / 2 * sizeof(double))));
struct BiasChains {
  Doubles low, high;

  [[gnu::always_inline]] void load_from(const char* bytes) {
    std::memcpy(&low, bytes, sizeof low);
    std::memcpy(&high, bytes + sizeof low, sizeof high);
  }
  [[gnu::always_inline]] void store_to(char* bytes) const {
    std::memcpy(bytes, &low, sizeof low);
    std::memcpy(bytes + sizeof low, &high, sizeof high);
  }
  [[gnu::always_inline]] void add(const Vec& gradient) {
    low += __builtin_convertvector(
        __builtin_shufflevector(gradient, gradient, 0, 1, 2, 3, 4, 5, 6, 7), Doubles);
    high += __builtin_convertvector(
        __builtin_shufflevector(gradient, gradient, 8, 9, 10, 11, 12, 13, 14, 15), Doubles);
  }
};

// The chains of channels [c, c + count) over one row's pixels, where no weight loop runs with
// them (the channels after the last whole vector, multipliers, kernels past kMaxBlockedWidth,
// rows whose taps all fall into the padding).
[[gnu::always_inline]] inline void add_bias_row(const Geometry& g, const float* dy_row, int64_t c,
                                                int64_t count, char* chains_bytes) {
  double chains[kLanes];
  const auto bytes = static_cast<std::size_t>(count) * sizeof(double);
  std::memcpy(chains, chains_bytes, bytes);
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    const float* values = dy_row + ow * g.O + c;
    for (int64_t i = 0; i < count; ++i) chains[i] += values[i];
  }
  std::memcpy(chains_bytes, chains, bytes);
}

// Backward_weights, register-blocked: one vector of channels from c, one output row of one
// image, with the KW sums of R kernel rows from kh in registers while the row's pixels pass
// (R*KW independent chains hide the adds' latency); the pixels whose taps leave the image skip
// those taps, so each tap's terms still come in column order. Bias: the group also adds the
// pixels' gradients to db's chains at `bias` (one group per row does).
template <int KW, int R, bool Bias>
[[gnu::always_inline]] inline void weights_rows_group(const Geometry& g, const float* x_image,
                                                      const float* dy_row, int64_t c, int64_t oh,
                                                      int64_t kh, Range interior, float* sums,
                                                      char* bias) {
  const float* x_rows[R];
  for (int r = 0; r < R; ++r) {
    x_rows[r] = x_image + (oh * g.sh - g.pt + (kh + r) * g.dh) * g.W * g.C + c;
  }
  Vec acc[R][KW];
  for (int r = 0; r < R; ++r)
    for (int kw = 0; kw < KW; ++kw) load(acc[r][kw], sums + ((kh + r) * KW + kw) * kLanes);
  BiasChains chains;
  if constexpr (Bias) chains.load_from(bias);
  // The border pixels skip their taps outside the image.
  const auto border = [&](int64_t ow) {
    Vec gradient, input;
    load(gradient, dy_row + ow * g.O);
    if constexpr (Bias) chains.add(gradient);
    const int64_t iw0 = ow * g.sw - g.pl;
    for (int kw = 0; kw < KW; ++kw) {
      const int64_t iw = iw0 + kw * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      for (int r = 0; r < R; ++r) {
        load(input, x_rows[r] + iw * g.C);
        acc[r][kw] += gradient * input;
      }
    }
  };
  int64_t ow = 0;
  for (; ow < interior.first; ++ow) border(ow);
  // The interior, with one pointer per kernel row stepped along (fewer live addresses than
  // offsets from the rows' starts: those spilled to the stack).
  const float* pixel[R];
  for (int r = 0; r < R; ++r) pixel[r] = x_rows[r] + (ow * g.sw - g.pl) * g.C;
  const float* gradients = dy_row + ow * g.O;
  const int64_t pixel_step = g.sw * g.C, tap_step = g.dw * g.C;
  if (pixel_step == tap_step && ow < interior.end) {
    // Stride 1, no dilation: tap kw + 1 of a pixel is tap kw of the next, so each kernel row's
    // KW inputs slide along in registers and one new input per row is loaded per pixel (loads,
    // not multiply-adds, had bound this loop: KW * R + 1 of them for KW * R products). The same
    // products in the same order as the loop below. (Asking here whether the CPU has 32 vector
    // registers for the window cost 10% on AVX-512: every clone takes it.)
    Vec window[R][KW];
    for (int r = 0; r < R; ++r)
      for (int kw = 0; kw + 1 < KW; ++kw) load(window[r][kw], pixel[r] + kw * tap_step);
    for (; ow < interior.end; ++ow) {
      Vec gradient;
      load(gradient, gradients);
      if constexpr (Bias) chains.add(gradient);
      prefetch(gradients, far_ahead(ow, g.OW, g.O));
      const int64_t x_ahead = far_ahead(ow, g.OW, pixel_step);
      for (int r = 0; r < R; ++r) {
        prefetch(pixel[r], x_ahead);
        load(window[r][KW - 1], pixel[r] + (KW - 1) * tap_step);
      }
      for (int kw = 0; kw < KW; ++kw)
        for (int r = 0; r < R; ++r) acc[r][kw] += gradient * window[r][kw];
      for (int r = 0; r < R; ++r) {
        for (int kw = 0; kw + 1 < KW; ++kw) window[r][kw] = window[r][kw + 1];
        pixel[r] += pixel_step;
      }
      gradients += g.O;
    }
  }
  for (; ow < interior.end; ++ow) {
    Vec gradient, input;
    load(gradient, gradients);
    if constexpr (Bias) chains.add(gradient);
    prefetch(gradients, far_ahead(ow, g.OW, g.O));
    const int64_t x_ahead = far_ahead(ow, g.OW, pixel_step);
    for (int r = 0; r < R; ++r) prefetch(pixel[r], x_ahead);
    for (int kw = 0; kw < KW; ++kw) {
      for (int r = 0; r < R; ++r) {
        load(input, pixel[r] + kw * tap_step);
        acc[r][kw] += gradient * input;
      }
    }
    for (int r = 0; r < R; ++r) pixel[r] += pixel_step;
    gradients += g.O;
  }
  for (; ow < g.OW; ++ow) border(ow);
  for (int r = 0; r < R; ++r)
    for (int kw = 0; kw < KW; ++kw) store(sums + ((kh + r) * KW + kw) * kLanes, acc[r][kw]);
  if constexpr (Bias) chains.store_to(bias);
}

// Kernel rows summed together: up to three, about ten sums in registers (AVX-512 has room for
// them and the operands; the AVX2 clone spills a few).
template <int KW>
constexpr int kRowsTogether = KW <= 3   ? 3
                              : KW <= 5 ? 2
                                        : 1;

// One output row's sums for the vector of channels from c, and db's chains at `bias` (if any)
// with the row's first group of kernel rows.
template <int KW>
[[gnu::always_inline]] inline void weights_row(const Geometry& g, const float* x_image,
                                               const float* dy_row, int64_t c, int64_t oh,
                                               Range interior, float* sums, char* bias) {
  auto [kh, kh_end] = taps_inside(oh * g.sh - g.pt, g.KH, g.dh, g.H);
  constexpr int R = kRowsTogether<KW>;
  // (No lambda here: one left out of line is compiled for the baseline, not the clone's target.)
  if (bias != nullptr && kh < kh_end) {
    if (kh + R <= kh_end) {
      weights_rows_group<KW, R, true>(g, x_image, dy_row, c, oh, kh, interior, sums, bias);
      kh += R;
    } else {
      weights_rows_group<KW, 1, true>(g, x_image, dy_row, c, oh, kh, interior, sums, bias);
      ++kh;
    }
    bias = nullptr;
  }
  for (; kh + R <= kh_end; kh += R)
    weights_rows_group<KW, R, false>(g, x_image, dy_row, c, oh, kh, interior, sums, nullptr);
  for (; kh < kh_end; ++kh)
    weights_rows_group<KW, 1, false>(g, x_image, dy_row, c, oh, kh, interior, sums, nullptr);
  if (bias != nullptr) add_bias_row(g, dy_row, 0, kLanes, bias);
}

// The kernel widths with a register-blocked weight gradient (the rest go pixel by pixel).
constexpr int kMaxBlockedWidth = 7;

// One chunk's tap sums: output rows [row_begin, row_end) of the batch (row r = n * OH + oh),
// every channel, ranges of kLanes channels side by side, so that x and dy are read once, row by
// row. Each range takes the register-blocked form for width KW when it is a whole vector (KW =
// 0: none does) and goes pixel by pixel otherwise; sums [range][KH*KW][kLanes], from zero.
template <int KW>
[[gnu::always_inline]] inline void weights_chunk(const Geometry& g, const float* x, const float* dy,
                                                 int64_t row_begin, int64_t row_end, float* sums,
                                                 char* bias_sums) {
  const Range interior = forward_interior(g);
  const int64_t range_floats = g.KH * g.KW * kLanes;
  std::fill(sums, sums + ceil_div(g.O, kLanes) * range_floats, 0.0f);
  if (bias_sums != nullptr) {
    const double zero = 0.0;
    for (int64_t o = 0; o < g.O; ++o) std::memcpy(bias_sums + o * sizeof zero, &zero, sizeof zero);
  }
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / g.OH, oh = r % g.OH;
    const float* x_image = x + n * g.H * g.W * g.C;
    const float* dy_row = dy + r * g.OW * g.O;
    for (int64_t c = 0; c < g.O; c += kLanes) {
      float* range_sums = sums + c / kLanes * range_floats;
      char* bias = bias_sums == nullptr ? nullptr : bias_sums + c * sizeof(double);
      if constexpr (KW > 0) {
        if (c + kLanes <= g.whole_channels) {
          weights_row<KW>(g, x_image, dy_row + c, c, oh, interior, range_sums, bias);
          continue;
        }
      }
      const int64_t count = std::min(kLanes, g.O - c);
      for (int64_t ow = 0; ow < g.OW; ++ow)
        weights_pixel(g, x_image, dy_row + ow * g.O + c, c, count, oh, ow, range_sums);
      if (bias != nullptr) add_bias_row(g, dy_row, c, count, bias);
    }
  }
}

// weights_chunk<KW> for the shape's kernel width, one of Widths (0 stands for every width past
// the last: the per-pixel form).
template <int... Widths>
[[gnu::always_inline]] inline void weights_chunk_for_width(std::integer_sequence<int, Widths...>,
                                                           const Geometry& g, const float* x,
                                                           const float* dy, int64_t row_begin,
                                                           int64_t row_end, float* sums,
                                                           char* bias_sums) {
  const int width = g.KW <= kMaxBlockedWidth ? int(g.KW) : 0;
  ((width == Widths ? weights_chunk<Widths>(g, x, dy, row_begin, row_end, sums, bias_sums)
                    : void()),
   ...);
}

}  // namespace

int64_t depthwise_nhwc_filter_floats(const Conv2dShape& s) {
  return s.out_channels * s.kernel_height * s.kernel_width;
}

void depthwise_nhwc_tap_major(const Conv2dShape& s, const float* w, bool reversed, float* filters) {
  const int64_t O = s.out_channels, T = s.kernel_height * s.kernel_width;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < T; ++t) filters[(reversed ? T - 1 - t : t) * O + o] = w[o * T + t];
}

bool depthwise_nhwc_data_gradient_is_a_forward(const Conv2dShape& s) {
  return data_gradient_fits_a_forward(s) && s.out_channels == s.in_channels;
}

CONVGEMM_NHWC_KERNEL
void depthwise_nhwc_forward_rows(const Conv2dShape& s, const float* x_image, const float* filters,
                                 const float* bias, bool accumulate, float* y_image,
                                 int64_t oh_begin, int64_t oh_end) {
  const Geometry g = geometry_of(s);
  const Range interior = forward_interior(g);
  const bool wide = has_wide_registers();
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    float* y_row = y_image + oh * g.OW * g.O;
    const KernelRows rows = kernel_rows(g, x_image, filters, oh);
    // Blocks of kPixels where their taps are all inside the image, single-pixel blocks with
    // the taps inside elsewhere; the channels after the last whole vector pixel by pixel.
    for (int64_t ow = 0; ow < g.OW;) {
      const bool whole = ow >= interior.first && ow + kPixels <= interior.end;
      const int64_t pixels = whole ? kPixels : 1;
      if (whole) {
        forward_blocks<kPixels>(g, rows, {0, g.KW}, bias, accumulate, y_row + ow * g.O, ow, wide);
      } else {
        forward_blocks<1>(g, rows, kernel_columns(g, ow), bias, accumulate, y_row + ow * g.O, ow,
                          wide);
      }
      if (g.whole_channels != g.O) {
        for (int64_t u = 0; u < pixels; ++u) {
          forward_pixel(g, x_image, filters, bias, accumulate, y_row + (ow + u) * g.O, oh, ow + u,
                        g.whole_channels);
        }
      }
      ow += pixels;
    }
  }
}

CONVGEMM_NHWC_KERNEL
void depthwise_nhwc_backward_data_rows(const Conv2dShape& s, const float* dy_image,
                                       const float* filters, bool accumulate, float* dx_image,
                                       int64_t ih_begin, int64_t ih_end) {
  // The identity of packed/flipped_filter.hpp: a depthwise filter's channel swap is none, and
  // its taps come reversed from depthwise_nhwc_tap_major.
  if (depthwise_nhwc_data_gradient_is_a_forward(s)) {
    depthwise_nhwc_forward_rows(data_gradient_forward_shape(s), dy_image, filters, nullptr,
                                accumulate, dx_image, ih_begin, ih_end);
    return;
  }
  const Geometry g = geometry_of(s);
  if (g.sh == 1 && g.sw == 1) {
    backward_data_rows<1, 1>(g, dy_image, filters, accumulate, dx_image, ih_begin, ih_end);
  } else if (g.sh == 2 && g.sw == 2) {
    backward_data_rows<2, 2>(g, dy_image, filters, accumulate, dx_image, ih_begin, ih_end);
  } else {
    backward_data_rows<0, 0>(g, dy_image, filters, accumulate, dx_image, ih_begin, ih_end);
  }
}

namespace {

// A chunk's sums: dw's, [range][KH*KW][kLanes], then db's, one double per output channel
// (copied in and out as bytes: the workspace holds floats).
int64_t weight_sum_floats(const Conv2dShape& s) {
  return ceil_div(s.out_channels, kLanes) * kLanes * s.kernel_height * s.kernel_width;
}

}  // namespace

int64_t depthwise_nhwc_chunk_floats(const Conv2dShape& s) {
  const int64_t bias_floats = s.out_channels * int64_t{sizeof(double) / sizeof(float)};
  return ceil_div(weight_sum_floats(s) + bias_floats, kLanes) * kLanes;
}

int64_t depthwise_nhwc_weight_chunks(const Conv2dShape& s) {
  constexpr int64_t kMaxChunks = 16;
  constexpr int64_t kMaxPartialBytes = int64_t{1} << 20;
  const int64_t affordable = kMaxPartialBytes / (depthwise_nhwc_chunk_floats(s) * 4);
  return std::clamp(std::min(s.batch * s.out_height(), affordable), int64_t{1}, kMaxChunks);
}

CONVGEMM_NHWC_KERNEL
void depthwise_nhwc_backward_weights_chunk(const Conv2dShape& s, const float* x, const float* dy,
                                           int64_t chunk, bool with_bias, float* chunk_sums) {
  const Geometry g = geometry_of(s);
  const int64_t rows = s.batch * g.OH, chunks = depthwise_nhwc_weight_chunks(s);
  const int64_t row_begin = chunk * rows / chunks, row_end = (chunk + 1) * rows / chunks;
  char* bias_sums =
      with_bias ? reinterpret_cast<char*>(chunk_sums + weight_sum_floats(s)) : nullptr;
  weights_chunk_for_width(std::make_integer_sequence<int, kMaxBlockedWidth + 1>{}, g, x, dy,
                          row_begin, row_end, chunk_sums, bias_sums);
}

CONVGEMM_NHWC_KERNEL
void depthwise_nhwc_add_weight_chunks(const Conv2dShape& s, float* chunk_sums, bool accumulate,
                                      float* dw, float* dbias) {
  const int64_t O = s.out_channels, T = s.kernel_height * s.kernel_width;
  const int64_t chunks = depthwise_nhwc_weight_chunks(s);
  const int64_t chunk_floats = depthwise_nhwc_chunk_floats(s), sums = weight_sum_floats(s);
  // Chunk 0's sums become the totals in place: (prior) + chunk 0 + chunk 1 + ..., element-wise.
  const auto at = [&](int64_t o, int64_t tap) {
    return (o / kLanes * T + tap) * kLanes + o % kLanes;
  };
  if (accumulate) {
    for (int64_t o = 0; o < O; ++o)
      for (int64_t tap = 0; tap < T; ++tap) chunk_sums[at(o, tap)] += dw[o * T + tap];
  }
  for (int64_t chunk = 1; chunk < chunks; ++chunk) {
    const float* chunk_k = chunk_sums + chunk * chunk_floats;
    for (int64_t i = 0; i < sums; ++i) chunk_sums[i] += chunk_k[i];
  }
  for (int64_t o = 0; o < O; ++o)
    for (int64_t tap = 0; tap < T; ++tap) dw[o * T + tap] = chunk_sums[at(o, tap)];
  if (dbias == nullptr) return;
  // db: each channel's chunk chains added in chunk order, in double, then rounded once.
  for (int64_t first = 0; first < O; first += kLanes) {
    const int64_t count = std::min(kLanes, O - first);
    const auto bytes = static_cast<std::size_t>(count) * sizeof(double);
    double total[kLanes], chain[kLanes];
    std::memcpy(total, chunk_sums + sums + 2 * first, bytes);
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      std::memcpy(chain, chunk_sums + chunk * chunk_floats + sums + 2 * first, bytes);
      for (int64_t c = 0; c < count; ++c) total[c] += chain[c];
    }
    for (int64_t c = 0; c < count; ++c) {
      const float sum = static_cast<float>(total[c]);
      dbias[first + c] = accumulate ? dbias[first + c] + sum : sum;
    }
  }
}

}  // namespace convgemm::detail
