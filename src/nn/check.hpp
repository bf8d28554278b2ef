#pragma once
// The layer library's validation helpers, on top of the engine's (convgemm/detail/check.hpp): the
// same one-sentence std::invalid_argument messages, with the layer named in the field.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "convgemm/detail/check.hpp"
#include "convgemm/nn/tensor.hpp"

namespace convgemm::nn::detail {

using convgemm::detail::checked_add;
using convgemm::detail::checked_mul;
using convgemm::detail::fail;
using convgemm::detail::fail_message;
using convgemm::detail::require_at_least;
using convgemm::detail::require_pointer;

// "<layer>: input must have rank 4 ([N, C, H, W]) (got [3, 4])"
[[noreturn]] inline void fail_shape(std::string_view layer, std::string_view what,
                                    std::span<const int64_t> shape, std::string_view rule) {
  std::string message(layer);
  message += ": ";
  message += what;
  message += " ";
  message += rule;
  message += " (got ";
  message += shape_to_string(shape);
  message += ")";
  fail_message(message);
}

inline void require_rank(std::string_view layer, std::span<const int64_t> shape, int rank,
                         std::string_view layout) {
  if (static_cast<int>(shape.size()) != rank) {
    std::string rule = "must have rank ";
    rule += std::to_string(rank);
    rule += " (";
    rule += layout;
    rule += ")";
    fail_shape(layer, "input", shape, rule);
  }
}

// dy must have the shape of the forward output it is the gradient of.
inline void require_same_shape(std::string_view layer, const Tensor& dy, const Tensor& y) {
  if (dy.shape() != y.shape()) {
    std::string rule = "must have the output's shape ";
    rule += shape_to_string(y.shape());
    fail_shape(layer, "dy", dy.shape(), rule);
  }
}

}  // namespace convgemm::nn::detail
