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

inline Origin origin_of(const Conv2dShape& s, int64_t position) {
  const int64_t P = s.out_height() * s.out_width(), OW = s.out_width(), p = position % P;
  return {position / P * s.in_height * s.in_width * s.in_channels,
          p / OW * s.stride_height - s.pad_top, p % OW * s.stride_width - s.pad_left};
}

// The offset of tap (kh, kw)'s pixel from channel 0 of pixel (0, 0) of image 0, or -1 when the
// tap falls into the padding.
inline int64_t tap_offset(const Conv2dShape& s, const Origin& o, int64_t kh, int64_t kw) {
  const int64_t ih = o.ih + kh * s.dilation_height, iw = o.iw + kw * s.dilation_width;
  if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) return -1;
  return o.image_offset + (ih * s.in_width + iw) * s.in_channels;
}

}  // namespace convgemm::detail::nhwc
