#pragma once
// The geometry of a 2-D convolution, its derived sizes and its validation.
//
// Semantics are PyTorch's conv2d: cross-correlation (no kernel flip), zero padding that may differ
// on every side, stride, dilation, groups; NCHW activations with OIHW weights [O, C/G, KH, KW], or
// channels-last (Layout::nhwc, see conv2d.hpp).
//
// Glossary used by every kernel of the library (short names stand for these fields):
//   N batch · C in_channels · H, W in_height, in_width · O out_channels · G groups
//   KH, KW kernel_height, kernel_width · OH, OW out_height(), out_width()
//
// Output size per axis (dilation 1 means a dense kernel):
//   out = floor((in + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1
//
// Every pass is a GEMM per image and group on this view (rows of X_col are (c, kh, kw), its
// columns (oh, ow); see im2col.hpp for the layout):
//   forward           W_g [M x K] * X_col [K x P]   = Y_g [M x P]
//   backward_data     W_g^T [K x M] * dY_g [M x P] = dX_col [K x P], then col2im
//   backward_weights  dY_g [M x P] * X_col^T [P x K] = dW_g [M x K], summed over the batch
// with M = O/G, K = C/G*KH*KW, P = OH*OW. In the nhwc layout the rows of X_col are (kh, kw, c),
// the order of an OHWI filter, and the products are the same up to that order of K.

#include <cstdint>
#include <string>

namespace convgemm {

// The three passes of a convolution layer; used to name FLOP counts and benchmarks.
enum class Pass { forward, backward_data, backward_weights };

// The memory order of a convolution's tensors (conv2d.hpp lists them per layout):
//   nchw  x [N, C, H, W], w [O, C/G, KH, KW], y [N, O, OH, OW]: PyTorch's default, and the nn
//         layers'.
//   nhwc  x [N, H, W, C], w [O, KH, KW, C/G] (OHWI), y [N, OH, OW, O]: channels-last, the order
//         of TensorFlow, TFLite, XNNPACK and PyTorch's channels_last.
// bias [O] either way.
enum class Layout { nchw, nhwc };

// "nchw" or "nhwc"; "Layout(7)" for a value outside the enum.
std::string to_string(Layout layout);

struct Conv2dShape {
  int64_t batch = 1, in_channels = 1, in_height = 1, in_width = 1;
  int64_t out_channels = 1, kernel_height = 1, kernel_width = 1;
  int64_t stride_height = 1, stride_width = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t dilation_height = 1, dilation_width = 1;
  int64_t groups = 1;
  Layout layout = Layout::nchw;

  // Output size (formula above). Meaningful only for a shape that validate() accepts.
  int64_t out_height() const;
  int64_t out_width() const;

  // The GEMM view (see the top of this file).
  int64_t gemm_m() const { return out_channels / groups; }
  int64_t gemm_k() const { return in_channels / groups * kernel_height * kernel_width; }
  int64_t gemm_p() const { return out_height() * out_width(); }

  // Element counts of the four tensors (in either layout): x N*C*H*W, w O*C/G*KH*KW, bias O,
  // y N*O*OH*OW.
  int64_t input_elements() const { return batch * in_channels * in_height * in_width; }
  int64_t weight_elements() const { return out_channels * gemm_k(); }
  int64_t bias_elements() const { return out_channels; }
  int64_t output_elements() const { return batch * out_channels * out_height() * out_width(); }

  // Learnable parameters of the layer: weights, plus one bias per output channel if asked.
  int64_t parameter_count(bool with_bias = true) const;

  // Floating-point operations of a pass: 2*N*O*OH*OW*K multiply-adds for every pass, the taps
  // that fall into the padding included (they are part of the GEMM, whatever a peer skips).
  double flops(Pass pass = Pass::forward) const;

  // Sets all four paddings to `pad`, or top/bottom to pad_h and left/right to pad_w.
  Conv2dShape& set_padding(int64_t pad);
  Conv2dShape& set_padding(int64_t pad_h, int64_t pad_w);
  // 'same' padding: out = ceil(in / stride) on both axes, the odd padding tap going to the
  // bottom/right (TensorFlow's rule; with stride 1 it is PyTorch's padding='same', out = in).
  Conv2dShape& set_same_padding();

  // Throws std::invalid_argument naming the first bad field and its value: non-positive sizes,
  // zero stride or dilation, negative padding, channels not divisible by groups, a layout outside
  // the enum, an empty output, tensor or workspace sizes that overflow int64_t or size_t bytes,
  // GEMM dimensions beyond 2^31 - 1 (the engine's limit, whatever GEMM library is linked), and a
  // stride, a dilation or a padded input extent (in + both paddings) above kMaxCoordinate: every
  // index the kernels form is then a sum of a few terms of at most that size, which cannot
  // overflow int64_t. (No tensor can be that wide: a stride or padding so large only ever reads
  // padding.)
  void validate() const;
  static constexpr int64_t kMaxCoordinate = int64_t{1} << 60;

  // One-line descriptor for test traces and benchmark names, e.g.
  //   "n8_c64_h56w56_o64_k3x3_s1x1_p1.1.1.1_d1x1_g1_nchw"  (pads top.bottom.left.right)
  std::string to_string() const;

  friend bool operator==(const Conv2dShape&, const Conv2dShape&) = default;
};

}  // namespace convgemm
