#include "convgemm/nn/pooling.hpp"

#include <cmath>
#include <limits>

#include "check.hpp"

namespace convgemm::nn {
namespace {
// "must be <= kernel_height / 2 (1)", built with += (GCC 12 misreports long operator+ chains).
// text += label + value, without a temporary string (see bound_rule).
void append(std::string& text, const char* label, int64_t value) {
  text += label;
  text += std::to_string(value);
}

std::string bound_rule(const char* rule, int64_t bound) {
  std::string text = rule;
  text += " (";
  text += std::to_string(bound);
  text += ")";
  return text;
}
}  // namespace

void Pool2dShape::validate() const {
  detail::require_at_least("batch", batch, 1);
  detail::require_at_least("channels", channels, 1);
  detail::require_at_least("in_height", in_height, 1);
  detail::require_at_least("in_width", in_width, 1);
  detail::require_at_least("kernel_height", kernel_height, 1);
  detail::require_at_least("kernel_width", kernel_width, 1);
  detail::require_at_least("stride_height", stride_height, 1);
  detail::require_at_least("stride_width", stride_width, 1);
  detail::require_at_least("pad_height", pad_height, 0);
  detail::require_at_least("pad_width", pad_width, 0);
  // PyTorch's rule; it guarantees every window a real pixel (so max pooling never yields -inf).
  if (pad_height > kernel_height / 2) {
    detail::fail("pad_height", pad_height,
                 bound_rule("must be <= kernel_height / 2", kernel_height / 2));
  }
  if (pad_width > kernel_width / 2) {
    detail::fail("pad_width", pad_width,
                 bound_rule("must be <= kernel_width / 2", kernel_width / 2));
  }
  const int64_t padded_height = detail::checked_add(in_height, 2 * pad_height, "in_height");
  const int64_t padded_width = detail::checked_add(in_width, 2 * pad_width, "in_width");
  if (kernel_height > padded_height) {
    detail::fail("kernel_height", kernel_height,
                 bound_rule("must be <= the padded in_height", padded_height));
  }
  if (kernel_width > padded_width) {
    detail::fail("kernel_width", kernel_width,
                 bound_rule("must be <= the padded in_width", padded_width));
  }
  const int64_t plane = detail::checked_mul(in_height, in_width, "in_height * in_width");
  if (plane > std::numeric_limits<int32_t>::max()) {
    detail::fail("in_height * in_width", plane, "must fit int32_t (argmax indices)");
  }
  const int64_t planes = detail::checked_mul(batch, channels, "batch * channels");
  detail::checked_mul(planes, plane, "input elements");
}

std::string Pool2dShape::to_string() const {
  std::string text;
  append(text, "n", batch);
  append(text, "_c", channels);
  append(text, "_h", in_height);
  append(text, "w", in_width);
  append(text, "_k", kernel_height);
  append(text, "x", kernel_width);
  append(text, "_s", stride_height);
  append(text, "x", stride_width);
  append(text, "_p", pad_height);
  append(text, "x", pad_width);
  return text;
}

Window2d window_of(const Pool2dShape& shape) {
  return {{shape.kernel_height, shape.stride_height, shape.pad_height, 1},
          {shape.kernel_width, shape.stride_width, shape.pad_width, 1}};
}

namespace {

// Window bounds clipped to the input: rows [h0, h1) of the input for output row oh.
struct Span {
  int64_t begin, end;
};
Span clipped(int64_t out_index, int64_t stride, int64_t pad, int64_t kernel, int64_t in) {
  const int64_t start = out_index * stride - pad;
  return {start < 0 ? 0 : start, start + kernel > in ? in : start + kernel};
}

// Divisor of an average window: PyTorch's count_include_pad counts the window's taps inside the
// padded input (all of them when ceil_mode is off), otherwise only those inside the input.
int64_t divisor(const Pool2dShape& s, bool count_include_pad, Span rows, Span cols) {
  if (count_include_pad) return s.kernel_height * s.kernel_width;
  return (rows.end - rows.begin) * (cols.end - cols.begin);
}

void require_pointers(const void* a, const char* a_name, const void* b, const char* b_name) {
  detail::require_pointer(a_name, a);
  detail::require_pointer(b_name, b);
}

}  // namespace

template <class T>
void max_pool2d_forward(const Pool2dShape& s, const T* x, T* y, int32_t* argmax) {
  s.validate();
  require_pointers(x, "x", y, "y");
  detail::require_pointer("argmax", argmax);
  const int64_t OH = s.out_height(), OW = s.out_width();
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const T* x_plane = x + plane * s.in_height * s.in_width;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span rows = clipped(oh, s.stride_height, s.pad_height, s.kernel_height, s.in_height);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span cols = clipped(ow, s.stride_width, s.pad_width, s.kernel_width, s.in_width);
        // Padding is -inf, so only the clipped window competes; it is never empty (validate).
        int64_t best = rows.begin * s.in_width + cols.begin;
        T best_value = x_plane[best];
        for (int64_t ih = rows.begin; ih < rows.end; ++ih) {
          for (int64_t iw = cols.begin; iw < cols.end; ++iw) {
            const T value = x_plane[ih * s.in_width + iw];
            // Strictly greater: the first maximum wins. A NaN wins and then stays (PyTorch).
            if (value > best_value || (std::isnan(value) && !std::isnan(best_value))) {
              best_value = value;
              best = ih * s.in_width + iw;
            }
          }
        }
        const int64_t out = (plane * OH + oh) * OW + ow;
        y[out] = best_value;
        argmax[out] = static_cast<int32_t>(best);
      }
    }
  }
}

