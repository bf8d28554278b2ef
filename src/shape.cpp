#include "convgemm/shape.hpp"

#include <string>

#include "convgemm/detail/check.hpp"
#include "shape_rules.hpp"

namespace convgemm {
namespace {

using detail::checked_add;
using detail::checked_mul;
using detail::fail_message;
using detail::require_at_least;

int64_t output_size(int64_t in, int64_t pad_begin, int64_t pad_end, int64_t kernel, int64_t stride,
                    int64_t dilation) {
  return detail::floor_div(in + pad_begin + pad_end - dilation * (kernel - 1) - 1, stride) + 1;
}

// The axis checks shared by both axes; names come in as arguments so messages say which axis.
void validate_axis(const char* out_name, const char* in_name, int64_t in, const char* kernel_name,
                   int64_t kernel, const char* pad_names, int64_t pad_begin, int64_t pad_end,
                   const char* stride_name, int64_t stride, const char* dilation_name,
                   int64_t dilation) {
  const std::string bound = "must be <= 2^60 = " + std::to_string(Conv2dShape::kMaxCoordinate) +
                            ", the largest coordinate";
  if (stride > Conv2dShape::kMaxCoordinate) detail::fail(stride_name, stride, bound);
  if (dilation > Conv2dShape::kMaxCoordinate) detail::fail(dilation_name, dilation, bound);
  const std::string padded_name = std::string(in_name) + " + " + pad_names;
  const int64_t padded = checked_add(checked_add(in, pad_begin, padded_name), pad_end, padded_name);
  if (padded > Conv2dShape::kMaxCoordinate) detail::fail(padded_name, padded, bound);
  const int64_t extent =
      checked_add(checked_mul(dilation, kernel - 1, kernel_name), 1, kernel_name);
  if (extent > padded) {
    fail_message(std::string(out_name) + " must be >= 1: the dilated " + kernel_name + " (" +
                 std::to_string(extent) + ") exceeds the padded " + in_name + " (" +
                 std::to_string(padded) + ")");
  }
}

}  // namespace

std::string to_string(Layout layout) {
  switch (layout) {
    case Layout::nchw:
      return "nchw";
    case Layout::nhwc:
      return "nhwc";
  }
  return "Layout(" + std::to_string(static_cast<int>(layout)) + ")";
}

namespace detail {

void validate_fields(const Conv2dShape& s) {
  require_at_least("batch", s.batch, 1);
  require_at_least("in_channels", s.in_channels, 1);
  require_at_least("in_height", s.in_height, 1);
  require_at_least("in_width", s.in_width, 1);
  require_at_least("out_channels", s.out_channels, 1);
  require_at_least("kernel_height", s.kernel_height, 1);
  require_at_least("kernel_width", s.kernel_width, 1);
  require_at_least("stride_height", s.stride_height, 1);
  require_at_least("stride_width", s.stride_width, 1);
  require_at_least("pad_top", s.pad_top, 0);
  require_at_least("pad_bottom", s.pad_bottom, 0);
  require_at_least("pad_left", s.pad_left, 0);
  require_at_least("pad_right", s.pad_right, 0);
  require_at_least("dilation_height", s.dilation_height, 1);
  require_at_least("dilation_width", s.dilation_width, 1);
  require_at_least("groups", s.groups, 1);
  if (s.in_channels % s.groups != 0) {
    fail_message("in_channels (" + std::to_string(s.in_channels) +
                 ") must be divisible by groups (" + std::to_string(s.groups) + ")");
  }
  if (s.out_channels % s.groups != 0) {
    fail_message("out_channels (" + std::to_string(s.out_channels) +
                 ") must be divisible by groups (" + std::to_string(s.groups) + ")");
  }
  if (s.layout != Layout::nchw && s.layout != Layout::nhwc) {
    fail("layout", static_cast<int64_t>(s.layout), "must be Layout::nchw (0) or Layout::nhwc (1)");
  }
}

}  // namespace detail

int64_t Conv2dShape::out_height() const {
  return output_size(in_height, pad_top, pad_bottom, kernel_height, stride_height, dilation_height);
}

int64_t Conv2dShape::out_width() const {
  return output_size(in_width, pad_left, pad_right, kernel_width, stride_width, dilation_width);
}

int64_t Conv2dShape::parameter_count(bool with_bias) const {
  return weight_elements() + (with_bias ? bias_elements() : 0);
}

double Conv2dShape::flops(Pass /*pass*/) const {
  // Every pass performs the same multiply-adds, only grouped differently (shape.hpp).
  return 2.0 * double(batch) * double(out_channels) * double(out_height()) * double(out_width()) *
         double(gemm_k());
}

Conv2dShape& Conv2dShape::set_padding(int64_t pad) { return set_padding(pad, pad); }

Conv2dShape& Conv2dShape::set_padding(int64_t pad_h, int64_t pad_w) {
  pad_top = pad_bottom = pad_h;
  pad_left = pad_right = pad_w;
  return *this;
}

Conv2dShape& Conv2dShape::set_same_padding() {
  // Total padding that makes out = ceil(in / stride); the odd tap goes to the end.
  // (out - 1) * stride < in cannot overflow; the dilated kernel can, and throws by name.
  auto total = [](int64_t in, int64_t kernel, int64_t stride, int64_t dilation) {
    if (in < 1 || kernel < 1 || stride < 1 || dilation < 1) {
      return int64_t{0};  // validate() names the field later
    }
    const int64_t out = detail::ceil_div(in, stride);
    const int64_t dilated = checked_mul(dilation, kernel - 1, "dilation * (kernel - 1)");
    const int64_t needed = checked_add((out - 1) * stride - in + 1, dilated, "'same' padding");
    return needed > 0 ? needed : int64_t{0};
  };
  const int64_t total_h = total(in_height, kernel_height, stride_height, dilation_height);
  const int64_t total_w = total(in_width, kernel_width, stride_width, dilation_width);
  pad_top = total_h / 2;
  pad_bottom = total_h - pad_top;
  pad_left = total_w / 2;
  pad_right = total_w - pad_left;
  return *this;
}

void Conv2dShape::validate() const {
  detail::validate_fields(*this);
  validate_axis("out_height", "in_height", in_height, "kernel_height", kernel_height,
                "pad_top + pad_bottom", pad_top, pad_bottom, "stride_height", stride_height,
                "dilation_height", dilation_height);
  validate_axis("out_width", "in_width", in_width, "kernel_width", kernel_width,
                "pad_left + pad_right", pad_left, pad_right, "stride_width", stride_width,
                "dilation_width", dilation_width);

  // Every product that sizes a buffer or a GEMM, so that the getters may multiply freely.
  constexpr int64_t kFloatBytes = sizeof(float);
  const int64_t plane_in = checked_mul(in_height, in_width, "in_height * in_width");
  const int64_t input =
      checked_mul(checked_mul(batch, in_channels, "input size"), plane_in, "input size");
  checked_mul(input, kFloatBytes, "input bytes");
  const int64_t plane_out = checked_mul(out_height(), out_width(), "out_height * out_width");
  const int64_t output =
      checked_mul(checked_mul(batch, out_channels, "output size"), plane_out, "output size");
  checked_mul(output, kFloatBytes, "output bytes");
  const int64_t k =
      checked_mul(in_channels / groups, checked_mul(kernel_height, kernel_width, "kernel size"),
                  "in_channels / groups * kernel size");
  checked_mul(checked_mul(out_channels, k, "weight size"), kFloatBytes, "weight bytes");
  checked_mul(checked_mul(k, plane_out, "column matrix size"), kFloatBytes, "column bytes");

  auto fit_gemm = [](const char* name, int64_t value) {
    if (value > detail::kMaxGemmDimension) {
      detail::fail(name, value,
                   "exceeds the GEMM dimension limit " + std::to_string(detail::kMaxGemmDimension));
    }
  };
  fit_gemm("out_channels / groups (GEMM M)", gemm_m());
  fit_gemm("in_channels / groups * kernel_height * kernel_width (GEMM K)", k);
  fit_gemm("out_height * out_width (GEMM P)", plane_out);
  fit_gemm("in_height * in_width", plane_in);
}

std::string Conv2dShape::to_string() const {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on long chains of operator+.
  std::string text;
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
  put("_d", dilation_height);
  put("x", dilation_width);
  put("_g", groups);
  text += "_";
  text += convgemm::to_string(layout);
  return text;
}

}  // namespace convgemm
