#include "support/compare.hpp"

#include <cmath>
#include <cstring>
#include <sstream>

#include "support/tolerance.hpp"

namespace convgemm::test {
namespace {

constexpr int kReported = 5;  // mismatches listed in a failure message

template <class Reference, class Bound>
::testing::AssertionResult compare(const Tensor& actual, const Reference& reference, Bound bound) {
  if (actual.size() != reference.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: " << actual.size() << " vs reference " << reference.size();
  }
  std::ostringstream first;
  first.precision(9);
  int64_t mismatches = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double allowed = bound(i);
    const double error = std::fabs(double(actual[i]) - double(reference[i]));
    if (error <= allowed) continue;  // false for NaN
    if (mismatches++ < kReported) {
      first << "\n  [" << i << "] actual " << actual[i] << ", reference " << reference[i]
            << ", |error| " << error << " > tolerance " << allowed;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << mismatches << " of " << actual.size() << " elements outside tolerance" << first.str();
}

template <class T>
::testing::AssertionResult trusted(const std::vector<T>& reference,
                                   const std::vector<T>& abs_terms) {
  int64_t contributing = 0, zeros = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    if (abs_terms[i] == 0) continue;
    ++contributing;
    if (reference[i] == 0) ++zeros;
  }
  if (contributing == 0) {
    return ::testing::AssertionFailure() << "untrusted reference: no element has any term";
  }
  if (zeros * 100 > contributing) {
    return ::testing::AssertionFailure() << "untrusted reference: " << zeros << " of "
                                         << contributing << " contributing elements are zero";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult matches_reference(const Tensor& actual, const Tensor& reference,
                                             const Tensor& abs_terms, int64_t k) {
  return compare(actual, reference, [&](std::size_t i) { return tolerance(k, abs_terms[i]); });
}

::testing::AssertionResult matches_reference(const Tensor& actual, const TensorD& reference,
                                             const TensorD& abs_terms, int64_t k, double extra) {
  return compare(actual, reference, [&](std::size_t i) {
    return double(tolerance(k, static_cast<float>(abs_terms[i]))) + extra;
  });
}

::testing::AssertionResult reference_is_trusted(const Tensor& reference, const Tensor& abs_terms) {
  return trusted(reference, abs_terms);
}

::testing::AssertionResult reference_is_trusted(const TensorD& reference,
                                                const TensorD& abs_terms) {
  return trusted(reference, abs_terms);
}

::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  }
  if (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0) {
    return ::testing::AssertionSuccess();
  }
  std::size_t i = 0;
  while (std::memcmp(&a[i], &b[i], sizeof(float)) == 0) ++i;
  std::size_t differing = 0;
  for (std::size_t j = i; j < a.size(); ++j)
    differing += std::memcmp(&a[j], &b[j], sizeof(float)) != 0;
  std::ostringstream message;
  message.precision(9);
  message << differing << " of " << a.size() << " elements differ in their bits; first [" << i
          << "] " << a[i] << " vs " << b[i];
  return ::testing::AssertionFailure() << message.str();
}

::testing::AssertionResult near(double a, double b, double bound) {
  const double error = std::fabs(a - b);
  if (error <= bound) return ::testing::AssertionSuccess();
  std::ostringstream message;
  message.precision(17);
  message << a << " vs " << b << ": |difference| " << error << " > bound " << bound;
  return ::testing::AssertionFailure() << message.str();
}

}  // namespace convgemm::test
