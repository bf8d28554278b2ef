#include "support/layout.hpp"

#include <array>

namespace convgemm::test {
namespace {

// The four extents of a tensor in nchw order.
using Extents = std::array<int64_t, 4>;

Extents extents(const Conv2dShape& s, Role role) {
  switch (role) {
    case Role::input:
      return {s.batch, s.in_channels, s.in_height, s.in_width};
    case Role::weights:
      return {s.out_channels, s.in_channels / s.groups, s.kernel_height, s.kernel_width};
    case Role::output:
      break;
  }
  return {s.batch, s.out_channels, s.out_height(), s.out_width()};
}

Extents extents(const ConvTranspose2dShape& s, Role role) {
  switch (role) {
    case Role::input:
      return {s.batch, s.in_channels, s.in_height, s.in_width};
    case Role::weights:
      return {s.in_channels, s.out_channels / s.groups, s.kernel_height, s.kernel_width};
    case Role::output:
      break;
  }
  return {s.batch, s.out_channels, s.out_height(), s.out_width()};
}

template <class Shape>
Tensor to(const Shape& s, Role role, const Tensor& t) {
  if (s.layout == Layout::nchw) return t;
  const Extents e = extents(s, role);
  return channels_last(t, e[0], e[1], e[2], e[3]);
}

template <class Shape>
Tensor from(const Shape& s, Role role, const Tensor& t) {
  if (s.layout == Layout::nchw) return t;
  const Extents e = extents(s, role);
  return channels_first(t, e[0], e[1], e[2], e[3]);
}

}  // namespace

Tensor channels_last(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  Tensor out(t.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c; ++k)
        for (int64_t l = 0; l < d; ++l)
          out[((i * c + k) * d + l) * b + j] = t[((i * b + j) * c + k) * d + l];
  return out;
}

Tensor channels_first(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  Tensor out(t.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c; ++k)
        for (int64_t l = 0; l < d; ++l)
          out[((i * b + j) * c + k) * d + l] = t[((i * c + k) * d + l) * b + j];
  return out;
}

Conv2dShape with_layout(Conv2dShape s, Layout layout) {
  s.layout = layout;
  return s;
}

ConvTranspose2dShape with_layout(ConvTranspose2dShape s, Layout layout) {
  s.layout = layout;
  return s;
}

Tensor to_layout(const Conv2dShape& s, Role role, const Tensor& nchw) { return to(s, role, nchw); }
Tensor from_layout(const Conv2dShape& s, Role role, const Tensor& t) { return from(s, role, t); }
Tensor to_layout(const ConvTranspose2dShape& s, Role role, const Tensor& nchw) {
  return to(s, role, nchw);
}
Tensor from_layout(const ConvTranspose2dShape& s, Role role, const Tensor& t) {
  return from(s, role, t);
}

}  // namespace convgemm::test
