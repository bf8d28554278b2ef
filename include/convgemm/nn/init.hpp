#pragma once
// Seeded, platform-independent weight initialisation.
//
// std::uniform_real_distribution's algorithm is left to the standard library, so the same seed
// could give other weights elsewhere; these draw straight from std::mt19937_64, whose output
// sequence the standard fixes, so a seed means the same model on every platform.

#include <cstdint>
#include <random>
#include <span>

namespace convgemm::nn {

// Uniform in [low, high), 24 random bits (every float step of [0, 1) that a float can hold).
float uniform(std::mt19937_64& rng, float low, float high);

// He/Kaiming uniform for layers followed by ReLU: U(-b, b) with b = sqrt(6 / fan_in), i.e. gain
// sqrt(2) on a variance-preserving uniform (He et al. 2015). fan_in is C/G*KH*KW for a
// convolution, in_features for a dense layer. Throws std::invalid_argument if fan_in < 1.
void kaiming_uniform(std::span<float> values, int64_t fan_in, std::mt19937_64& rng);

}  // namespace convgemm::nn
