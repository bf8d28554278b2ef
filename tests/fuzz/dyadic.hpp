#pragma once
// Tensors whose every sum is exact: multiples of 1/4 in [-1, 1]. A product is a multiple of 1/16
// of magnitude <= 1, so a sum of up to 4096 of them plus a bias (the tiny problems' longest
// reduction) needs at most 17 significant bits: in float it is exact in any order, and the engine
// must equal naive:: (which sums in double) bit for bit, not merely within a tolerance.

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace convgemm::fuzz {

inline std::vector<float> dyadic(std::size_t size, uint64_t seed) {
  std::vector<float> v(size);
  for (float& x : v) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;  // Knuth's LCG
    x = float(int64_t(seed >> 61) - 4 + int64_t((seed >> 60) & 1)) / 4.0f;
  }
  return v;
}

// Engine output against naive output; NaN marks an element the engine never wrote.
inline void expect_equal(const std::vector<float>& engine, const std::vector<float>& naive,
                         const std::string& what, const std::string& shape) {
  for (std::size_t i = 0; i < engine.size(); ++i) {
    if (!(engine[i] == naive[i])) {
      std::fprintf(stderr, "MISMATCH %s %s [%zu]: engine %g, naive %g\n", shape.c_str(),
                   what.c_str(), i, double(engine[i]), double(naive[i]));
      __builtin_trap();
    }
  }
}

}  // namespace convgemm::fuzz
