// im2col and col2im together: they are each other's adjoint, and share the index arithmetic
// (TapRange) so that they cannot disagree about which pixel a column entry belongs to.
#include "im2col.hpp"

#include <algorithm>
#include <cstring>

#include "convgemm/detail/check.hpp"
#include "convgemm/im2col.hpp"

namespace convgemm::detail {

TapRange tap_range(const Conv2dShape& s, int64_t kw) {
  const int64_t ow_count = s.out_width();
  const int64_t iw_offset = kw * s.dilation_width - s.pad_left;
  // iw >= 0 <=> ow >= ceil(-iw_offset / stride);  iw < W <=> ow < ceil((W - iw_offset) / stride)
  const int64_t begin = std::clamp<int64_t>(ceil_div(-iw_offset, s.stride_width), 0, ow_count);
  const int64_t end =
      std::clamp<int64_t>(ceil_div(s.in_width - iw_offset, s.stride_width), begin, ow_count);
  return {begin, end, iw_offset};
}

namespace {

// Calls visit(row_out, plane_row_or_null, taps) for every (X_col row, output row) of the block;
// plane_row is null when the output row reads a padding row.
// Rows of the block's buffer are `ld` floats apart (the block's columns unless given).
template <class Image, class Visit>
void for_each_block_row(const Conv2dShape& s, Image* image, const ColumnBlock& block, Visit visit,
                        int64_t ld = 0) {
  const int64_t KH = s.kernel_height, KW = s.kernel_width;
  const int64_t H = s.in_height, W = s.in_width, OW = s.out_width();
  const int64_t columns = ld != 0 ? ld : block.columns(s);
  for (int64_t k = block.k_begin; k < block.k_end; ++k) {
    const int64_t c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    const TapRange taps = tap_range(s, kw);
    Image* plane = image + c * H * W;
    for (int64_t oh = block.oh_begin; oh < block.oh_end; ++oh) {
      const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
      const int64_t row_out = (k - block.k_begin) * columns + (oh - block.oh_begin) * OW;
      visit(row_out, (ih >= 0 && ih < H) ? plane + ih * W : nullptr, taps);
    }
  }
}

}  // namespace

namespace {

// Four floats: one SSE register, which every x86-64 CPU has (the library is built without
// -march); GCC turns the shuffle below into a single shufps.
using Vec4 = float __attribute__((vector_size(4 * sizeof(float))));

}  // namespace

void gather_strided(const float* src, int64_t stride, int64_t count, float* dst) {
  int64_t j = 0;
  if (stride == 2) {
    for (; j + 4 < count; j += 4) {  // reads src[2j .. 2j+7], inside [0, 2*(count-1)]
      Vec4 low, high;
      __builtin_memcpy(&low, src + 2 * j, sizeof low);
      __builtin_memcpy(&high, src + 2 * j + 4, sizeof high);
      const Vec4 even = __builtin_shufflevector(low, high, 0, 2, 4, 6);
      __builtin_memcpy(dst + j, &even, sizeof even);
    }
  }
  for (; j < count; ++j) dst[j] = src[j * stride];
}

namespace {

// dst[j * stride] += src[j] for j < count, the adjoint of gather_strided. Stride 2 adds four
// at a time: the eight floats are split into even and odd, the evens get the sum, and both are
// interleaved back, so the odd floats are stored exactly as they were loaded (adding zeros to
// them would turn -0 into +0).
void scatter_add_strided(const float* src, int64_t stride, int64_t count, float* dst) {
  int64_t j = 0;
  if (stride == 1) {  // a plain vectorized add
    for (; j < count; ++j) dst[j] += src[j];
    return;
  }
  if (stride == 2) {
    for (; j + 4 < count; j += 4) {  // touches dst[2j .. 2j+7], inside [0, 2*(count-1)]
      Vec4 low, high, add;
      __builtin_memcpy(&low, dst + 2 * j, sizeof low);
      __builtin_memcpy(&high, dst + 2 * j + 4, sizeof high);
      __builtin_memcpy(&add, src + j, sizeof add);
      const Vec4 even = __builtin_shufflevector(low, high, 0, 2, 4, 6) + add;
      const Vec4 odd = __builtin_shufflevector(low, high, 1, 3, 5, 7);
      low = __builtin_shufflevector(even, odd, 0, 4, 1, 5);
      high = __builtin_shufflevector(even, odd, 2, 6, 3, 7);
      __builtin_memcpy(dst + 2 * j, &low, sizeof low);
      __builtin_memcpy(dst + 2 * j + 4, &high, sizeof high);
    }
  }
  for (; j < count; ++j) dst[j * stride] += src[j];
}

}  // namespace

void im2col_block(const Conv2dShape& s, const float* image, const ColumnBlock& block,
                  float* x_col) {
  const int64_t OW = s.out_width(), stride = s.stride_width;
  for_each_block_row(s, image, block, [&](int64_t row_out, const float* in_row, TapRange taps) {
    float* out = x_col + row_out;
    if (in_row == nullptr) {
      std::fill(out, out + OW, 0.0f);
      return;
    }
    std::fill(out, out + taps.ow_begin, 0.0f);
    if (taps.ow_begin < taps.ow_end) {
      const float* src = in_row + taps.ow_begin * stride + taps.iw_offset;
      if (stride == 1) {
        // Stride 1: the taps of a row are one contiguous run of the image row.
        std::copy(src, src + (taps.ow_end - taps.ow_begin), out + taps.ow_begin);
      } else {
        gather_strided(src, stride, taps.ow_end - taps.ow_begin, out + taps.ow_begin);
      }
    }
    std::fill(out + taps.ow_end, out + OW, 0.0f);
  });
}

void col2im_block(const Conv2dShape& s, const float* x_col, const ColumnBlock& block, float* image,
                  int64_t ld) {
  if (!col2im_block_avx512(s, x_col, block, image, ld))
    col2im_block_portable(s, x_col, block, image, ld);
}

void col2im_block_portable(const Conv2dShape& s, const float* x_col, const ColumnBlock& block,
                           float* image, int64_t ld) {
  const int64_t stride = s.stride_width;
  for_each_block_row(
      s, image, block,
      [&](int64_t row_out, float* in_row, TapRange taps) {
        // A padding row, or a kernel column that reads only padding: its gradient goes nowhere.
        if (in_row == nullptr || taps.ow_begin == taps.ow_end) return;
        scatter_add_strided(x_col + row_out + taps.ow_begin, stride, taps.ow_end - taps.ow_begin,
                            in_row + taps.ow_begin * stride + taps.iw_offset);
      },
      ld);
}

}  // namespace convgemm::detail

namespace convgemm {
namespace {
detail::ColumnBlock whole_image(const Conv2dShape& shape) {
  return {0, shape.gemm_k(), 0, shape.out_height()};
}
}  // namespace

void im2col(const Conv2dShape& shape, const float* image, float* x_col) {
  shape.validate();
  detail::require_pointer("image", image);
  detail::require_pointer("x_col", x_col);
  detail::im2col_block(shape, image, whole_image(shape), x_col);
}

void col2im(const Conv2dShape& shape, const float* x_col, float* image) {
  shape.validate();
  detail::require_pointer("x_col", x_col);
  detail::require_pointer("image", image);
  detail::col2im_block(shape, x_col, whole_image(shape), image);
}

}  // namespace convgemm
