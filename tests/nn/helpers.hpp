#pragma once
// Test helpers of the layer library: seeded fills, finite differences, tolerances.
// Kept here rather than in tests/support so the two suites stay independent.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "convgemm/nn/tensor.hpp"

namespace convgemm::nn::testing {

inline constexpr uint64_t kSeed = 20261123;

// Uniform in [low, high) from the raw generator (the same values on every platform).
inline double draw(std::mt19937_64& rng, double low, double high) {
  return low + (high - low) * double(rng() >> 11) * 0x1.0p-53;
}

template <class T>
std::vector<T> random_vector(std::mt19937_64& rng, std::size_t size, double low = -1.0,
                             double high = 1.0) {
  std::vector<T> v(size);
  for (T& x : v) x = T(draw(rng, low, high));
  return v;
}

// Values away from 0 by at least `margin`, either sign: ReLU's kink is never within a finite
// difference step of them.
template <class T>
std::vector<T> away_from_zero(std::mt19937_64& rng, std::size_t size, double margin) {
  std::vector<T> v(size);
  for (T& x : v) x = T((rng() & 1 ? 1 : -1) * draw(rng, margin, 1.0));
  return v;
}

// Distinct values spaced `gap` apart in random order: no two window entries of a max pool are
// within a finite-difference step of each other, so the argmax never flips.
template <class T>
std::vector<T> shuffled_grid(std::mt19937_64& rng, std::size_t size, double gap) {
  std::vector<T> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = T((double(i) - double(size) / 2) * gap);
  for (std::size_t i = size; i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
  return v;
}

// Multiples of 1/denominator in [-limit, limit]: short dyadic numbers, whose products and sums
// stay exact in float while they need fewer than 24 significant bits.
inline std::vector<float> dyadic(std::mt19937_64& rng, std::size_t size, int limit,
                                 int denominator) {
  std::vector<float> v(size);
  for (float& x : v) {
    const int numerator = int(rng() % uint64_t(2 * limit * denominator + 1)) - limit * denominator;
    x = float(numerator) / float(denominator);
  }
  return v;
}

inline Tensor make_tensor(std::initializer_list<int64_t> shape, std::span<const float> values) {
  Tensor t(shape);
  EXPECT_EQ(t.size(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

template <class T>
double dot(std::span<const T> a, std::span<const double> b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += double(a[i]) * b[i];
  return sum;
}

// Central differences of a scalar function f of `x` (modified in place and restored), at every
// index: (f(x + h e_i) - f(x - h e_i)) / 2h.
inline std::vector<double> finite_differences(std::vector<double>& x,
                                              const std::function<double()>& f, double h) {
  std::vector<double> gradient(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = f();
    x[i] = saved - h;
    const double minus = f();
    x[i] = saved;
    gradient[i] = (plus - minus) / (2 * h);
  }
  return gradient;
}

// A central difference of f = sum_j r_j y_j (y computed in double by sums of at most `terms`
// products) errs by the rounding of the two evaluations over 2h, plus the truncation
// h^2/6 * max|f'''|, which is 0 where f is piecewise linear and no kink lies within h:
//   |error| <= 2 * terms * eps * S / (2h) + h^2/6 * third,   S = sum_j |r_j| * (sum of |terms|).
// `magnitude` is S; the factor 4 covers both evaluations and the subtraction's own rounding.
inline double fd_tolerance(double terms, double magnitude, double h, double third = 0.0) {
  const double eps = std::numeric_limits<double>::epsilon();
  return 4.0 * terms * eps * magnitude / h + h * h / 6.0 * third;
}

// A float sum of k products errs by at most about k * eps * sum|terms| (STYLE.md); a result
// compared with a double reference pays it once.
inline double float_tolerance(double k, double abs_terms) {
  return 2.0 * k * double(std::numeric_limits<float>::epsilon()) * abs_terms;
}

inline double sum_abs(std::span<const double> v) {
  double s = 0.0;
  for (double x : v) s += std::fabs(x);
  return s;
}

template <class T>
std::vector<double> to_double(std::span<const T> v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace convgemm::nn::testing
