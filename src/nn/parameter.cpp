#include "convgemm/nn/parameter.hpp"

#include <algorithm>
#include <string>

#include "check.hpp"

namespace convgemm::nn {

int64_t total_size(std::span<const Parameter> parameters) {
  int64_t total = 0;
  for (const Parameter& p : parameters) {
    total = detail::checked_add(total, static_cast<int64_t>(p.values.size()), "total_size");
  }
  return total;
}

namespace {
void require_fused_size(std::size_t fused, std::span<const Parameter> parameters) {
  const int64_t expected = total_size(parameters);
  if (static_cast<int64_t>(fused) != expected) {
    std::string message = "fused buffer size must equal the parameters' total size (";
    message += std::to_string(expected);
    message += ")";
    detail::fail("fused.size()", static_cast<int64_t>(fused), message);
  }
}
}  // namespace

void pack_gradients(std::span<const Parameter> parameters, std::span<float> fused) {
  require_fused_size(fused.size(), parameters);
  auto out = fused.begin();
  for (const Parameter& p : parameters)
    out = std::copy(p.gradients.begin(), p.gradients.end(), out);
}

void unpack_gradients(std::span<const float> fused, std::span<const Parameter> parameters) {
  require_fused_size(fused.size(), parameters);
  auto in = fused.begin();
  for (const Parameter& p : parameters) {
    std::copy(in, in + static_cast<std::ptrdiff_t>(p.gradients.size()), p.gradients.begin());
    in += static_cast<std::ptrdiff_t>(p.gradients.size());
  }
}

void zero_gradients(std::span<const Parameter> parameters) {
  for (const Parameter& p : parameters) std::fill(p.gradients.begin(), p.gradients.end(), 0.0f);
}

}  // namespace convgemm::nn
