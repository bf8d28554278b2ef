#pragma once
// A single-precision GEMM whose every element is the same sequence of floating-point operations
// whatever the matrix sizes around it: c[i][j] depends on row i of op(A), column j of op(B) and
// k, never on m, n or where (i, j) falls in the blocking. So a batch's row i of A * B is bitwise
// the product of that row alone: a batch-invariant GEMM (a layer's output for one sample does not
// depend on the batch it runs in). It runs on convgemm's packed driver over BLIS's micro-kernel
// for this CPU, on the calling thread only.
//
//   C [m x n] = op(A) [m x k] * op(B) [k x n]      (+ C with accumulate)
//   op(A) = A stored [m x k], or with transpose_a A^T stored [k x m]; likewise op(B), [k x n] or
//   [n x k]. Every matrix is row-major and dense (its leading dimension is its row length).
//
// Without BLIS (reproducible() == false) the same calls run on OpenBLAS's cblas_sgemm, whose
// rounding of an element may depend on m and n.
//
// Example (a dense layer's forward, y [N x out] = x [N x in] * W^T, W stored [out x in]):
//   convgemm::Sgemm gemm({.m = batch, .n = out, .k = in, .transpose_b = true});
//   gemm.multiply(x, w, y);            // overwrites y; any number of calls, none allocates

#include <cstdint>
#include <memory>

namespace convgemm {

struct SgemmShape {
  int64_t m = 1, n = 1, k = 1;  // each >= 1
  bool transpose_a = false, transpose_b = false;
  // std::invalid_argument naming the first size below 1 or a product that overflows int64.
  void validate() const;
};

class Sgemm {
 public:
  // Validates the shape and allocates the packing buffers, once.
  explicit Sgemm(const SgemmShape& shape);
  ~Sgemm();
  Sgemm(Sgemm&&) noexcept;
  Sgemm& operator=(Sgemm&&) noexcept;
  Sgemm(const Sgemm&) = delete;
  Sgemm& operator=(const Sgemm&) = delete;

  // c = op(a) * op(b), or c += op(a) * op(b) with accumulate. Throws std::invalid_argument on a
  // null pointer, before writing c. Not thread-safe on one object (it owns the buffers).
  void multiply(const float* a, const float* b, float* c, bool accumulate = false);

  const SgemmShape& shape() const;
  // True when the results are batch-invariant as described above (built with BLIS).
  bool reproducible() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace convgemm
