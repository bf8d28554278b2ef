// The public Sgemm (convgemm/sgemm.hpp): against a double reference for every transpose
// combination at the micro-kernel's edges, and its batch invariance bit for bit (a row of a
// product is the product of that row alone; an entry does not depend on n either).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "convgemm/sgemm.hpp"
#include "packed/micro_kernel.hpp"
#include "support/compare.hpp"
#include "support/seed.hpp"
#include "support/shapes.hpp"
#include "support/tensors.hpp"
#include "support/tolerance.hpp"

namespace convgemm {
namespace {

using test::Tensor;

std::string describe(const SgemmShape& s) {
  return "m " + std::to_string(s.m) + ", n " + std::to_string(s.n) + ", k " + std::to_string(s.k) +
         (s.transpose_a ? ", A^T" : "") + (s.transpose_b ? ", B^T" : "");
}

// op(A) * op(B) in double, with sum |terms| for the tolerance.
void reference(const SgemmShape& s, const Tensor& a, const Tensor& b, std::vector<double>& c,
               std::vector<double>& abs_terms) {
  c.assign(std::size_t(s.m * s.n), 0.0);
  abs_terms.assign(c.size(), 0.0);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      for (int64_t p = 0; p < s.k; ++p) {
        const double term = double(s.transpose_a ? a[p * s.m + i] : a[i * s.k + p]) *
                            double(s.transpose_b ? b[j * s.k + p] : b[p * s.n + j]);
        c[std::size_t(i * s.n + j)] += term;
        abs_terms[std::size_t(i * s.n + j)] += std::fabs(term);
      }
    }
  }
}

// The kernel's tile and reduction sizes, or a spread of small sizes without BLIS.
std::set<int64_t> edge_sizes() {
  const detail::MicroKernel* kernel = detail::blis_micro_kernel();
  const int64_t mr = kernel ? kernel->mr : 6, nr = kernel ? kernel->nr : 16;
  std::set<int64_t> sizes = {1, 2, mr - 1, mr, mr + 1, nr - 1, nr, nr + 1, 3 * nr + 5};
  sizes.erase(0);
  return sizes;
}

TEST(Sgemm, MatchesAReferenceForEveryTransposeAtTheTileAndReductionEdges) {
  std::mt19937_64 rng(test::test_seed());
  const detail::MicroKernel* kernel = detail::blis_micro_kernel();
  const int64_t kc = kernel ? kernel->kc : 256;
  std::vector<SgemmShape> shapes;
  for (const int64_t side : edge_sizes()) {
    shapes.push_back({.m = side, .n = 7, .k = 5});
    shapes.push_back({.m = 5, .n = side, .k = 7});
  }
  for (const int64_t depth : {kc - 1, kc, kc + 1, 2 * kc + 3}) shapes.push_back({3, 17, depth});
  for (SgemmShape s : shapes) {
    for (int t = 0; t < 4; ++t) {
      s.transpose_a = t & 1;
      s.transpose_b = t & 2;
      for (const bool accumulate : {false, true}) {
        SCOPED_TRACE(describe(s) + (accumulate ? ", accumulate" : ""));
        const Tensor a = test::random_tensor(rng, s.m * s.k),
                     b = test::random_tensor(rng, s.k * s.n);
        Tensor c = accumulate ? test::random_tensor(rng, s.m * s.n) : test::nan_tensor(s.m * s.n);
        const Tensor c_before = c;
        std::vector<double> expected, abs_terms;
        reference(s, a, b, expected, abs_terms);
        Sgemm(s).multiply(a.data(), b.data(), c.data(), accumulate);
        for (int64_t i = 0; i < s.m * s.n; ++i) {
          const double base = accumulate ? double(c_before[i]) : 0.0;
          // One more term (the old value) when accumulating.
          const double bound =
              test::tolerance(s.k + 1, float(abs_terms[std::size_t(i)] + std::fabs(base)));
          ASSERT_NEAR(double(c[i]), base + expected[std::size_t(i)], bound) << "entry " << i;
        }
      }
    }
  }
}

TEST(Sgemm, ARowOfAProductIsTheProductOfThatRowAlone) {
  if (!Sgemm({}).reproducible()) GTEST_SKIP() << "built without BLIS: the OpenBLAS fallback";
  std::mt19937_64 rng(test::test_seed());
  for (int trial = 0; trial < 40; ++trial) {
    SgemmShape s{.m = test::uniform(rng, 2, 70),
                 .n = test::uniform(rng, 1, 60),
                 .k = test::uniform(rng, 1, 900)};
    s.transpose_a = trial % 2;
    s.transpose_b = trial % 4 >= 2;
    SCOPED_TRACE(describe(s));
    const Tensor a = test::random_tensor(rng, s.m * s.k), b = test::random_tensor(rng, s.k * s.n);
    Tensor c = test::nan_tensor(s.m * s.n);
    Sgemm(s).multiply(a.data(), b.data(), c.data());
    // Row i alone (op(A)'s row i copied out), and then only its first columns of B.
    const int64_t i = test::uniform(rng, 0, s.m - 1), n = test::uniform(rng, 1, s.n);
    Tensor row(std::size_t(s.k)), b_columns(std::size_t(s.k * n));
    for (int64_t p = 0; p < s.k; ++p) row[p] = s.transpose_a ? a[p * s.m + i] : a[i * s.k + p];
    for (int64_t p = 0; p < s.k; ++p) {
      for (int64_t j = 0; j < n; ++j) {
        b_columns[p * n + j] = s.transpose_b ? b[j * s.k + p] : b[p * s.n + j];
      }
    }
    Tensor alone = test::nan_tensor(n);
    Sgemm({.m = 1, .n = n, .k = s.k}).multiply(row.data(), b_columns.data(), alone.data());
    EXPECT_TRUE(test::bitwise_equal(test::slice(c, i * s.n, n), alone)) << "row " << i;
  }
}

TEST(Sgemm, RefusesBadShapesAndNullPointersByName) {
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  EXPECT_THAT([] { Sgemm({.m = 0}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("m must be >= 1 (got 0)")));
  EXPECT_THAT([] { Sgemm({.n = -3}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("n must be >= 1 (got -3)")));
  EXPECT_THAT([] { Sgemm({.m = int64_t{1} << 40, .k = int64_t{1} << 40}); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("m * k")));
  EXPECT_THAT([] { Sgemm({.m = 3, .n = int64_t{1} << 31, .k = 2}); },
              ThrowsMessage<std::invalid_argument>(
                  HasSubstr("n exceeds the GEMM dimension limit 2147483647 (got 2147483648)")));
  Sgemm gemm({.m = 2, .n = 2, .k = 2});
  std::vector<float> a(4, 1.0f), c(4, 7.0f);
  EXPECT_THAT([&] { gemm.multiply(a.data(), nullptr, c.data()); },
              ThrowsMessage<std::invalid_argument>(HasSubstr("b must not be null")));
  EXPECT_EQ(c, std::vector<float>(4, 7.0f)) << "c was written before the error";
}

}  // namespace
}  // namespace convgemm
