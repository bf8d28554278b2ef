// col2im_block in AVX-512 for column stride 1 (im2col.hpp), for CPUs that have it. The portable
// form adds one X_col row at a time into the image: a 3x3 kernel's nine rows of one channel add
// into the same image rows shifted by one float each, so every load of an image row found the
// previous row's stores still in flight at another alignment (a store-forwarding stall per
// vector; perf put half of col2im's samples on that load and store). Here an image row is
// visited once: 16 of its floats are loaded, every X_col row that adds into them adds in turn
// (in ascending k, the portable form's order, so every element sees the same additions in the
// same order and gets the same bits), and they are stored once. Lanes a row does not reach are
// masked off, never added a zero (which would turn -0 into +0).

#include <algorithm>
#include <cstdint>

#include "avx512.hpp"
#include "convgemm/detail/check.hpp"
#include "im2col.hpp"

namespace convgemm::detail {
namespace {

constexpr int64_t kVectorLanes = 16;
constexpr int64_t kMaxTaps = 64;  // X_col rows per channel this form takes (KH * KW)

// One X_col row's run that adds into the image row being visited: image column iw gets
// from[iw] for iw in [begin, end) (from is the run's entry for image column 0).
struct Addend {
  const float* from;
  int64_t begin, end;
};

inline __mmask16 lanes(int64_t begin, int64_t end) {  // [begin, end) within [0, 16), begin < end
  return static_cast<__mmask16>(((1u << (end - begin)) - 1) << begin);
}

CONVGEMM_AVX512 inline void add_into_row(const Addend* addends, int64_t count, int64_t W,
                                         float* row) {
  // Chunks whose every lane every addend reaches need no masks.
  int64_t full_begin = 0, full_end = W;
  for (int64_t a = 0; a < count; ++a) {
    full_begin = std::max(full_begin, addends[a].begin);
    full_end = std::min(full_end, addends[a].end);
  }
  for (int64_t iw = 0; iw < W; iw += kVectorLanes) {
    const int64_t chunk_end = std::min(W, iw + kVectorLanes);
    if (full_begin <= iw && iw + kVectorLanes <= full_end) {
      __m512 sum = _mm512_loadu_ps(row + iw);
      for (int64_t a = 0; a < count; ++a)
        sum = _mm512_add_ps(sum, _mm512_loadu_ps(address(addends[a].from, iw)));
      _mm512_storeu_ps(row + iw, sum);
      continue;
    }
    const __mmask16 in_row = lanes(0, chunk_end - iw);
    __m512 sum = _mm512_maskz_loadu_ps(in_row, row + iw);
    for (int64_t a = 0; a < count; ++a) {
      const int64_t begin = std::max(iw, addends[a].begin);
      const int64_t end = std::min(chunk_end, addends[a].end);
      if (begin >= end) continue;
      const __mmask16 m = lanes(begin - iw, end - iw);
      sum = _mm512_mask_add_ps(sum, m, sum, _mm512_maskz_loadu_ps(m, address(addends[a].from, iw)));
    }
    _mm512_mask_storeu_ps(row + iw, in_row, sum);
  }
}

}  // namespace

bool col2im_block_avx512(const Conv2dShape& s, const float* x_col, const ColumnBlock& block,
                         float* image, int64_t ld) {
  const int64_t KH = s.kernel_height, KW = s.kernel_width, T = KH * KW;
  if (!cpu_has_avx512() || s.stride_width != 1 || T > kMaxTaps) return false;
  const int64_t H = s.in_height, W = s.in_width, OW = s.out_width();
  const int64_t sh = s.stride_height, dh = s.dilation_height, pt = s.pad_top;
  const int64_t columns = ld != 0 ? ld : block.columns(s);
  TapRange taps_of[kMaxTaps];
  for (int64_t kw = 0; kw < KW; ++kw) taps_of[kw] = tap_range(s, kw);
  // The image rows the block's output rows reach, with any kernel row.
  const int64_t ih_first = std::max<int64_t>(0, block.oh_begin * sh - pt);
  const int64_t ih_last = std::min<int64_t>(H - 1, (block.oh_end - 1) * sh - pt + (KH - 1) * dh);
  Addend addends[kMaxTaps];
  for (int64_t c = block.k_begin / T; c * T < block.k_end; ++c) {
    const int64_t k_first = std::max(block.k_begin, c * T),
                  k_end = std::min(block.k_end, c * T + T);
    for (int64_t ih = ih_first; ih <= ih_last; ++ih) {
      int64_t count = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {     // then kw: ascending k, the order of the additions
        const int64_t top = ih + pt - kh * dh;  // oh * sh for the output row that reads ih
        if (top < 0 || (sh != 1 && top % sh != 0)) continue;
        const int64_t oh = sh == 1 ? top : top / sh;
        if (oh < block.oh_begin || oh >= block.oh_end) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t k = c * T + kh * KW + kw;
          const TapRange& taps = taps_of[kw];
          if (k < k_first || k >= k_end || taps.ow_begin == taps.ow_end) continue;
          // Output column ow adds into image column ow + iw_offset.
          const float* entries = x_col + (k - block.k_begin) * columns + (oh - block.oh_begin) * OW;
          addends[count++] = {address(entries, -taps.iw_offset), taps.ow_begin + taps.iw_offset,
                              taps.ow_end + taps.iw_offset};
        }
      }
      if (count > 0) add_into_row(addends, count, W, image + (c * H + ih) * W);
    }
  }
  return true;
}

}  // namespace convgemm::detail
