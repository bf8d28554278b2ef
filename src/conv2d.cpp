// The public plan: validation up front, then the engine (plan.hpp) does the work.
#include "convgemm/conv2d.hpp"

#include "convgemm/detail/check.hpp"
#include "plan.hpp"

namespace convgemm {

bool gemm_backend_available(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::onednn:
      return detail::onednn_gemm_built();
    case GemmBackend::packed:
      return detail::blis_micro_kernel() != nullptr;
    case GemmBackend::automatic:
    case GemmBackend::openblas:
      return true;
  }
  return false;
}

struct Conv2d::Impl {
  Impl(const Conv2dShape& shape, const Conv2dOptions& options)
      : options(options), plan(shape, options) {}
  Conv2dOptions options;
  detail::Plan plan;
};

namespace {
const Conv2dShape& validated(const Conv2dShape& shape, const Conv2dOptions& options) {
  shape.validate();
  detail::require_at_least("num_threads", options.num_threads, 0);
  return shape;
}
}  // namespace

Conv2d::Conv2d(const Conv2dShape& shape, const Conv2dOptions& options)
    : impl_(std::make_unique<Impl>(validated(shape, options), options)) {}
Conv2d::~Conv2d() = default;
Conv2d::Conv2d(Conv2d&&) noexcept = default;
Conv2d& Conv2d::operator=(Conv2d&&) noexcept = default;

void Conv2d::forward(const float* x, const float* w, const float* bias, float* y) {
  detail::require_pointer("x", x);
  detail::require_pointer("w", w);
  detail::require_pointer("y", y);
  impl_->plan.forward(x, w, bias, y, /*accumulate=*/false);
}

void Conv2d::backward_data(const float* dy, const float* w, float* dx) {
  detail::require_pointer("dy", dy);
  detail::require_pointer("w", w);
  detail::require_pointer("dx", dx);
  impl_->plan.backward_data(dy, w, dx, impl_->options.accumulate_gradients);
}

void Conv2d::backward_weights(const float* x, const float* dy, float* dw, float* dbias) {
  detail::require_pointer("x", x);
  detail::require_pointer("dy", dy);
  detail::require_pointer("dw", dw);
  impl_->plan.backward_weights(x, dy, dw, dbias, impl_->options.accumulate_gradients);
}

const Conv2dShape& Conv2d::shape() const { return impl_->plan.shape(); }
const Conv2dOptions& Conv2d::options() const { return impl_->options; }
std::size_t Conv2d::workspace_bytes() const { return impl_->plan.workspace_bytes(); }
int Conv2d::num_threads() const { return impl_->plan.blocking().slots; }
std::string Conv2d::describe() const { return impl_->plan.describe(); }

void conv2d_forward(const Conv2dShape& shape, const float* x, const float* w, const float* bias,
                    float* y) {
  Conv2d(shape).forward(x, w, bias, y);
}

void conv2d_backward_data(const Conv2dShape& shape, const float* dy, const float* w, float* dx) {
  Conv2d(shape).backward_data(dy, w, dx);
}

void conv2d_backward_weights(const Conv2dShape& shape, const float* x, const float* dy, float* dw,
                             float* dbias) {
  Conv2d(shape).backward_weights(x, dy, dw, dbias);
}

}  // namespace convgemm
