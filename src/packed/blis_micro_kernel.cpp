// The one file that knows BLIS: its context gives the single-precision GEMM micro-kernel for this
// CPU and the block sizes it was tuned with. BLIS 0.9's names; cmake/convgemmFindBlis.cmake
// refuses other versions.
#include <blis.h>

#include <stdexcept>

#include "micro_kernel.hpp"
#include "skx_edge_tiles.hpp"

namespace convgemm::detail {
namespace {

bool has_avx512_skx_subset() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

bool has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// The native context of configuration `id`, or nullptr when this BLIS build lacks it.
cntx_t* native_context(arch_t id) {
  cntx_t** contexts = bli_gks_lookup_id(id);
  return contexts != nullptr ? contexts[BLIS_NAT] : nullptr;
}

// BLIS's choice, or a wider kernel where its CPU tables are out of date (micro_kernel.hpp).
arch_t configuration_for_this_cpu() {
  const arch_t chosen = bli_arch_query_id();
  const bool unknown_model = chosen == BLIS_ARCH_GENERIC;
  if ((unknown_model || chosen == BLIS_ARCH_HASWELL) && has_avx512_skx_subset()) {
    return BLIS_ARCH_SKX;
  }
  if (unknown_model && has_avx2_fma()) return BLIS_ARCH_HASWELL;
  return chosen;
}

cntx_t* context_for_this_cpu() {
  bli_init();
  const arch_t arch = configuration_for_this_cpu();
  return native_context(arch) != nullptr ? native_context(arch) : bli_gks_query_cntx();
}

MicroKernel query_micro_kernel() {
  cntx_t* cntx = context_for_this_cpu();
  MicroKernel kernel;
  kernel.mr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, cntx);
  kernel.nr = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, cntx);
  kernel.kc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, cntx);
  kernel.mc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, cntx);
  kernel.nc = bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NC, cntx);
  kernel.prefers_rows = bli_cntx_l3_nat_ukr_prefers_rows_dt(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
  // bli_gks_l3_ukr_impl_type answers for the configuration BLIS chose itself; this asks the same
  // question (is the kernel BLIS's portable reference code?) of the context taken above.
  kernel.optimized = !bli_gks_cntx_l3_nat_ukr_is_ref(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
  const void_fp ukr = bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, cntx);
  for (arch_t id = static_cast<arch_t>(0); id < BLIS_NUM_ARCHS; id = static_cast<arch_t>(id + 1)) {
    if (native_context(id) == cntx) kernel.name = bli_arch_string(id);
  }
  kernel.sized_partial_tiles = kernel.name == "skx" && kernel.mr == kSkxTileRows &&
                               kernel.nr == kSkxTileCols && skx_edge_tile(1, 1) != nullptr;
  kernel.context_ = cntx;
  kernel.kernel_ = reinterpret_cast<const void*>(ukr);
  return kernel;
}

}  // namespace

void MicroKernel::multiply(int64_t m, int64_t n, int64_t depth, const float* a, const float* b,
                           float beta, float* c, int64_t rs_c, int64_t cs_c) const {
  if (sized_partial_tiles && rs_c == 1) {
    if (const SkxEdgeTile tile = skx_edge_tile(m, n)) {
      tile(depth, a, b, beta, c, cs_c, m);
      return;
    }
  }
  auto* ukr = reinterpret_cast<sgemm_ukr_ft>(const_cast<void*>(kernel_));
  auto* cntx = static_cast<cntx_t*>(const_cast<void*>(context_));
  float one = 1.0f;
  auxinfo_t aux{};
  bli_auxinfo_set_schema_a(BLIS_PACKED_ROW_PANELS, &aux);
  bli_auxinfo_set_schema_b(BLIS_PACKED_COL_PANELS, &aux);
  bli_auxinfo_set_next_ab(const_cast<float*>(a), const_cast<float*>(b), &aux);
  bli_auxinfo_set_is_a(1, &aux);
  bli_auxinfo_set_is_b(1, &aux);
  ukr(m, n, depth, &one, const_cast<float*>(a), const_cast<float*>(b), &beta, c, rs_c, cs_c, &aux,
      cntx);
}

const MicroKernel* blis_micro_kernel() {
  static const MicroKernel kernel = query_micro_kernel();
  return &kernel;
}

}  // namespace convgemm::detail
