// Transposed convolution as the adjoint of a convolution (conv_transpose2d.hpp): every pass
// maps to one of the convolution engine's passes with the roles of input and output swapped.
#include "convgemm/conv_transpose2d.hpp"

#include <string>

#include "check.hpp"
#include "plan.hpp"

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
  Conv2dShape c;
  c.batch = batch;
  c.in_channels = out_channels;
  c.in_height = out_height();
  c.in_width = out_width();
  c.out_channels = in_channels;
  c.kernel_height = kernel_height;
  c.kernel_width = kernel_width;
  c.stride_height = stride_height;
  c.stride_width = stride_width;
  c.pad_top = pad_top;
  c.pad_bottom = pad_bottom - output_padding_height;
  c.pad_left = pad_left;
  c.pad_right = pad_right - output_padding_width;
  c.dilation_height = dilation_height;
  c.dilation_width = dilation_width;
  c.groups = groups;
  return c;
}

void ConvTranspose2dShape::validate() const {
  using detail::require_at_least;
  require_at_least("batch", batch, 1);
  require_at_least("in_channels", in_channels, 1);
  require_at_least("in_height", in_height, 1);
  require_at_least("in_width", in_width, 1);
  require_at_least("out_channels", out_channels, 1);
  require_at_least("kernel_height", kernel_height, 1);
  require_at_least("kernel_width", kernel_width, 1);
  require_at_least("stride_height", stride_height, 1);
  require_at_least("stride_width", stride_width, 1);
  require_at_least("pad_top", pad_top, 0);
  require_at_least("pad_bottom", pad_bottom, 0);
  require_at_least("pad_left", pad_left, 0);
  require_at_least("pad_right", pad_right, 0);
  require_at_least("dilation_height", dilation_height, 1);
  require_at_least("dilation_width", dilation_width, 1);
  require_at_least("groups", groups, 1);
  if (in_channels % groups != 0 || out_channels % groups != 0) {
    const bool input = in_channels % groups != 0;
    detail::fail_message(std::string(input ? "in_channels (" : "out_channels (") +
                         std::to_string(input ? in_channels : out_channels) +
                         ") must be divisible by groups (" + std::to_string(groups) + ")");
  }
  validate_output_padding("output_padding_height", output_padding_height, "stride_height",
                          stride_height, "dilation_height", dilation_height);
  validate_output_padding("output_padding_width", output_padding_width, "stride_width",
                          stride_width, "dilation_width", dilation_width);
  // Sizes before the products: (in - 1) * stride and dilation * (kernel - 1) must not overflow.
  detail::checked_mul(in_height - 1, stride_height, "(in_height - 1) * stride_height");
  detail::checked_mul(in_width - 1, stride_width, "(in_width - 1) * stride_width");
  detail::checked_mul(kernel_height - 1, dilation_height, "dilation_height * (kernel_height - 1)");
  detail::checked_mul(kernel_width - 1, dilation_width, "dilation_width * (kernel_width - 1)");
  if (out_height() < 1) detail::fail("out_height", out_height(), "must be >= 1");
  if (out_width() < 1) detail::fail("out_width", out_width(), "must be >= 1");
  // The rest (divisibility, products, BLAS range) are the equivalent convolution's rules; its
  // only relaxed rule is the trimmed end padding, so check it with that padding put back.
  Conv2dShape conv = as_convolution();
  conv.pad_bottom = pad_bottom;
  conv.pad_right = pad_right;
  conv.validate();
}

std::string ConvTranspose2dShape::to_string() const {
  std::string text = "transposed_";
  auto put = [&text](const char* label, int64_t value) {
    text += label;
    text += std::to_string(value);
  };
  put("n", batch);
  put("_c", in_channels);
  put("_h", in_height);
  put("w", in_width);
  put("_o", out_channels);
  put("_k", kernel_height);
  put("x", kernel_width);
  put("_s", stride_height);
  put("x", stride_width);
  put("_p", pad_top);
  put(".", pad_bottom);
  put(".", pad_left);
  put(".", pad_right);
  put("_op", output_padding_height);
  put("x", output_padding_width);
  put("_d", dilation_height);
  put("x", dilation_width);
  put("_g", groups);
  return text;
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
