#include "support/finite_differences.hpp"

namespace convgemm::test {

TensorD central_differences(TensorD& at, const std::function<double()>& loss, double step) {
  TensorD gradient(at.size());
  for (std::size_t i = 0; i < at.size(); ++i) {
    const double saved = at[i];
    at[i] = saved + step;
    const double above = loss();
    at[i] = saved - step;
    const double below = loss();
    at[i] = saved;
    gradient[i] = (above - below) / (2.0 * step);
  }
  return gradient;
}

}  // namespace convgemm::test
