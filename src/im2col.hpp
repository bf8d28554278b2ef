#pragma once
// Block-wise im2col / col2im kernels (the X_col layout is defined in convgemm/im2col.hpp).
// A block is a range of X_col rows [k_begin, k_end) and of output rows [oh_begin, oh_end); its
// buffer is (k_end - k_begin) x ((oh_end - oh_begin) * OW), row-major. Shapes are validated by
// the caller; nothing here allocates.

#include <cstdint>

#include "convgemm/shape.hpp"

namespace convgemm::detail {

struct ColumnBlock {
  int64_t k_begin, k_end;    // rows of X_col: (c, kh, kw) flattened
  int64_t oh_begin, oh_end;  // output rows; the block's columns are (oh, ow) for these rows
  int64_t columns(const Conv2dShape& shape) const {
    return (oh_end - oh_begin) * shape.out_width();
  }
};

// For one kernel column kw: the output columns ow in [ow_begin, ow_end) read a pixel inside the
// image, at iw = ow * stride_width + iw_offset; the others read the zero padding.
struct TapRange {
  int64_t ow_begin, ow_end, iw_offset;
};
TapRange tap_range(const Conv2dShape& shape, int64_t kw);

// dst[j] = src[j * stride] for j < count: the gather of a strided row (im2col's, and the packed
// driver's image panels). Stride 2 (the common strided convolution) takes four outputs from
// eight loaded floats with one shuffle instead of four scalar copies; it loads only while the
// eight floats end inside what the scalar loop would read.
void gather_strided(const float* src, int64_t stride, int64_t count, float* dst);

// Writes the block of X_col read from `image` [C/G, H, W] (zeros for taps in the padding).
void im2col_block(const Conv2dShape& shape, const float* image, const ColumnBlock& block,
                  float* x_col);

// Adds the block of X_col back into `image` [C/G, H, W]; entries in the padding are dropped.
// The buffer's rows are `ld` floats apart (0: the block's columns, as above). Every image
// element gets its entries added one by one in ascending k (X_col row), in either form below.
void col2im_block(const Conv2dShape& shape, const float* x_col, const ColumnBlock& block,
                  float* image, int64_t ld = 0);
// col2im_block's two forms, named for the test that compares them: the portable one (X_col row
// by row), and one in AVX-512 for column stride 1 (col2im_avx512.cpp: image row by row), which
// writes nothing and returns false where the CPU or the shape has no such form.
void col2im_block_portable(const Conv2dShape& shape, const float* x_col, const ColumnBlock& block,
                           float* image, int64_t ld);
bool col2im_block_avx512(const Conv2dShape& shape, const float* x_col, const ColumnBlock& block,
                         float* image, int64_t ld);

// True when X_col is the image itself (1x1 kernel, stride 1, no padding), so no lowering is
// needed: X_col [C/G x H*W] is the group's input planes, with leading dimension H*W.
inline bool is_pointwise(const Conv2dShape& shape) {
  return shape.kernel_height == 1 && shape.kernel_width == 1 && shape.stride_height == 1 &&
         shape.stride_width == 1 && shape.pad_top == 0 && shape.pad_bottom == 0 &&
         shape.pad_left == 0 && shape.pad_right == 0;
}

}  // namespace convgemm::detail
