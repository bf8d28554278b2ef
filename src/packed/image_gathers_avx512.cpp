// The packed driver's image gathers in AVX-512 (operands.hpp), for CPUs that have it: forward's
// X_col panels (ImageColumns) and backward_weights' X_col^T panels (ImageRows). Both read an
// image row's run of output columns with one masked load: a masked load reads only its unmasked
// lanes (no fault, no value from the others), so the padding taps cost no branch and no separate
// zeroing. Column stride 2 loads the 32 floats under a register and keeps the even ones (one
// two-source permute). ImageColumns goes a kernel row at a time where its taps are close
// (gather_columns_by_kernel_rows), tap by tap otherwise (1x1, wide dilations). The portable
// gathers spent most of their time on runs that end inside a panel, four floats and one bound
// check at a time. Copies only: the panels hold exactly the floats of the portable gathers
// (test_packing compares both with X_col).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../avx512.hpp"
#include "../im2col.hpp"
#include "convgemm/detail/check.hpp"
#include "operands.hpp"
#include "panel_copies.hpp"

namespace convgemm::detail {
namespace {

constexpr int64_t kVectorLanes = 16;
constexpr int64_t kMaxVectors = 4;  // panels up to 64 lanes (BLIS's tiles are at most 32)
constexpr int64_t kMaxPanelLanes = kVectorLanes * kMaxVectors;
constexpr int64_t kGroupPanels = 8;  // panels whose runs are cut once and reused step by step
constexpr int64_t kCachedTaps = 16;  // kernel columns whose tap ranges are computed once
// How far ahead ImageColumns prefetches a plane: channels enough for this many taps' loads, and
// at least two. One tap a channel (1x1) is little work per channel: two channels ahead had
// been too close for dY coming from memory (1x1 64->256's backward_data at batch 8).
constexpr int64_t kPrefetchedTaps = 16;
constexpr int64_t kMinPrefetchedChannels = 2;
constexpr int64_t kPrefetchedPanels = 2;  // how far ahead ImageRows prefetches its lanes

// ImageColumns: a panel row of 16·V lanes (positions) is assembled in V registers, one masked
// load per run of lanes that read one image row, and stored whole; the registers start as zeros.
// Which runs a panel row loads, and under which masks, depends on the kernel tap (kh, kw) and
// not on the channel: so it is worked out once per tap for a group of panels (the loads below),
// and every channel then repeats the same loads from its own plane, with no bound check.

// A stretch of a panel's lanes whose positions lie on one output row of one image.
struct Run {
  int64_t first_row;         // oh * stride_height of that output row
  int64_t lane_zero;         // where lane 0 would read in an image row at tap offset 0 (see below)
  int64_t ow, lane, length;  // its first output column and lane, and its length
};

// One masked load of a panel row at one tap: `offset` floats from the channel's plane, the
// lanes of `mask` (those of a run that read inside the image at that tap).
struct TapLoad {
  int64_t offset;
  uint64_t mask;
};
constexpr int64_t kMaxTapLoads = 2048;  // a group's loads for a block of taps (32 KiB)

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

// Cuts panels [group, group_end) of `width` lanes (`lanes` in all from `first`) into their runs:
// panel group + i's are runs[runs_of[i]] to runs[runs_of[i + 1] - 1]. Returns their count.
template <int64_t Stride>
int64_t cut_runs(const ImageColumns& op, int64_t first, int64_t lanes, int64_t width, int64_t group,
                 int64_t group_end, Run* runs, int64_t* runs_of) {
  const Conv2dShape& s = *op.shape;
  const int64_t OW = s.out_width(), P = s.gemm_p();
  const int64_t image_stride = s.in_channels * s.in_height * s.in_width;
  int64_t run_count = 0;
  for (int64_t panel = group; panel < group_end; ++panel) {
    runs_of[panel - group] = run_count;
    const int64_t used = std::min(width, lanes - panel * width);
    for (int64_t lane = 0; lane < used;) {
      const int64_t q = op.first_lane + first + panel * width + lane, p = q % P, ow = p % OW;
      const int64_t length = std::min(OW - ow, used - lane);
      // Lane l of the run reads output column ow + l - lane: lane 0 would read image column
      // (ow - lane) * stride + iw_offset of its image row.
      runs[run_count++] = {p / OW * s.stride_height, q / P * image_stride + (ow - lane) * Stride,
                           ow, lane, length};
      lane += length;
    }
  }
  runs_of[group_end - group] = run_count;
  return run_count;
}

// The floats a block of loads touches in a channel's plane, [begin, end), prefetched a few
// channels ahead (enough for kPrefetchedTaps taps' loads, at least kMinPrefetchedChannels): a
// large image (VGG's 224 x 224 x 64, 12.8 MB) comes from memory, and the stretches of
// successive channels are a plane apart, too far for the hardware prefetcher to follow. Only
// where the stretch lies within one image: small images side by side spread it over all of
// them (8 planes of 3x3 512@7 at batch 8, 800 KB of prefetches per channel, were 84% of that
// gather).
struct PlanePrefetch {
  int64_t begin, end, channels_ahead;
  bool on;
  PlanePrefetch(int64_t touched_begin, int64_t touched_end, int64_t taps, int64_t plane_floats)
      : begin(touched_begin),
        end(touched_end),
        channels_ahead(std::max(kMinPrefetchedChannels, ceil_div(kPrefetchedTaps, taps))),
        on(touched_begin < touched_end && touched_end - touched_begin <= plane_floats) {}
  // Before channel c (of those up to c_last) of planes plane_floats apart from `plane`.
  CONVGEMM_AVX512 void before(const float* plane, int64_t c, int64_t c_last,
                              int64_t plane_floats) const {
    if (!on || c + channels_ahead > c_last) return;
    const float* ahead = address(plane, channels_ahead * plane_floats);
    for (int64_t at = begin; at < end; at += panel::kFloatsPerLine) {
      _mm_prefetch(reinterpret_cast<const char*>(address(ahead, at)), _MM_HINT_T0);
    }
  }
};

template <int64_t Width, int64_t Stride>
CONVGEMM_AVX512 void gather_columns(const ImageColumns& op, int64_t first, int64_t lanes,
                                    int64_t step, int64_t steps, float* buffer) {
  constexpr int64_t width = Width, Vectors = (Width + kVectorLanes - 1) / kVectorLanes;
  // (A width of 12, the columns' panels of a kernel that prefers columns, stores 12 of the
  // last vector's lanes.)
  constexpr auto last_lanes =
      static_cast<__mmask16>((1u << (Width - (Vectors - 1) * kVectorLanes)) - 1);
  const Conv2dShape& s = *op.shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t T = KH * KW, panel_floats = steps * width;
  Run runs[kGroupPanels * width];
  int64_t runs_of[kGroupPanels + 1];  // panel i's runs: [runs_of[i], runs_of[i + 1])
  TapLoad loads[kMaxTapLoads];
  int64_t loads_of[kMaxTapLoads + 1];  // (tap - tap_begin, panel)'s loads: [loads_of[i], ...)
  const int64_t panels = ceil_div(lanes, width);
  const int64_t c_first = step / T, c_last = (step + steps - 1) / T;
  for (int64_t group = 0; group < panels; group += kGroupPanels) {
    const int64_t group_end = std::min(panels, group + kGroupPanels), count = group_end - group;
    const int64_t run_count =
        cut_runs<Stride>(op, first, lanes, width, group, group_end, runs, runs_of);
    // Taps in blocks whose loads fit (a run has at most one load per tap).
    const int64_t taps_per_block = std::clamp<int64_t>(kMaxTapLoads / run_count, 1, T);
    for (int64_t tap_begin = 0; tap_begin < T; tap_begin += taps_per_block) {
      const int64_t tap_end = std::min(T, tap_begin + taps_per_block);
      int64_t load_count = 0;
      for (int64_t tap = tap_begin; tap < tap_end; ++tap) {
        const TapRange taps = tap_range(s, tap % KW);
        const int64_t ih_offset = tap / KW * s.dilation_height - s.pad_top;
        for (int64_t panel = 0; panel < count; ++panel) {
          loads_of[(tap - tap_begin) * count + panel] = load_count;
          for (int64_t r = runs_of[panel]; r < runs_of[panel + 1]; ++r) {
            const Run& run = runs[r];
            const int64_t ih = run.first_row + ih_offset;
            const int64_t begin = std::max(taps.ow_begin, run.ow);
            const int64_t end = std::min(taps.ow_end, run.ow + run.length);
            if (ih < 0 || ih >= H || begin >= end) continue;
            loads[load_count++] = {run.lane_zero + ih * W + taps.iw_offset,
                                   lane_mask(run.lane + begin - run.ow, run.lane + end - run.ow)};
          }
        }
      }
      loads_of[(tap_end - tap_begin) * count] = load_count;
      int64_t touched_begin = std::numeric_limits<int64_t>::max(), touched_end = 0;
      for (int64_t l = 0; l < load_count; ++l) {
        touched_begin = std::min(touched_begin, loads[l].offset);
        touched_end = std::max(touched_end, loads[l].offset + width * Stride);
      }
      const PlanePrefetch prefetch(touched_begin, touched_end, tap_end - tap_begin, H * W);
      for (int64_t c = c_first; c <= c_last; ++c) {
        const float* plane = op.x_group + c * H * W;
        prefetch.before(plane, c, c_last, H * W);
        for (int64_t tap = tap_begin; tap < tap_end; ++tap) {
          const int64_t t = c * T + tap - step;
          if (t < 0 || t >= steps) continue;
          const int64_t* panel_loads = loads_of + (tap - tap_begin) * count;
          for (int64_t panel = 0; panel < count; ++panel) {
            __m512 row[Vectors];
            for (int64_t v = 0; v < Vectors; ++v) row[v] = _mm512_setzero_ps();
            for (int64_t l = panel_loads[panel]; l < panel_loads[panel + 1]; ++l) {
              const TapLoad load = loads[l];
              for (int64_t v = 0; v < Vectors; ++v) {
                const auto m = static_cast<__mmask16>(load.mask >> (v * kVectorLanes));
                if (m == 0) continue;  // (no load outside the image: see gather_rows)
                const float* from = address(plane, load.offset + v * kVectorLanes * Stride);
                if constexpr (Stride == 1) {
                  row[v] = _mm512_mask_loadu_ps(row[v], m, from);
                } else {
                  row[v] = load_every_second(row[v], m, from);
                }
              }
            }
            float* out = buffer + (group + panel) * panel_floats + t * width;
            for (int64_t v = 0; v + 1 < Vectors; ++v) {
              _mm512_storeu_ps(out + v * kVectorLanes, row[v]);
            }
            _mm512_mask_storeu_ps(out + (Vectors - 1) * kVectorLanes, last_lanes, row[Vectors - 1]);
          }
        }
      }
    }
  }
}

// ImageColumns a kernel row at a time, where a kernel row's taps lie at most kMaxRowShift
// columns apart: at tap (kh, kw) a run reads the image row it reads at (kh, 0), kw * dilation
// columns on. So each run loads one window of that row per kernel row (masked loads: zeros
// outside the image), and each of the KW panel rows is the window moved kw * dilation lanes in
// registers (stride 2: the window's even and odd columns apart first, then moved by half the
// distance within its phase). The tap-by-tap gather above loads (and, at stride 2, takes apart)
// every tap's run again and works out its loads per tap: 22-24% of the 3-channel stem's and
// textbook layer's forward, whose 75-147 steps per position make the gather large next to the
// micro-kernel's share.
constexpr int64_t kMaxRowShift = 16;  // one window vector past the panel's

// A run's window at one kernel row: where it starts in the channel's plane, the run it is for.
struct RowLoad {
  int64_t offset;
  int64_t run;
};
// A run's masks: the window's raw vectors (columns inside the image) and the panel lanes it
// stores (whole: all of them).
struct RunMasks {
  __mmask16 raw[2 * (kMaxVectors + 1)];
  __mmask16 stores[kMaxVectors];
  bool whole;
};

// Lanes `moved` of the window (low, high) of phase 0 or of phase 1 (taken apart: a window
// indexed by a variable phase had lived on the stack).
[[gnu::always_inline]] CONVGEMM_AVX512 inline __m512 moved_window(__m512 low0, __m512 high0,
                                                                  __m512 low1, __m512 high1,
                                                                  int64_t phase, __m512i moved) {
  return phase == 0 ? _mm512_permutex2var_ps(low0, moved, high0)
                    : _mm512_permutex2var_ps(low1, moved, high1);
}

template <int64_t Width, int64_t Stride>
CONVGEMM_AVX512 void gather_columns_by_kernel_rows(const ImageColumns& op, int64_t first,
                                                   int64_t lanes, int64_t step, int64_t steps,
                                                   float* buffer) {
  constexpr int64_t width = Width, Vectors = (Width + kVectorLanes - 1) / kVectorLanes;
  constexpr int64_t Windows = Vectors + 1, Raw = Stride * Windows;
  // (A width of 12 stores 12 of the last vector's lanes.)
  constexpr auto last_lanes =
      static_cast<__mmask16>((1u << (Width - (Vectors - 1) * kVectorLanes)) - 1);
  const Conv2dShape& s = *op.shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t T = KH * KW, panel_floats = steps * width;
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i even = _mm512_add_epi32(iota, iota);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  __m512i moved_of[kMaxRowShift + 1];  // per kw: the window lanes its panel lanes read
  int64_t phase_of[kMaxRowShift + 1];
  for (int64_t kw = 0; kw < KW; ++kw) {
    const int64_t distance = kw * s.dilation_width;
    moved_of[kw] = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int>(distance / Stride)));
    phase_of[kw] = distance % Stride;
  }
  Run runs[kGroupPanels * width];
  RunMasks masks[kGroupPanels * width];
  int64_t runs_of[kGroupPanels + 1];
  RowLoad loads[kMaxTapLoads];
  int64_t loads_of[kMaxTapLoads + 1];  // (kh - kh_begin, panel)'s loads: [loads_of[i], ...)
  bool covered[kMaxTapLoads];          // whether those loads cover every lane of the panel
  const int64_t panels = ceil_div(lanes, width);
  const int64_t c_first = step / T, c_last = (step + steps - 1) / T;
  for (int64_t group = 0; group < panels; group += kGroupPanels) {
    const int64_t group_end = std::min(panels, group + kGroupPanels), count = group_end - group;
    const int64_t run_count =
        cut_runs<Stride>(op, first, lanes, width, group, group_end, runs, runs_of);
    for (int64_t r = 0; r < run_count; ++r) {
      // Window lane i (raw vector u, lane j: i = 16 u + j) reads image column
      // (ow - lane) * Stride - pad_left + i, inside the image where it is in [0, W).
      const Run& run = runs[r];
      RunMasks& m = masks[r];
      const int64_t column = (run.ow - run.lane) * Stride - s.pad_left;
      for (int64_t u = 0; u < Raw; ++u) {
        const int64_t begin = std::clamp<int64_t>(-column - u * kVectorLanes, 0, kVectorLanes);
        const int64_t end = std::clamp<int64_t>(W - column - u * kVectorLanes, 0, kVectorLanes);
        m.raw[u] = static_cast<__mmask16>(begin < end ? lane_mask(begin, end) : 0);
      }
      const uint64_t run_lanes = lane_mask(run.lane, run.lane + run.length);
      for (int64_t v = 0; v < Vectors; ++v) {
        m.stores[v] = static_cast<__mmask16>(run_lanes >> (v * kVectorLanes)) &
                      (v + 1 < Vectors ? __mmask16{0xffff} : last_lanes);
      }
      m.whole = run.lane == 0 && run.length == width;
    }
    const uint64_t all_lanes = lane_mask(0, width);
    const int64_t rows_per_block = std::clamp<int64_t>(kMaxTapLoads / run_count, 1, KH);
    for (int64_t kh_begin = 0; kh_begin < KH; kh_begin += rows_per_block) {
      const int64_t kh_end = std::min(KH, kh_begin + rows_per_block);
      int64_t load_count = 0;
      int64_t touched_begin = std::numeric_limits<int64_t>::max(), touched_end = 0;
      for (int64_t kh = kh_begin; kh < kh_end; ++kh) {
        const int64_t ih_offset = kh * s.dilation_height - s.pad_top;
        for (int64_t panel = 0; panel < count; ++panel) {
          const int64_t i = (kh - kh_begin) * count + panel;
          loads_of[i] = load_count;
          uint64_t lanes_loaded = 0;
          for (int64_t r = runs_of[panel]; r < runs_of[panel + 1]; ++r) {
            const int64_t ih = runs[r].first_row + ih_offset;
            if (ih < 0 || ih >= H) continue;
            const int64_t offset = runs[r].lane_zero + ih * W - s.pad_left;
            loads[load_count++] = {offset, r};
            lanes_loaded |= lane_mask(runs[r].lane, runs[r].lane + runs[r].length);
            touched_begin = std::min(touched_begin, offset);
            touched_end = std::max(touched_end, offset + Raw * kVectorLanes);
          }
          covered[i] = lanes_loaded == all_lanes;
        }
      }
      loads_of[(kh_end - kh_begin) * count] = load_count;
      const PlanePrefetch prefetch(touched_begin, touched_end, (kh_end - kh_begin) * KW, H * W);
      for (int64_t c = c_first; c <= c_last; ++c) {
        const float* plane = op.x_group + c * H * W;
        prefetch.before(plane, c, c_last, H * W);
        for (int64_t kh = kh_begin; kh < kh_end; ++kh) {
          // The call's steps may begin or end inside this kernel row: its taps [kw_begin, kw_end).
          const int64_t t0 = c * T + kh * KW - step;
          const int64_t kw_begin = std::max<int64_t>(0, -t0), kw_end = std::min(KW, steps - t0);
          if (kw_begin >= kw_end) continue;
          for (int64_t panel = 0; panel < count; ++panel) {
            float* out = buffer + (group + panel) * panel_floats + t0 * width;
            const int64_t i = (kh - kh_begin) * count + panel;
            if (!covered[i]) {
              for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
                for (int64_t v = 0; v < Vectors; ++v) {
                  _mm512_mask_storeu_ps(out + kw * width + v * kVectorLanes,
                                        v + 1 < Vectors ? __mmask16{0xffff} : last_lanes,
                                        _mm512_setzero_ps());
                }
              }
            }
            for (int64_t l = loads_of[i]; l < loads_of[i + 1]; ++l) {
              const RunMasks& m = masks[loads[l].run];
              __m512 raw[Raw];
              for (int64_t u = 0; u < Raw; ++u) {
                // (No load where no lane is inside: see gather_rows.)
                raw[u] = m.raw[u] == 0
                             ? _mm512_setzero_ps()
                             : _mm512_maskz_loadu_ps(
                                   m.raw[u], address(plane, loads[l].offset + u * kVectorLanes));
              }
              __m512 phases[Stride][Windows];
              for (int64_t w = 0; w < Windows; ++w) {
                if constexpr (Stride == 1) {
                  phases[0][w] = raw[w];
                } else {
                  phases[0][w] = _mm512_permutex2var_ps(raw[2 * w], even, raw[2 * w + 1]);
                  phases[1][w] = _mm512_permutex2var_ps(raw[2 * w], odd, raw[2 * w + 1]);
                }
              }
              // Panel lane i at tap kw reads window lane i + kw * dilation: at stride 2, lane
              // (i + kw * dilation / 2) of the phase of kw * dilation's parity.
              if (m.whole) {
                for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
                  float* at = out + kw * width;
                  for (int64_t v = 0; v + 1 < Vectors; ++v) {
                    _mm512_storeu_ps(
                        at + v * kVectorLanes,
                        moved_window(phases[0][v], phases[0][v + 1], phases[Stride - 1][v],
                                     phases[Stride - 1][v + 1], phase_of[kw], moved_of[kw]));
                  }
                  _mm512_mask_storeu_ps(
                      at + (Vectors - 1) * kVectorLanes, last_lanes,
                      moved_window(phases[0][Vectors - 1], phases[0][Vectors - 1 + 1],
                                   phases[Stride - 1][Vectors - 1],
                                   phases[Stride - 1][Vectors - 1 + 1], phase_of[kw],
                                   moved_of[kw]));
                }
              } else {
                for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
                  for (int64_t v = 0; v < Vectors; ++v) {
                    if (m.stores[v] == 0) continue;
                    _mm512_mask_storeu_ps(
                        out + kw * width + v * kVectorLanes, m.stores[v],
                        moved_window(phases[0][v], phases[0][v + 1], phases[Stride - 1][v],
                                     phases[Stride - 1][v + 1], phase_of[kw], moved_of[kw]));
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

template <int64_t Stride>
void gather_columns_with_stride(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                                int64_t steps, int64_t width, float* buffer) {
  const Conv2dShape& s = *op.shape;
  const bool by_kernel_rows =
      s.kernel_width > 1 && (s.kernel_width - 1) * s.dilation_width <= kMaxRowShift;
  const auto gather = [&](auto static_width) {
    constexpr int64_t Width = decltype(static_width)::value;
    if (by_kernel_rows) {
      gather_columns_by_kernel_rows<Width, Stride>(op, first, lanes, step, steps, buffer);
    } else {
      gather_columns<Width, Stride>(op, first, lanes, step, steps, buffer);
    }
  };
  switch (width) {
    case 12:
      return gather(std::integral_constant<int64_t, 12>{});
    case 16:
      return gather(std::integral_constant<int64_t, 16>{});
    case 32:
      return gather(std::integral_constant<int64_t, 32>{});
    case 48:
      return gather(std::integral_constant<int64_t, 48>{});
    default:
      return gather(std::integral_constant<int64_t, 64>{});
  }
}

// ImageRows: 16 lanes (X_col rows) by up to 16 steps (consecutive positions on one output row)
// at a time: each lane's run is one masked load, the 16 x 16 block is transposed in registers
// (four rounds of shuffles) and its columns are the panel rows' 16-lane pieces.

// r[i] = lane i's 16 steps in, r[j] = step j's 16 lanes out.
CONVGEMM_AVX512 inline void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // lane L of t[i]: steps 4L, 4L+1 of rows i, i+1
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane L of r[i + m]: step 4L+m of rows i..i+3
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int m = 0; m < 4; ++m) {  // 128-bit lane L of the four row groups into step 4L+m
    const __m512 a = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x44);
    const __m512 b = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xee);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x44);
    const __m512 d = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xee);
    t[m] = _mm512_shuffle_f32x4(a, c, 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(a, c, 0xdd);
    t[8 + m] = _mm512_shuffle_f32x4(b, d, 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(b, d, 0xdd);
  }
  for (int j = 0; j < 16; ++j) r[j] = t[j];
}

// What one lane (X_col row k = (c, kh, kw)) reads: a step at output row oh, column ow of image
// n reads image row ih = oh * stride_height + ih_offset at offset
// n * image_stride + ih_offset * W + base + oh * stride_height * W + ow * stride_width,
// when ih is inside the image and ow among the taps' columns.
struct PanelLanes {
  alignas(64) int64_t base[kMaxPanelLanes];       // c * H * W + ih_offset * W + iw_offset
  alignas(64) int64_t ih_offset[kMaxPanelLanes];  // kh * dilation_height - pad_top
  alignas(64) int64_t ow_begin[kMaxPanelLanes];
  alignas(64) int64_t ow_end[kMaxPanelLanes];
};

// Consecutive steps on one output row of one image, at most 16.
struct StepRun {
  int64_t offset;          // image_offset + oh * stride_height * W + ow * stride_width
  int64_t first_row;       // oh * stride_height
  int64_t ow, length, at;  // at: its first step in the call's range
  bool inside;             // every column of it reads inside the image at every kernel column
};

constexpr int64_t kRunSteps = 256;  // steps whose runs are cut at a time

// The load masks of lanes [first, first + 16) for `run`, eight lanes per vector (the bounds
// are 64-bit): the run's steps whose image row is inside the image and, unless every column of
// the run is, whose columns are among the lane's taps' (no branch per lane).
CONVGEMM_AVX512 inline void lane_masks(const PanelLanes& lanes, int64_t first, const StepRun& run,
                                       int64_t H, uint64_t* masks) {
  const __m512i one = _mm512_set1_epi64(1), row = _mm512_set1_epi64(run.first_row);
  const __m512i run_begin = _mm512_set1_epi64(run.ow);
  const __m512i run_end = _mm512_set1_epi64(run.ow + run.length);
  for (int64_t half = 0; half < 2; ++half) {
    const int64_t at = first + 8 * half;
    const __m512i ih = _mm512_add_epi64(row, _mm512_load_si512(lanes.ih_offset + at));
    __mmask8 read = _mm512_cmpge_epi64_mask(ih, _mm512_setzero_si512()) &
                    _mm512_cmplt_epi64_mask(ih, _mm512_set1_epi64(H));
    __m512i mask = _mm512_set1_epi64(int64_t{(1 << run.length) - 1});
    if (!run.inside) {  // only the taps' columns of the run
      const __m512i begin = _mm512_max_epi64(_mm512_load_si512(lanes.ow_begin + at), run_begin);
      const __m512i end = _mm512_min_epi64(_mm512_load_si512(lanes.ow_end + at), run_end);
      read &= _mm512_cmplt_epi64_mask(begin, end);
      const __m512i ones =
          _mm512_sub_epi64(_mm512_sllv_epi64(one, _mm512_sub_epi64(end, begin)), one);
      mask = _mm512_sllv_epi64(ones, _mm512_sub_epi64(begin, run_begin));
    }
    _mm512_store_si512(masks + 8 * half, _mm512_maskz_mov_epi64(read, mask));
  }
}

template <int64_t Stride>
CONVGEMM_AVX512 void gather_rows(const ImageRows& op, int64_t first, int64_t lanes, int64_t step,
                                 int64_t steps, int64_t width, float* buffer) {
  const Conv2dShape& s = *op.shape;
  const int64_t KH = s.kernel_height, KW = s.kernel_width, H = s.in_height, W = s.in_width;
  const int64_t OW = s.out_width(), P = s.gemm_p(), image_stride = s.in_channels * H * W;
  TapRange taps_of[kCachedTaps];
  for (int64_t kw = 0; kw < std::min(KW, kCachedTaps); ++kw) taps_of[kw] = tap_range(s, kw);
  const int64_t inside_begin = tap_range(s, 0).ow_begin, inside_end = tap_range(s, KW - 1).ow_end;
  StepRun runs[kRunSteps];
  PanelLanes lane_of;
  const bool geometry_is_ordinary = s.pad_top <= H && s.pad_left <= W &&
                                    (KH - 1) * s.dilation_height <= 2 * H &&
                                    (KW - 1) * s.dilation_width <= 2 * W;
  const int64_t panels = ceil_div(lanes, width);
  for (int64_t t0 = 0; t0 < steps; t0 += kRunSteps) {
    const int64_t chunk = std::min(kRunSteps, steps - t0);
    int64_t run_count = 0;
    for (int64_t t = 0; t < chunk;) {
      const int64_t q = step + t0 + t, p = q % P, ow = p % OW, first_row = p / OW * s.stride_height;
      const int64_t length = std::min({OW - ow, chunk - t, kVectorLanes});
      runs[run_count++] = {
          q / P * image_stride + first_row * W + ow * Stride, first_row, ow, length, t0 + t,
          inside_begin <= ow && ow + length <= inside_end};
      t += length;
    }
    // What a channel's lanes read of its plane for these runs, as one stretch (all kernel rows
    // and columns): prefetched for the channels of the panel after next, a plane or more away.
    // Only where the padding and the dilated kernel are within the image's size (the bounds
    // then stay far from overflow) and the stretch is within one image's rows.
    int64_t touched_begin = 0, touched_end = 0;
    if (geometry_is_ordinary) {
      touched_begin = runs[0].offset - s.pad_top * W + taps_of[0].iw_offset;
      touched_end = runs[run_count - 1].offset + ((KH - 1) * s.dilation_height - s.pad_top) * W +
                    tap_range(s, KW - 1).iw_offset + kVectorLanes * Stride;
    }
    const bool prefetch = geometry_is_ordinary && touched_end - touched_begin <= H * W;
    for (int64_t panel = 0; panel < panels; ++panel) {
      if (prefetch && panel + kPrefetchedPanels < panels) {
        const int64_t k = first + (panel + kPrefetchedPanels) * width;
        const int64_t c_end = std::min(ceil_div(k + width, KH * KW), s.in_channels / s.groups);
        for (int64_t c = k / (KH * KW); c < c_end; ++c) {
          for (int64_t at = touched_begin; at < touched_end; at += panel::kFloatsPerLine) {
            _mm_prefetch(reinterpret_cast<const char*>(address(op.x_group, c * H * W + at)),
                         _MM_HINT_T0);
          }
        }
      }
      for (int64_t i = 0; i < width; ++i) {
        const int64_t k = first + panel * width + i;
        const int64_t c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
        const TapRange taps = kw < kCachedTaps ? taps_of[kw] : tap_range(s, kw);
        const int64_t ih_offset = kh * s.dilation_height - s.pad_top;
        const bool used = i < lanes - panel * width;
        lane_of.base[i] = c * H * W + ih_offset * W + taps.iw_offset;
        // An unused lane (padding of the last panel) reads no image row: zeros.
        lane_of.ih_offset[i] = used ? ih_offset : std::numeric_limits<int64_t>::min() / 2;
        lane_of.ow_begin[i] = taps.ow_begin;
        lane_of.ow_end[i] = taps.ow_end;
      }
      float* panel_rows = buffer + panel * steps * width;
      for (int64_t r = 0; r < run_count; ++r) {
        const StepRun& run = runs[r];
        for (int64_t v = 0; v < width / kVectorLanes; ++v) {
          alignas(64) uint64_t masks[kVectorLanes];
          lane_masks(lane_of, v * kVectorLanes, run, H, masks);
          __m512 block[16];
#pragma GCC unroll 16
          for (int64_t i = 0; i < 16; ++i) {
            // A load with no lane reads from the group's first float: its own address may lie
            // outside the image, and on AMD's cores a masked load whose masked lanes touch an
            // unmapped page takes a microcode assist even with no lane left (the stem's
            // backward_weights ran at a third of its speed when the page before x was unmapped).
            const auto mask = static_cast<__mmask16>(masks[i]);
            const int64_t offset = mask != 0 ? run.offset + lane_of.base[v * 16 + i] : 0;
            const float* from = address(op.x_group, offset);
            if constexpr (Stride == 1) {
              block[i] = _mm512_maskz_loadu_ps(mask, from);
            } else {
              block[i] = load_every_second(_mm512_setzero_ps(), mask, from);
            }
          }
          transpose_16x16(block);
          float* out = panel_rows + run.at * width + v * kVectorLanes;
          for (int64_t j = 0; j < run.length; ++j) _mm512_storeu_ps(out + j * width, block[j]);
        }
      }
    }
  }
}

// Whether the AVX-512 gathers take panels `width` wide at column stride `stride` on this CPU.
bool avx512_gathers_take(int64_t width, int64_t stride) {
  return cpu_has_avx512() && width % kVectorLanes == 0 && width <= kMaxPanelLanes &&
         (stride == 1 || stride == 2);
}

}  // namespace

bool pack_image_columns_avx512(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                               int64_t steps, int64_t width, float* buffer) {
  const int64_t stride = op.shape->stride_width;
  if (!avx512_gathers_take(width, stride) && !(width == 12 && avx512_gathers_take(16, stride))) {
    return false;
  }
  if (stride == 1) {
    gather_columns_with_stride<1>(op, first, lanes, step, steps, width, buffer);
  } else {
    gather_columns_with_stride<2>(op, first, lanes, step, steps, width, buffer);
  }
  return true;
}

bool pack_image_rows_avx512(const ImageRows& op, int64_t first, int64_t lanes, int64_t step,
                            int64_t steps, int64_t width, float* buffer) {
  const int64_t stride = op.shape->stride_width;
  if (!avx512_gathers_take(width, stride)) return false;
  if (stride == 1) {
    gather_rows<1>(op, first, lanes, step, steps, width, buffer);
  } else {
    gather_rows<2>(op, first, lanes, step, steps, width, buffer);
  }
  return true;
}

}  // namespace convgemm::detail
