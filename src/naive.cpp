// The reference loops: each function is the formula of its pass, written out index by index.
// Deliberately independent of the fast path (no im2col, no GEMM, no shared index helpers).
#include "convgemm/naive.hpp"

#include <stdexcept>
#include <vector>

namespace convgemm::naive {
namespace {

void require(const void* pointer, const char* name) {
  if (pointer == nullptr) {
    throw std::invalid_argument(std::string("convgemm: ") + name + " must not be null");
  }
}

// The oracle stays the plain NCHW formula: an nhwc shape is refused (tests transpose copies).
template <class Shape>
void validate_nchw(const Shape& s) {
  s.validate();
  if (s.layout != Layout::nchw) {
    throw std::invalid_argument("convgemm: layout (" + to_string(s.layout) +
                                ") must be nchw: naive:: runs the NCHW formula only");
  }
}

template <class T>
void forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  validate_nchw(s);
  require(x, "x");
  require(w, "w");
  require(y, "y");
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t C_g = s.in_channels / s.groups, O_g = s.out_channels / s.groups;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t o = 0; o < s.out_channels; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t g = o / O_g;
          double sum = bias != nullptr ? double(bias[o]) : 0.0;
          for (int64_t c = 0; c < C_g; ++c)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
                const int64_t iw = ow * s.stride_width - s.pad_left + kw * s.dilation_width;
                if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) continue;
                const T x_value =
                    x[((n * s.in_channels + g * C_g + c) * s.in_height + ih) * s.in_width + iw];
                const T w_value = w[((o * C_g + c) * s.kernel_height + kh) * s.kernel_width + kw];
                sum += double(x_value) * double(w_value);
              }
          y[((n * s.out_channels + o) * OH + oh) * OW + ow] = T(sum);
        }
}

// dx by gathering: for every input pixel, every (o, kh, kw) whose output position (oh, ow)
// reads it, i.e. ih = oh*sh - pt + kh*dh with oh an integer in [0, OH).
template <class T>
void backward_data(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  validate_nchw(s);
  require(dy, "dy");
  require(w, "w");
  require(dx, "dx");
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t C_g = s.in_channels / s.groups, O_g = s.out_channels / s.groups;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < s.in_channels; ++c)
      for (int64_t ih = 0; ih < s.in_height; ++ih)
        for (int64_t iw = 0; iw < s.in_width; ++iw) {
          const int64_t g = c / C_g;
          double sum = 0.0;
          for (int64_t o = g * O_g; o < (g + 1) * O_g; ++o)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t oh_strided = ih + s.pad_top - kh * s.dilation_height;
                const int64_t ow_strided = iw + s.pad_left - kw * s.dilation_width;
                if (oh_strided < 0 || oh_strided % s.stride_height != 0) continue;
                if (ow_strided < 0 || ow_strided % s.stride_width != 0) continue;
                const int64_t oh = oh_strided / s.stride_height;
                const int64_t ow = ow_strided / s.stride_width;
                if (oh >= OH || ow >= OW) continue;
                sum +=
                    double(dy[((n * s.out_channels + o) * OH + oh) * OW + ow]) *
                    double(w[((o * C_g + (c - g * C_g)) * s.kernel_height + kh) * s.kernel_width +
                             kw]);
              }
          dx[((n * s.in_channels + c) * s.in_height + ih) * s.in_width + iw] = T(sum);
        }
}

