#include "bias_write_back.hpp"

#include <algorithm>

namespace convgemm::detail {

// One float addition per element in either clone, so the bits do not depend on the CPU.
#define CONVGEMM_WRITE_BACK [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]

CONVGEMM_WRITE_BACK void add_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols,
                                          const float* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    const float b = bias[i];
    for (int64_t j = 0; j < cols; ++j) row[j] += b;
  }
}

CONVGEMM_WRITE_BACK void add_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols,
                                             const float* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
  }
}

CONVGEMM_WRITE_BACK void set_bias_per_row(float* y, int64_t ld, int64_t rows, int64_t cols,
                                          const float* bias) {
  for (int64_t i = 0; i < rows; ++i) std::fill(y + i * ld, y + i * ld + cols, bias[i]);
}

CONVGEMM_WRITE_BACK void set_bias_per_column(float* y, int64_t ld, int64_t rows, int64_t cols,
                                             const float* bias) {
  for (int64_t i = 0; i < rows; ++i) std::copy(bias, bias + cols, y + i * ld);
}

}  // namespace convgemm::detail
