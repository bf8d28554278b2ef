#pragma once
// The operands of the packed driver (packed_gemm.hpp): each knows one layout and packs panels
// from it. Lanes are the rows of A or the columns of B in the A * B view; steps are the
// reduction index. This is the only place where the convolution's layouts meet the panels: the
// im2col gathers read X_col's entries (convgemm/im2col.hpp defines them) straight from the image.

#include <cstdint>

#include "convgemm/shape.hpp"

namespace convgemm::detail {

// Every pack function writes `lanes` lanes from `first` over `steps` steps from `step` into
// panels `width` wide at dst (micro_kernel.hpp's format), zeros in the last panel's extra lanes.

// A row-major matrix whose lanes run along its rows: entry (lane, step) = m[step * ld + lane].
// (dY as B of backward_data: lanes positions, steps output channels; W^T as its A.) With
// per_image set, the lanes run over several such matrices side by side, `per_image` lanes each,
// `image_stride` floats apart: lane l is entry (l % per_image) of matrix l / per_image (several
// small images' positions in one block).
struct LanesAlongRows {
  const float* m;
  int64_t ld;
  int64_t per_image = 0, image_stride = 0;  // 0: one matrix
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};

// A row-major matrix whose lanes are its rows, repeated per image when the steps run over
// several: step s is entry (s / per_image, s % per_image), so entry (lane, s) =
// m[(s / per_image) * image_stride + lane * ld + s % per_image].
// (W as A of forward: per_image = K. dY as A of backward_weights: steps are (n, p).)
struct LanesAcrossRows {
  const float* m;
  int64_t ld;
  int64_t per_image, image_stride;
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};

// Panels packed in advance (weights packed once per call or per plan), for one lane width: block
// by block of kc steps, each block holding the panels of every lane. Asked for a range that
// starts on a panel, it returns them where they are.
struct PrepackedPanels {
  const float* data;
  int64_t lane_count;  // lanes rounded up to the width
  int64_t kc;
  const float* panels(int64_t first, int64_t, int64_t step, int64_t steps, int64_t, float*) const {
    return data + step * lane_count + first * steps;
  }
};
// Floats PrepackedPanels needs for `lanes` x `depth` at this width.
int64_t prepacked_floats(int64_t lanes, int64_t depth, int64_t width);

// X_col of one image and group as B of forward: lanes are output positions p = oh * OW + ow,
// steps the rows k = (c, kh, kw); entry = x_group[c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw], or
// 0 in the padding. Nothing is lowered beforehand: the gather is the packing.
// Lanes may run over several images side by side (lane l >= P is position l % P of image
// l / P, images C*H*W floats apart), starting at lane `first_lane` of that sequence.
struct ImageColumns {
  const Conv2dShape* shape;
  const float* x_group;  // [C/G, H, W]
  int64_t first_lane = 0;
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};
// ImageColumns::panels's two forms, named for the tests that compare each with X_col: the
// portable gather, and one in AVX-512 masked loads (image_gathers_avx512.cpp) for panel widths
// that are multiples of 16, or 12, at column stride 1 or 2, which writes nothing and returns
// false where the CPU or the case has no such form. Both write the same floats.
void pack_image_columns_portable(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                                 int64_t steps, int64_t width, float* buffer);
bool pack_image_columns_avx512(const ImageColumns& op, int64_t first, int64_t lanes, int64_t step,
                               int64_t steps, int64_t width, float* buffer);

// X_col^T of a batch and group as B of backward_weights: lanes are the rows k = (c, kh, kw),
// steps the positions of every image in order, s = n * P + p. Image n is at x_group + n * C*H*W.
struct ImageRows {
  const Conv2dShape* shape;
  const float* x_group;
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};
// ImageRows::panels's two forms, as ImageColumns's above.
void pack_image_rows_portable(const ImageRows& op, int64_t first, int64_t lanes, int64_t step,
                              int64_t steps, int64_t width, float* buffer);
bool pack_image_rows_avx512(const ImageRows& op, int64_t first, int64_t lanes, int64_t step,
                            int64_t steps, int64_t width, float* buffer);

// The same two gathers from an nhwc image [H, W, C] (nhwc_operands.cpp), whose X_col rows are
// k = (kh, kw, c), the order of an OHWI filter: each tap of a patch is C/G contiguous floats.
// X_col of one image and group as A of forward (positions are the rows of Y [P, O]): lanes are
// positions, several images side by side as in ImageColumns (H*W*C floats apart), steps k.
// Each panel is a transpose of the lanes' channel runs, tap by tap.
struct NhwcImageColumns {
  const Conv2dShape* shape;
  const float* x_group;  // channel g * C/G of pixel (0, 0) of the first image
  int64_t first_lane = 0;
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};

// X_col^T of a batch and group as B of backward_weights: lanes k = (kh, kw, c), steps the
// positions of every image in order, s = n * P + p. A panel row is a few contiguous channel runs.
struct NhwcImageRows {
  const Conv2dShape* shape;
  const float* x_group;  // channel g * C/G of pixel (0, 0) of image 0
  const float* panels(int64_t first, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const;
};

}  // namespace convgemm::detail
