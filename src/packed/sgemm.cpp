// The public batch-invariant SGEMM (convgemm/sgemm.hpp) on the packed driver: plain matrices
// packed by the two row-major operand kinds of operands.hpp.
#include "convgemm/sgemm.hpp"

#include <algorithm>
#include <new>
#include <string>

#include "../gemm.hpp"
#include "../shape_rules.hpp"
#include "convgemm/detail/check.hpp"
#include "micro_kernel.hpp"
#include "operands.hpp"
#include "packed_gemm.hpp"

namespace convgemm {

void SgemmShape::validate() const {
  detail::require_at_least("m", m, 1);
  detail::require_at_least("n", n, 1);
  detail::require_at_least("k", k, 1);
  detail::checked_mul(m, k, "m * k");
  detail::checked_mul(k, n, "k * n");
  detail::checked_mul(m, n, "m * n");
  // The same bound as a convolution's GEMM (the fallback passes the sizes to CBLAS).
  const int64_t largest = std::max({m, n, k});
  if (largest > detail::kMaxGemmDimension) {
    detail::fail(m == largest   ? "m"
                 : n == largest ? "n"
                                : "k",
                 largest,
                 "exceeds the GEMM dimension limit " + std::to_string(detail::kMaxGemmDimension));
  }
}

namespace {

constexpr std::align_val_t kAlignment{detail::kPackedPanelAlignment};

struct AlignedDelete {
  void operator()(float* p) const { ::operator delete[](p, kAlignment); }
};

int64_t round_up(int64_t value, int64_t multiple) {
  return detail::ceil_div(value, multiple) * multiple;
}

// Rows of op(A) are lanes over k; stored [m x k] they run across its rows, stored [k x m] along.
detail::LanesAcrossRows lanes_across(const float* matrix, int64_t k) {
  return {matrix, k, /*per_image=*/k, /*image_stride=*/0};
}

}  // namespace

struct Sgemm::Impl {
  SgemmShape shape;
  const detail::MicroKernel* kernel = nullptr;  // null: the OpenBLAS fallback
  detail::PackBlocks blocks{1, 1};
  std::unique_ptr<float[], AlignedDelete> rows, cols;
};

Sgemm::Sgemm(const SgemmShape& shape) : impl_(std::make_unique<Impl>()) {
  shape.validate();
  impl_->shape = shape;
  impl_->kernel = detail::blis_micro_kernel();
  if (impl_->kernel == nullptr) return;
  const detail::MicroKernel& kernel = *impl_->kernel;
  const int64_t kernel_rows = kernel.prefers_rows ? shape.m : shape.n;
  const int64_t kernel_cols = kernel.prefers_rows ? shape.n : shape.m;
  impl_->blocks = {std::min(kernel.mc, round_up(kernel_rows, kernel.mr)),
                   std::min(kernel.nc, round_up(kernel_cols, kernel.nr))};
  const auto buffer = [](int64_t floats) {
    return std::unique_ptr<float[], AlignedDelete>(static_cast<float*>(
        ::operator new[](static_cast<std::size_t>(floats) * sizeof(float), kAlignment)));
  };
  impl_->rows = buffer(impl_->blocks.mc * kernel.kc);
  impl_->cols = buffer(impl_->blocks.nc * kernel.kc);
}

Sgemm::~Sgemm() = default;
Sgemm::Sgemm(Sgemm&&) noexcept = default;
Sgemm& Sgemm::operator=(Sgemm&&) noexcept = default;

const SgemmShape& Sgemm::shape() const { return impl_->shape; }
bool Sgemm::reproducible() const { return impl_->kernel != nullptr; }

void Sgemm::multiply(const float* a, const float* b, float* c, bool accumulate) {
  detail::require_pointer("a", a);
  detail::require_pointer("b", b);
  detail::require_pointer("c", c);
  const SgemmShape& s = impl_->shape;
  if (impl_->kernel == nullptr) {
    using detail::Transpose;
    const detail::SingleThreadedBlas single_threaded;
    detail::sgemm(detail::GemmLibrary::openblas, s.transpose_a ? Transpose::yes : Transpose::no,
                  s.transpose_b ? Transpose::yes : Transpose::no, s.m, s.n, s.k, a,
                  s.transpose_a ? s.m : s.k, b, s.transpose_b ? s.k : s.n,
                  /*beta=*/accumulate ? 1.0f : 0.0f, c, s.n);
    return;
  }
  const detail::GemmOutput out{c, s.n, 1, !accumulate};
  const detail::GemmRange range{0, s.m, 0, s.n};
  auto run = [&](const auto& a_operand, const auto& b_operand) {
    detail::packed_gemm(*impl_->kernel, s.k, a_operand, b_operand, out, range, impl_->blocks,
                        impl_->rows.get(), impl_->cols.get(),
                        [](int64_t, int64_t, int64_t, int64_t) {});
  };
  const detail::LanesAlongRows a_stored_transposed{a, s.m}, b_stored_plain{b, s.n};
  if (!s.transpose_a && !s.transpose_b) run(lanes_across(a, s.k), b_stored_plain);
  if (!s.transpose_a && s.transpose_b) run(lanes_across(a, s.k), lanes_across(b, s.k));
  if (s.transpose_a && !s.transpose_b) run(a_stored_transposed, b_stored_plain);
  if (s.transpose_a && s.transpose_b) run(a_stored_transposed, lanes_across(b, s.k));
}

}  // namespace convgemm
