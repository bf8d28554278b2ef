// ImageColumns's gather in AVX-512 (operands.hpp). A panel row of 16·V lanes is assembled in V
// registers, one masked load per run of lanes that read one image row, and stored whole. A
// masked load reads only its unmasked lanes (no fault, no value from the others), so the padding
// taps and the lanes of the other runs cost no branch and no separate zeroing: the registers
// start as zeros. Column stride 2 loads the 32 floats under each register and keeps the even
// ones (one two-source permute). The portable gather spent most of its time on the runs that
// end inside a panel, four floats and one bound check at a time. Copies only: the panels hold
// exactly the floats of the portable gather (the tests compare both with X_col).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "../im2col.hpp"
#include "convgemm/detail/check.hpp"
#include "operands.hpp"

namespace convgemm::detail {
namespace {

#define CONVGEMM_AVX512 [[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,bmi2")]]

constexpr int64_t kVectorLanes = 16;
constexpr int64_t kMaxVectors = 4;  // panels up to 64 lanes (BLIS's tiles are at most 32)
constexpr int64_t kMaxPanelLanes = kVectorLanes * kMaxVectors;
constexpr int64_t kGroupPanels = 8;  // panels whose runs are cut once and reused step by step
constexpr int64_t kCachedTaps = 16;  // kernel columns whose tap ranges are computed once

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("bmi2");
  return has;
}

// A stretch of a panel's lanes whose positions lie on one output row of one image.
struct Run {
  int64_t first_row;         // oh * stride_height of that output row
  int64_t lane_zero;         // where lane 0 would read in an image row at tap offset 0 (see below)
  uint64_t lanes;            // its lanes in the panel, as a mask
  int64_t ow, lane, length;  // its first output column and lane, and its length
  bool inside;               // every column of it reads inside the image at every kernel column
};

// base + offset floats, computed on integers: a masked load's base may lie before the image
// (the lanes in front of its run are masked off), and forming that pointer by pointer
// arithmetic would be undefined behaviour.
inline const float* address(const float* base, int64_t offset) {
  return reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(base) +
                                        static_cast<std::uintptr_t>(offset) * sizeof(float));
}

// Lanes [begin, end) of a panel as a bit mask; 0 <= begin < end <= kMaxPanelLanes.
inline uint64_t lane_mask(int64_t begin, int64_t end) {
  const uint64_t below_end = end == kMaxPanelLanes ? ~uint64_t{0} : (uint64_t{1} << end) - 1;
  return below_end & ~((uint64_t{1} << begin) - 1);
}

// `into` with lanes i of `mask` replaced by from[2 i].
CONVGEMM_AVX512 inline __m512 load_every_second(__m512 into, __mmask16 mask, const float* from) {
  const __mmask16 low = static_cast<__mmask16>(_pdep_u32(mask & 0xffu, 0x5555u));
  const __mmask16 high = static_cast<__mmask16>(_pdep_u32(mask >> 8, 0x5555u));
  const __m512 a = _mm512_maskz_loadu_ps(low, from);
  const __m512 b = _mm512_maskz_loadu_ps(high, address(from, kVectorLanes));
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  return _mm512_mask_mov_ps(into, mask, _mm512_permutex2var_ps(a, even, b));
}