template <class T>
void backward_weights(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  validate_nchw(s);
  require(x, "x");
  require(dy, "dy");
  require(dw, "dw");
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t C_g = s.in_channels / s.groups, O_g = s.out_channels / s.groups;
  for (int64_t o = 0; o < s.out_channels; ++o)
    for (int64_t c = 0; c < C_g; ++c)
      for (int64_t kh = 0; kh < s.kernel_height; ++kh)
        for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
          const int64_t g = o / O_g;
          double sum = 0.0;
          for (int64_t n = 0; n < s.batch; ++n)
            for (int64_t oh = 0; oh < OH; ++oh)
              for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
                const int64_t iw = ow * s.stride_width - s.pad_left + kw * s.dilation_width;
                if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) continue;
                sum +=
                    double(dy[((n * s.out_channels + o) * OH + oh) * OW + ow]) *
                    double(x[((n * s.in_channels + g * C_g + c) * s.in_height + ih) * s.in_width +
                             iw]);
              }
          dw[((o * C_g + c) * s.kernel_height + kh) * s.kernel_width + kw] = T(sum);
        }
  if (dbias == nullptr) return;
  for (int64_t o = 0; o < s.out_channels; ++o) {
    double sum = 0.0;
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t i = 0; i < OH * OW; ++i)
        sum += double(dy[(n * s.out_channels + o) * OH * OW + i]);
    dbias[o] = T(sum);
  }
}

// The scatter form of the definition: every input pixel, through every kernel tap, adds into
// the output pixel it lands on; positions cut off by padding are skipped.
template <class T>
void transposed_forward(const ConvTranspose2dShape& s, const T* x, const T* w, const T* bias,
                        T* y) {
  validate_nchw(s);
  require(x, "x");
  require(w, "w");
  require(y, "y");
  const int64_t OH = s.out_height(), OW = s.out_width();
  const int64_t C_g = s.in_channels / s.groups, O_g = s.out_channels / s.groups;
  std::vector<double> sum(static_cast<std::size_t>(s.output_elements()), 0.0);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < s.in_channels; ++c)
      for (int64_t ih = 0; ih < s.in_height; ++ih)
        for (int64_t iw = 0; iw < s.in_width; ++iw) {
          const int64_t g = c / C_g;
          const double x_value = x[((n * s.in_channels + c) * s.in_height + ih) * s.in_width + iw];
          for (int64_t o_in_group = 0; o_in_group < O_g; ++o_in_group)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t oh = ih * s.stride_height - s.pad_top + kh * s.dilation_height;
                const int64_t ow = iw * s.stride_width - s.pad_left + kw * s.dilation_width;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                const int64_t o = g * O_g + o_in_group;
                const double w_value =
                    w[((c * O_g + o_in_group) * s.kernel_height + kh) * s.kernel_width + kw];
                sum[static_cast<std::size_t>(((n * s.out_channels + o) * OH + oh) * OW + ow)] +=
                    x_value * w_value;
              }
        }
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t o = 0; o < s.out_channels; ++o)
      for (int64_t i = 0; i < OH * OW; ++i) {
        const int64_t index = (n * s.out_channels + o) * OH * OW + i;
        y[index] =
            T(sum[static_cast<std::size_t>(index)] + (bias != nullptr ? double(bias[o]) : 0.0));
      }
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y) {
  forward(s, x, w, bias, y);
}
void conv2d_forward(const Conv2dShape& s, const double* x, const double* w, const double* bias,
                    double* y) {
  forward(s, x, w, bias, y);
}
void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  backward_data(s, dy, w, dx);
}
void conv2d_backward_data(const Conv2dShape& s, const double* dy, const double* w, double* dx) {
  backward_data(s, dy, w, dx);
}
void conv2d_backward_weights(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                             float* dbias) {
  backward_weights(s, x, dy, dw, dbias);
}
void conv2d_backward_weights(const Conv2dShape& s, const double* x, const double* dy, double* dw,
                             double* dbias) {
  backward_weights(s, x, dy, dw, dbias);
}
void conv_transpose2d_forward(const ConvTranspose2dShape& s, const float* x, const float* w,
                              const float* bias, float* y) {
  transposed_forward(s, x, w, bias, y);
}
void conv_transpose2d_forward(const ConvTranspose2dShape& s, const double* x, const double* w,
                              const double* bias, double* y) {
  transposed_forward(s, x, w, bias, y);
}

}  // namespace convgemm::naive
