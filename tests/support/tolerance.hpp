#pragma once
// Every tolerance of the suite, derived from the length of the sum being checked; no test writes
// a bare epsilon of its own.
//
// A float sum of k products errs by at most about k * eps * sum|terms| (whatever the order of the
// additions, blocked or not). sum|terms| for an element is the same pass run on |inputs| (naive
// on absolute values), so an element whose terms all fall into the padding must be exact.
// Reduction lengths: forward K = C/G*KH*KW (plus 1 for the bias), backward_data O/G*KH*KW,
// backward_weights and dbias N*OH*OW.

#include <cstdint>
#include <limits>

namespace convgemm::test {

// Fast path against a reference: each pays the rounding once, hence the 2 (the naive reference
// accumulates in double, so this is generous by up to a factor 2, never tight).
inline float tolerance(int64_t k, float abs_terms) {
  return 2.0f * float(k) * std::numeric_limits<float>::epsilon() * abs_terms;
}

// The same rule for a quantity evaluated in double from float results, such as an inner product
// <engine output, v>: every element of the output errs by k * eps * its abs_terms, so the inner
// product errs by k * eps * <abs_terms, |v|> = k * eps * abs_inner.
inline double tolerance(int64_t k, double abs_inner) {
  return 2.0 * double(k) * double(std::numeric_limits<float>::epsilon()) * abs_inner;
}

// Adjoint identities <A x, u> = <x, A^T u> with both sides computed by the engine in float:
// each side pays its own pass's rounding once, k_forward and k_adjoint, on the same abs_inner
// <A|x|, |u|> = <|x|, A^T|u|> (the sum of every |x * w * u| triple).
inline double adjoint_tolerance(int64_t k_forward, int64_t k_adjoint, double abs_inner) {
  return double(k_forward + k_adjoint) * double(std::numeric_limits<float>::epsilon()) * abs_inner;
}

// Central differences of a loss that is linear in the perturbed value (every loss in this suite:
// a convolution is linear in x, in w and in the bias separately) have no truncation error; what
// is left is the double rounding of the two loss evaluations, each at most `terms` * eps_double
// * loss_abs, divided by the 2 * step of the quotient.
inline double central_difference_error(int64_t terms, double loss_abs, double step) {
  return 2.0 * double(terms) * std::numeric_limits<double>::epsilon() * loss_abs / (2.0 * step);
}

}  // namespace convgemm::test