template <class T>
void max_pool2d_backward(const Pool2dShape& s, const int32_t* argmax, const T* dy, T* dx) {
  s.validate();
  require_pointers(argmax, "argmax", dy, "dy");
  detail::require_pointer("dx", dx);
  const int64_t OH = s.out_height(), OW = s.out_width(), plane_size = s.in_height * s.in_width;
  for (int64_t i = 0; i < s.input_elements(); ++i) dx[i] = T(0);
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    for (int64_t o = plane * OH * OW; o < (plane + 1) * OH * OW; ++o) {
      dx[plane * plane_size + argmax[o]] += dy[o];
    }
  }
}

template <class T>
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, const T* x, T* y) {
  s.validate();
  require_pointers(x, "x", y, "y");
  const int64_t OH = s.out_height(), OW = s.out_width();
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const T* x_plane = x + plane * s.in_height * s.in_width;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span rows = clipped(oh, s.stride_height, s.pad_height, s.kernel_height, s.in_height);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span cols = clipped(ow, s.stride_width, s.pad_width, s.kernel_width, s.in_width);
        T sum = T(0);
        for (int64_t ih = rows.begin; ih < rows.end; ++ih) {
          for (int64_t iw = cols.begin; iw < cols.end; ++iw) sum += x_plane[ih * s.in_width + iw];
        }
        y[(plane * OH + oh) * OW + ow] = sum / T(divisor(s, count_include_pad, rows, cols));
      }
    }
  }
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const T* dy, T* dx) {
  s.validate();
  require_pointers(dy, "dy", dx, "dx");
  const int64_t OH = s.out_height(), OW = s.out_width();
  for (int64_t i = 0; i < s.input_elements(); ++i) dx[i] = T(0);
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    T* dx_plane = dx + plane * s.in_height * s.in_width;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span rows = clipped(oh, s.stride_height, s.pad_height, s.kernel_height, s.in_height);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span cols = clipped(ow, s.stride_width, s.pad_width, s.kernel_width, s.in_width);
        const T share =
            dy[(plane * OH + oh) * OW + ow] / T(divisor(s, count_include_pad, rows, cols));
        for (int64_t ih = rows.begin; ih < rows.end; ++ih) {
          for (int64_t iw = cols.begin; iw < cols.end; ++iw)
            dx_plane[ih * s.in_width + iw] += share;
        }
      }
    }
  }
}

template void max_pool2d_forward<float>(const Pool2dShape&, const float*, float*, int32_t*);
template void max_pool2d_forward<double>(const Pool2dShape&, const double*, double*, int32_t*);
template void max_pool2d_backward<float>(const Pool2dShape&, const int32_t*, const float*, float*);
template void max_pool2d_backward<double>(const Pool2dShape&, const int32_t*, const double*,
                                          double*);
template void avg_pool2d_forward<float>(const Pool2dShape&, bool, const float*, float*);
template void avg_pool2d_forward<double>(const Pool2dShape&, bool, const double*, double*);
template void avg_pool2d_backward<float>(const Pool2dShape&, bool, const float*, float*);
template void avg_pool2d_backward<double>(const Pool2dShape&, bool, const double*, double*);

// --- Layers ------------------------------------------------------------------------------------

