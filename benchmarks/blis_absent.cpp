// Built instead of blis_sgemm.cpp without BLIS: no BLIS roofline is registered then.
#include <stdexcept>

#include "gemm_library.hpp"

namespace convgemm::bench {

void blis_sgemm(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                float, float*, int64_t) {
  throw std::logic_error("convgemm_bench was built without BLIS");
}

const char* blis_configuration() { return ""; }

}  // namespace convgemm::bench