template <int64_t Vectors, int64_t Stride>
CONVGEMM_AVX512 void gather(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                            int64_t steps, float* buffer) {
  constexpr int64_t width = Vectors * kVectorLanes;
  const Conv2dShape& s = *op.shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), P = s.gemm_p(), image_stride = s.in_channels * H * W;
  const int64_t sh = s.stride_height, panel_floats = steps * width;
  TapRange taps_of[kCachedTaps];
  for (int64_t kw = 0; kw < std::min(KW, kCachedTaps); ++kw) taps_of[kw] = tap_range(s, kw);
  // Columns that read inside the image at every kernel column: tap ranges shrink toward the
  // left as kw grows, so those of kw = 0 and kw = KW - 1 bound them all.
  const int64_t inside_begin = tap_range(s, 0).ow_begin, inside_end = tap_range(s, KW - 1).ow_end;
  Run runs[kGroupPanels * width];
  int64_t runs_of[kGroupPanels + 1];  // panel i's runs: [runs_of[i], runs_of[i + 1])
  const int64_t panels = ceil_div(lanes, width);
  for (int64_t group = 0; group < panels; group += kGroupPanels) {
    const int64_t group_end = std::min(panels, group + kGroupPanels);
    int64_t count = 0;
    for (int64_t panel = group; panel < group_end; ++panel) {
      runs_of[panel - group] = count;
      const int64_t used = std::min(width, lanes - panel * width);
      for (int64_t lane = 0; lane < used;) {
        const int64_t q = op.first_lane + first + panel * width + lane, p = q % P, ow = p % OW;
        const int64_t length = std::min(OW - ow, used - lane);
        // Lane l of the run reads output column ow + l - lane: lane 0 would read image column
        // (ow - lane) * stride + iw_offset of its image row.
        runs[count++] = {p / OW * sh,
                         q / P * image_stride + (ow - lane) * Stride,
                         lane_mask(lane, lane + length),
                         ow,
                         lane,
                         length,
                         inside_begin <= ow && ow + length <= inside_end};
        lane += length;
      }
    }
    runs_of[group_end - group] = count;
    int64_t c = step / (KH * KW), kh = step / KW % KH, kw = step % KW;
    for (int64_t t = 0; t < steps; ++t) {
      const TapRange taps = kw < kCachedTaps ? taps_of[kw] : tap_range(s, kw);
      const float* plane = op.x_group + c * H * W;
      const int64_t ih_offset = kh * s.dilation_height - s.pad_top;
      for (int64_t panel = group; panel < group_end; ++panel) {
        __m512 row[Vectors];
        for (int64_t v = 0; v < Vectors; ++v) row[v] = _mm512_setzero_ps();
        for (int64_t r = runs_of[panel - group]; r < runs_of[panel - group + 1]; ++r) {
          const Run& run = runs[r];
          const int64_t ih = run.first_row + ih_offset;
          if (ih < 0 || ih >= H) continue;
          uint64_t mask = run.lanes;
          if (!run.inside) {
            const int64_t begin = std::max(taps.ow_begin, run.ow);
            const int64_t end = std::min(taps.ow_end, run.ow + run.length);
            if (begin >= end) continue;
            mask = lane_mask(run.lane + begin - run.ow, run.lane + end - run.ow);
          }
          const int64_t origin = run.lane_zero + ih * W + taps.iw_offset;
          for (int64_t v = 0; v < Vectors; ++v) {
            const auto m = static_cast<__mmask16>(mask >> (v * kVectorLanes));
            if (m == 0) continue;
            const float* from = address(plane, origin + v * kVectorLanes * Stride);
            if constexpr (Stride == 1) {
              row[v] = _mm512_mask_loadu_ps(row[v], m, from);
            } else {
              row[v] = load_every_second(row[v], m, from);
            }
          }
        }
        float* out = buffer + panel * panel_floats + t * width;
        for (int64_t v = 0; v < Vectors; ++v) _mm512_storeu_ps(out + v * kVectorLanes, row[v]);
      }
      if (++kw == KW) {
        kw = 0;
        if (++kh == KH) kh = 0, ++c;
      }
    }
  }
}

template <int64_t Stride>
void gather_with_stride(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                        int64_t steps, int64_t width, float* buffer) {
  switch (width / kVectorLanes) {
    case 1:
      return gather<1, Stride>(op, first, lanes, step, steps, buffer);
    case 2:
      return gather<2, Stride>(op, first, lanes, step, steps, buffer);
    case 3:
      return gather<3, Stride>(op, first, lanes, step, steps, buffer);
    default:
      return gather<4, Stride>(op, first, lanes, step, steps, buffer);
  }
}

}  // namespace

bool pack_image_columns_avx512(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                               int64_t steps, int64_t width, float* buffer) {
  const int64_t stride = op.shape->stride_width;
  if (!cpu_has_avx512() || width % kVectorLanes != 0 || width > kMaxPanelLanes ||
      (stride != 1 && stride != 2)) {
    return false;
  }
  if (stride == 1) {
    gather_with_stride<1>(op, first, lanes, step, steps, width, buffer);
  } else {
    gather_with_stride<2>(op, first, lanes, step, steps, width, buffer);
  }
  return true;
}

}  // namespace convgemm::detail
