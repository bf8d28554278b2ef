#include "convgemm/nn/init.hpp"

#include <cmath>

#include "check.hpp"

namespace convgemm::nn {

float uniform(std::mt19937_64& rng, float low, float high) {
  // The top 24 bits of one draw, scaled by 2^-24: exact in float, uniform on [0, 1).
  const float unit = static_cast<float>(rng() >> 40) * 0x1.0p-24f;
  return low + (high - low) * unit;
}

void kaiming_uniform(std::span<float> values, int64_t fan_in, std::mt19937_64& rng) {
  detail::require_at_least("fan_in", fan_in, 1);
  const float bound = std::sqrt(6.0f / static_cast<float>(fan_in));
  for (float& v : values) v = uniform(rng, -bound, bound);
}

}  // namespace convgemm::nn