namespace {

Pool2dShape square_geometry(int64_t kernel_size, int64_t stride, int64_t padding) {
  detail::require_at_least("kernel_size", kernel_size, 1);
  detail::require_at_least("stride", stride, 0);
  const int64_t s = stride == 0 ? kernel_size : stride;
  Pool2dShape g;
  g.kernel_height = g.kernel_width = kernel_size;
  g.stride_height = g.stride_width = s;
  g.pad_height = g.pad_width = padding;
  return g;
}

// Geometry checks that do not depend on an input: validate() on an input just large enough.
Pool2dShape validated_geometry(Pool2dShape g) {
  g.batch = g.channels = 1;
  g.in_height = g.kernel_height;
  g.in_width = g.kernel_width;
  g.validate();
  return g;
}

Pool2dShape shape_for(const Pool2dShape& geometry, std::string_view layer,
                      std::span<const int64_t> input_shape) {
  detail::require_rank(layer, input_shape, 4, "[N, C, H, W]");
  Pool2dShape s = geometry;
  s.batch = input_shape[0];
  s.channels = input_shape[1];
  s.in_height = input_shape[2];
  s.in_width = input_shape[3];
  s.validate();
  return s;
}

std::string describe_pool(std::string_view kind, const Pool2dShape& g) {
  std::string text(kind);
  append(text, "(", g.kernel_height);
  append(text, "x", g.kernel_width);
  append(text, ", stride ", g.stride_height);
  append(text, "x", g.stride_width);
  append(text, ", pad ", g.pad_height);
  append(text, "x", g.pad_width);
  return text;
}

}  // namespace

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding)
    : MaxPool2d(square_geometry(kernel_size, stride, padding)) {}
MaxPool2d::MaxPool2d(const Pool2dShape& geometry) : geometry_(validated_geometry(geometry)) {}

std::string MaxPool2d::describe() const {
  std::string text = describe_pool("maxpool2d", geometry_);
  text += ")";
  return text;
}

std::vector<int64_t> MaxPool2d::output_shape(std::span<const int64_t> input_shape) const {
  const Pool2dShape s = shape_for(geometry_, "maxpool2d", input_shape);
  return {s.batch, s.channels, s.out_height(), s.out_width()};
}

void MaxPool2d::forward(const Tensor& x, Tensor& y) {
  const Pool2dShape s = shape_for(geometry_, "maxpool2d", x.shape());
  y.resize({s.batch, s.channels, s.out_height(), s.out_width()});
  argmax_.resize(static_cast<std::size_t>(s.output_elements()));
  max_pool2d_forward(s, x.data(), y.data(), argmax_.data());
  last_shape_ = s;
}

void MaxPool2d::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("maxpool2d", dy, y);
  const Pool2dShape s = shape_for(geometry_, "maxpool2d", x.shape());
  if (argmax_.empty() ||
      !(s.batch == last_shape_.batch && s.channels == last_shape_.channels &&
        s.in_height == last_shape_.in_height && s.in_width == last_shape_.in_width) ||
      static_cast<int64_t>(argmax_.size()) != y.size()) {
    detail::fail_shape("maxpool2d", "x", x.shape(), "must be the input of the last forward");
  }
  if (dx == nullptr) return;
  dx->resize(x.shape());
  max_pool2d_backward(s, argmax_.data(), dy.data(), dx->data());
}

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool count_include_pad)
    : AvgPool2d(square_geometry(kernel_size, stride, padding), count_include_pad) {}
AvgPool2d::AvgPool2d(const Pool2dShape& geometry, bool count_include_pad)
    : geometry_(validated_geometry(geometry)), count_include_pad_(count_include_pad) {}

std::string AvgPool2d::describe() const {
  std::string text = describe_pool("avgpool2d", geometry_);
  text += count_include_pad_ ? ", count_include_pad)" : ", exclude_pad)";
  return text;
}

std::vector<int64_t> AvgPool2d::output_shape(std::span<const int64_t> input_shape) const {
  const Pool2dShape s = shape_for(geometry_, "avgpool2d", input_shape);
  return {s.batch, s.channels, s.out_height(), s.out_width()};
}

void AvgPool2d::forward(const Tensor& x, Tensor& y) {
  const Pool2dShape s = shape_for(geometry_, "avgpool2d", x.shape());
  y.resize({s.batch, s.channels, s.out_height(), s.out_width()});
  avg_pool2d_forward(s, count_include_pad_, x.data(), y.data());
}

void AvgPool2d::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  detail::require_same_shape("avgpool2d", dy, y);
  const Pool2dShape s = shape_for(geometry_, "avgpool2d", x.shape());
  if (dx == nullptr) return;
  dx->resize(x.shape());
  avg_pool2d_backward(s, count_include_pad_, dy.data(), dx->data());
}

}  // namespace convgemm::nn
