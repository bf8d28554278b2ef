#include "support/seed.hpp"

#include <cstdlib>
#include <string>

namespace convgemm::test {

uint64_t test_seed() {
  static const uint64_t seed = [] {
    constexpr uint64_t kDefaultSeed = 20261123;
    const char* text = std::getenv("CONVGEMM_TEST_SEED");
    return text != nullptr && *text != '\0' ? std::stoull(text) : kDefaultSeed;
  }();
  return seed;
}

std::string seed_description() { return "seed " + std::to_string(test_seed()); }

}  // namespace convgemm::test
