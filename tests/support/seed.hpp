#pragma once
// The seed of every randomized test: fixed, so that a failure reproduces, and overridable through
// the environment (CONVGEMM_TEST_SEED=<integer>) to explore other data without a rebuild.

#include <cstdint>
#include <string>

namespace convgemm::test {

uint64_t test_seed();

// "seed 20261123", for a SCOPED_TRACE next to the shape's to_string().
std::string seed_description();

}  // namespace convgemm::test
