// Built instead of blis_micro_kernel.cpp when CMake found no BLIS: the packed driver is absent,
// and every plan takes the explicit path.
#include <stdexcept>

#include "micro_kernel.hpp"

namespace convgemm::detail {

// Unreachable: without BLIS no MicroKernel is ever handed out.
void MicroKernel::multiply(int64_t, int64_t, int64_t, const float*, const float*, float, float*,
                           int64_t, int64_t) const {
  throw std::logic_error("convgemm: the packed driver is not built into this library");
}

const MicroKernel* blis_micro_kernel() { return nullptr; }

}  // namespace convgemm::detail
