#pragma once
// Where the taps of an output position land in an nhwc image [H, W, C]: shared by the gathers
// (nhwc_operands.cpp) and the scatter of backward_data (packed_conv_nhwc.cpp).

#include <cstdint>

#include "convgemm/shape.hpp"

namespace convgemm::detail::nhwc {

// Output position `position` (n * P + p, over the whole batch) seen from the input: its image's
// offset and the input pixel of tap (0, 0), which may lie in the padding.
struct Origin {
  int64_t image_offset;  // n * H * W * C
  int64_t ih, iw;        // oh * sh - pad_top, ow * sw - pad_left
};

// The origins of consecutive output positions from `position` on: one division to start, then
// a step per position (a gather or a scatter walks thousands of positions per block, and a
// division per position cost a tenth of backward_data's time).
class Origins {
 public:
  Origins(const Conv2dShape& s, int64_t position)
      : OH_(s.out_height()),
        OW_(s.out_width()),
        stride_h_(s.stride_height),
        stride_w_(s.stride_width),
        image_floats_(s.in_height * s.in_width * s.in_channels) {
    const int64_t P = OH_ * OW_, p = position % P;
    oh_ = p / OW_;
    ow_ = p % OW_;
    origin_ = {position / P * image_floats_, oh_ * stride_h_ - s.pad_top,
               ow_ * stride_w_ - s.pad_left};
  }
  const Origin& operator*() const { return origin_; }
  // On to the next position: the next column, row or image.
  void next() {
    origin_.iw += stride_w_;
    if (++ow_ < OW_) return;
    origin_.iw -= OW_ * stride_w_;
    ow_ = 0;
    origin_.ih += stride_h_;
    if (++oh_ < OH_) return;
    origin_.ih -= OH_ * stride_h_;
    oh_ = 0;
    origin_.image_offset += image_floats_;
  }

 private:
  int64_t OH_, OW_, stride_h_, stride_w_, image_floats_;
  int64_t oh_ = 0, ow_ = 0;
  Origin origin_;
};

// The offset of tap (kh, kw)'s pixel from channel 0 of pixel (0, 0) of image 0, or -1 when the
// tap falls into the padding.
inline int64_t tap_offset(const Conv2dShape& s, const Origin& o, int64_t kh, int64_t kw) {
  const int64_t ih = o.ih + kh * s.dilation_height, iw = o.iw + kw * s.dilation_width;
  if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) return -1;
  return o.image_offset + (ih * s.in_width + iw) * s.in_channels;
}

}  // namespace convgemm::detail::nhwc
