#pragma once
// The helpers every error message of the library goes through: one sentence naming the field,
// its value and the rule, thrown as std::invalid_argument before any output is written.
// Installed so that the layer library (convgemm::nn) words its errors the same way from public
// headers only; it is not part of the API (namespace detail) and may change in any release.

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace convgemm::detail {

[[noreturn]] inline void fail(std::string_view field, int64_t value, std::string_view rule) {
  throw std::invalid_argument("convgemm: " + std::string(field) + " " + std::string(rule) +
                              " (got " + std::to_string(value) + ")");
}

[[noreturn]] inline void fail_message(const std::string& message) {
  throw std::invalid_argument("convgemm: " + message);
}

inline void require_at_least(std::string_view field, int64_t value, int64_t minimum) {
  if (value < minimum) fail(field, value, "must be >= " + std::to_string(minimum));
}

inline void require_pointer(std::string_view field, const void* pointer) {
  if (pointer == nullptr) fail_message(std::string(field) + " must not be null");
}

// a * b for non-negative operands, throwing with `what` named when it overflows int64_t.
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) {
    fail_message(std::string(what) + " overflows int64 (" + std::to_string(a) + " * " +
                 std::to_string(b) + ")");
  }
  return product;
}

inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    fail_message(std::string(what) + " overflows int64 (" + std::to_string(a) + " + " +
                 std::to_string(b) + ")");
  }
  return sum;
}

// Floor and ceiling division by a positive divisor, correct for negative numerators and free of
// overflow for every int64_t pair (no a + b - 1: a stride may be as large as 2^63 - 1).
inline int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0 && a > 0); }

}  // namespace convgemm::detail
