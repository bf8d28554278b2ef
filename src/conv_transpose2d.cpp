// Transposed convolution as the adjoint of a convolution (conv_transpose2d.hpp): every pass
// maps to one of the convolution engine's passes with the roles of input and output swapped.
#include "convgemm/conv_transpose2d.hpp"

#include <string>
#include <utility>

#include "convgemm/detail/check.hpp"
#include "plan.hpp"
#include "shape_rules.hpp"

namespace convgemm {
namespace {

int64_t transposed_size(int64_t in, int64_t pad_begin, int64_t pad_end, int64_t kernel,
                        int64_t stride, int64_t dilation, int64_t output_padding) {
  return (in - 1) * stride - pad_begin - pad_end + dilation * (kernel - 1) + output_padding + 1;
}

void validate_output_padding(const char* field, int64_t output_padding, const char* stride_name,
                             int64_t stride, const char* dilation_name, int64_t dilation) {
  detail::require_at_least(field, output_padding, 0);
  if (output_padding >= stride && output_padding >= dilation) {
    detail::fail_message(std::string(field) + " (" + std::to_string(output_padding) +
                         ") must be smaller than " + stride_name + " (" + std::to_string(stride) +
                         ") or " + dilation_name + " (" + std::to_string(dilation) + ")");
  }
}

// transposed_size() without overflow: the growing terms with checked arithmetic, then the
// paddings subtracted with an overflow check.
void validate_transposed_size(const char* out_name, const char* in_name, int64_t in,
                              const char* kernel_name, int64_t kernel, int64_t stride,
                              int64_t dilation, int64_t pad_begin, int64_t pad_end,
                              int64_t output_padding) {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on chains of operator+.
  std::string strided = "(";
  strided += in_name;
  strided += " - 1) * stride";
  std::string dilated = "dilation * (";
  dilated += kernel_name;
  dilated += " - 1)";
  const int64_t grown = detail::checked_add(
      detail::checked_add(detail::checked_mul(in - 1, stride, strided),
                          detail::checked_mul(dilation, kernel - 1, dilated), out_name),
      output_padding, out_name);
  // grown - pad_begin cannot overflow (both are >= 0); the second subtraction and the + 1 can.
  int64_t unpadded = 0;
  if (__builtin_sub_overflow(grown - pad_begin, pad_end, &unpadded)) {
    detail::fail_message(std::string(out_name) + " must be >= 1: the paddings (" +
                         std::to_string(pad_begin) + " + " + std::to_string(pad_end) +
                         ") exceed the size before padding (" + std::to_string(grown) + " + 1)");
  }
  const int64_t out = detail::checked_add(unpadded, 1, out_name);
  if (out < 1) detail::fail(out_name, out, "must be >= 1");
}

// Our fields, under the same names, in a Conv2dShape: for the shared field rules and descriptor
// (it is not the equivalent convolution: see as_convolution()).
Conv2dShape same_fields(const ConvTranspose2dShape& t) {
  return {.batch = t.batch,
          .in_channels = t.in_channels,
          .in_height = t.in_height,
          .in_width = t.in_width,
          .out_channels = t.out_channels,
          .kernel_height = t.kernel_height,
          .kernel_width = t.kernel_width,
          .stride_height = t.stride_height,
          .stride_width = t.stride_width,
          .pad_top = t.pad_top,
          .pad_bottom = t.pad_bottom,
          .pad_left = t.pad_left,
          .pad_right = t.pad_right,
          .dilation_height = t.dilation_height,
          .dilation_width = t.dilation_width,
          .groups = t.groups,
          .layout = t.layout};
}

}  // namespace

int64_t ConvTranspose2dShape::out_height() const {
  return transposed_size(in_height, pad_top, pad_bottom, kernel_height, stride_height,
                         dilation_height, output_padding_height);
}

int64_t ConvTranspose2dShape::out_width() const {
  return transposed_size(in_width, pad_left, pad_right, kernel_width, stride_width, dilation_width,
                         output_padding_width);
}

int64_t ConvTranspose2dShape::weight_elements() const {
  return in_channels * (out_channels / groups) * kernel_height * kernel_width;
}

Conv2dShape ConvTranspose2dShape::as_convolution() const {
  // The convolution reads our output and writes our input. Its output size,
  //   floor((out + pad_top + pad_bottom' - d*(K-1) - 1) / s) + 1,
  // equals our input size when pad_bottom' = pad_bottom - output_padding: the extra rows that
  // output_padding appends are rows that no tap of any input pixel reaches.
  Conv2dShape c = same_fields(*this);
  std::swap(c.in_channels, c.out_channels);
  c.in_height = out_height();
  c.in_width = out_width();
  c.pad_bottom -= output_padding_height;
  c.pad_right -= output_padding_width;
  return c;
}

void ConvTranspose2dShape::validate() const {
  detail::validate_fields(same_fields(*this));
  validate_output_padding("output_padding_height", output_padding_height, "stride_height",
                          stride_height, "dilation_height", dilation_height);
  validate_output_padding("output_padding_width", output_padding_width, "stride_width",
                          stride_width, "dilation_width", dilation_width);
  // The output size, every step checked, before anything calls out_height() / out_width().
  validate_transposed_size("out_height", "in_height", in_height, "kernel_height", kernel_height,
                           stride_height, dilation_height, pad_top, pad_bottom,
                           output_padding_height);
  validate_transposed_size("out_width", "in_width", in_width, "kernel_width", kernel_width,
                           stride_width, dilation_width, pad_left, pad_right, output_padding_width);
  // The rest (products, BLAS range) are the equivalent convolution's rules; its only relaxed
  // rule is the trimmed end padding, so check it with that padding put back.
  Conv2dShape conv = as_convolution();
  conv.pad_bottom = pad_bottom;
  conv.pad_right = pad_right;
  conv.validate();
}

std::string ConvTranspose2dShape::to_string() const {
  // The convolution descriptor of the same fields, with output_padding before the dilation.
  std::string text = same_fields(*this).to_string();
  std::string output_padding = "_op";
  output_padding += std::to_string(output_padding_height);
  output_padding += "x";
  output_padding += std::to_string(output_padding_width);
  text.insert(text.rfind("_d"), output_padding);
  return "transposed_" + text;
}

struct ConvTranspose2d::Impl {
  Impl(const ConvTranspose2dShape& shape, const Conv2dOptions& options)
      : shape(shape), options(options), plan(shape.as_convolution(), options) {}
  ConvTranspose2dShape shape;
  Conv2dOptions options;
  detail::Plan plan;  // on the convolution this one is the transpose of
};

namespace {
const ConvTranspose2dShape& validated(const ConvTranspose2dShape& shape,
                                      const Conv2dOptions& options) {
  shape.validate();
  detail::require_at_least("num_threads", options.num_threads, 0);
  return shape;
}
}  // namespace

ConvTranspose2d::ConvTranspose2d(const ConvTranspose2dShape& shape, const Conv2dOptions& options)
    : impl_(std::make_unique<Impl>(validated(shape, options), options)) {}
ConvTranspose2d::~ConvTranspose2d() = default;
ConvTranspose2d::ConvTranspose2d(ConvTranspose2d&&) noexcept = default;
ConvTranspose2d& ConvTranspose2d::operator=(ConvTranspose2d&&) noexcept = default;

void ConvTranspose2d::forward(const float* x, const float* w, const float* bias, float* y) {
  detail::require_pointer("x", x);
  detail::require_pointer("w", w);
  detail::require_pointer("y", y);
  impl_->plan.backward_data(x, w, y, /*accumulate=*/false);
  if (bias != nullptr) {
    impl_->plan.add_channel_bias(bias, impl_->shape.out_channels,
                                 impl_->shape.out_height() * impl_->shape.out_width(), y);
  }
}

void ConvTranspose2d::backward_data(const float* dy, const float* w, float* dx) {
  detail::require_pointer("dy", dy);
  detail::require_pointer("w", w);
  detail::require_pointer("dx", dx);
  impl_->plan.forward(dy, w, /*bias=*/nullptr, dx, impl_->options.accumulate_gradients);
}

void ConvTranspose2d::backward_weights(const float* x, const float* dy, float* dw, float* dbias) {
  detail::require_pointer("x", x);
  detail::require_pointer("dy", dy);
  detail::require_pointer("dw", dw);
  const bool accumulate = impl_->options.accumulate_gradients;
  // The convolution's input is our output gradient, its output gradient our input.
  impl_->plan.backward_weights(/*x=*/dy, /*dy=*/x, dw, /*dbias=*/nullptr, accumulate);
  if (dbias != nullptr) {
    impl_->plan.sum_channels(dy, impl_->shape.out_channels,
                             impl_->shape.out_height() * impl_->shape.out_width(), dbias,
                             accumulate);
  }
}

const ConvTranspose2dShape& ConvTranspose2d::shape() const { return impl_->shape; }
std::size_t ConvTranspose2d::workspace_bytes() const { return impl_->plan.workspace_bytes(); }

void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, const float* w,
                              const float* bias, float* y) {
  ConvTranspose2d(shape).forward(x, w, bias, y);
}

void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const float* dy,
                                    const float* w, float* dx) {
  ConvTranspose2d(shape).backward_data(dy, w, dx);
}

void conv_transpose2d_backward_weights(const ConvTranspose2dShape& shape, const float* x,
                                       const float* dy, float* dw, float* dbias) {
  ConvTranspose2d(shape).backward_weights(x, dy, dw, dbias);
}

}  // namespace convgemm
