// BLIS's own SGEMM for the second roofline: its typed API, on the configuration (kernel and block
// sizes) convgemm's packed driver runs on. BLIS's own pick can be weaker: on CPUs newer than its
// tables it is its reference code (src/packed/micro_kernel.hpp), which is no roofline.
#include <blis.h>

#include <string>

#include "bench.hpp"
#include "gemm_library.hpp"

namespace convgemm::bench {
namespace {

// The configuration's name, read off the packed driver's trace: "packed(skx 32x12, ...)".
std::string driver_configuration() {
  const std::string trace = packed_driver_trace();
  const std::string prefix = "packed(";
  if (trace.rfind(prefix, 0) != 0) return "";
  return trace.substr(prefix.size(), trace.find(' ') - prefix.size());
}

struct Configuration {
  cntx_t* context = nullptr;  // nullptr: BLIS's own choice
  const char* name = "";
};

const Configuration& configuration() {
  static const Configuration chosen = [] {
    bli_init();
    const std::string name = driver_configuration();
    for (int id = 0; id < BLIS_NUM_ARCHS; ++id) {
      const arch_t arch = static_cast<arch_t>(id);
      cntx_t** contexts = bli_gks_lookup_id(arch);
      if (contexts != nullptr && name == bli_arch_string(arch)) {
        return Configuration{contexts[BLIS_NAT], bli_arch_string(arch)};
      }
    }
    return Configuration{nullptr, bli_arch_string(bli_arch_query_id())};
  }();
  return chosen;
}

}  // namespace

void blis_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  float one = 1.0f;
  // Row-major: the row stride is the leading dimension, the column stride 1.
  bli_sgemm_ex(transpose_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               transpose_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
               const_cast<float*>(a), lda, 1, const_cast<float*>(b), ldb, 1, &beta, c, ldc, 1,
               configuration().context, /*rntm=*/nullptr);
}

const char* blis_configuration() { return configuration().name; }

}  // namespace convgemm::bench
