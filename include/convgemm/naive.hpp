#pragma once
// The direct loops of the definition: the oracle for tests and the baseline for benchmarks.
// They share no code with the fast path (not even im2col) and favour plainness over speed.
// Layouts are the nchw ones of conv2d.hpp / conv_transpose2d.hpp: an nhwc shape throws
// std::invalid_argument naming the layout (transpose the tensors). Each function validates the
// shape and the pointers like the fast path; outputs are overwritten. Sums are accumulated in
// double, so a float result is the correctly rounded value of a double-accurate sum. The double
// overloads exist for finite-difference gradient checks.

#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/shape.hpp"

namespace convgemm::naive {

// y[n,o,oh,ow] = bias[o] + sum_{c,kh,kw} w[o,c,kh,kw] * x[n, g*C/G + c, ih, iw]   (g = o / (O/G))
void conv2d_forward(const Conv2dShape& shape, const float* x, const float* w, const float* bias,
                    float* y);
void conv2d_forward(const Conv2dShape& shape, const double* x, const double* w, const double* bias,
                    double* y);

// dx[n,c,ih,iw] = sum over every (o, oh, ow, kh, kw) whose tap reads (ih, iw) of w * dy
void conv2d_backward_data(const Conv2dShape& shape, const float* dy, const float* w, float* dx);
void conv2d_backward_data(const Conv2dShape& shape, const double* dy, const double* w, double* dx);

// dw[o,c,kh,kw] = sum_{n,oh,ow} dy[n,o,oh,ow] * x[n, g*C/G + c, ih, iw];  dbias[o] = sum dy
// (dbias may be nullptr)
void conv2d_backward_weights(const Conv2dShape& shape, const float* x, const float* dy, float* dw,
                             float* dbias);
void conv2d_backward_weights(const Conv2dShape& shape, const double* x, const double* dy,
                             double* dw, double* dbias);

// y[n,o,r,s] = bias[o] + sum over (c, ih, iw, kh, kw) with r = ih*sh - pt + kh*dh and
// s = iw*sw - pl + kw*dw of x[n,c,ih,iw] * w[c, o - g*O/G, kh, kw]   (the scatter form)
void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, const float* w,
                              const float* bias, float* y);
void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const double* x, const double* w,
                              const double* bias, double* y);

}  // namespace convgemm::naive
