#pragma once
// The micro-kernel the packed driver runs on, as the driver sees it: a tile size, the cache
// blocks the kernel was tuned with, and one call. Only blis_micro_kernel.cpp knows it comes from
// BLIS (its context, queried once when first asked for).
//
// Packed panel format (BLIS's micro-panels): `width` lanes over `depth` reduction steps are
// stored step by step, panel[step * width + lane]; a block of lanes is a sequence of such panels,
// each `depth * width` floats, the last one padded with zero lanes.

#include <cstdint>
#include <string>

namespace convgemm::detail {

class MicroKernel {
 public:
  int64_t mr = 0, nr = 0;    // tile rows and columns: the widths of A's and B's panels
  int64_t kc = 0;            // reduction steps per call: fixes where every sum is cut
  int64_t mc = 0, nc = 0;    // lanes of A and of B per packed block (BLIS's MC and NC)
  bool prefers_rows = true;  // full speed when a tile's rows are contiguous (cs_c == 1)
  bool optimized = false;    // false: BLIS has only its portable reference kernel here
  std::string name;          // BLIS's configuration, e.g. "haswell" or "skx"
  // Partial tiles run at their own size (skx_edge_tiles.hpp) instead of as whole ones in BLIS's
  // kernel; the same bits either way. Set for skx on AVX-512 CPUs.
  bool sized_partial_tiles = false;

  // C[m x n] = beta * C + A_panel^T * B_panel over `depth` steps, for m <= mr, n <= nr; element
  // (i, j) of C is c[i * rs_c + j * cs_c]. a and b are packed panels (mr and nr wide), aligned
  // as packed_panel_alignment. beta is 0 (C is not read) or 1. Each element is one chain of
  // fused multiply-adds over the steps in order, whatever m, n or its place in the tile.
  void multiply(int64_t m, int64_t n, int64_t depth, const float* a, const float* b, float beta,
                float* c, int64_t rs_c, int64_t cs_c) const;

  const void* context_ = nullptr;  // BLIS's context and kernel; set by blis_micro_kernel()
  const void* kernel_ = nullptr;
};

// Bytes every packed panel buffer is aligned to (a cache line; BLIS's kernels use aligned loads
// only on what it packs itself with this alignment or coarser).
inline constexpr int64_t kPackedPanelAlignment = 64;

// The kernel for this CPU, or nullptr when the library was built without BLIS. BLIS 0.9 picks
// its configuration from tables of CPU vendors, families and models, and a CPU newer than its
// tables gets less than it runs: Intel's AVX-512 models from Sapphire Rapids on get "haswell"
// (AVX2), and AMD's family 0x1a (Zen 5) gets "generic", the portable reference code. Where BLIS
// says haswell or generic and the CPU has AVX-512 F, DQ, BW and VL, the "skx" kernel is taken;
// where it says generic and the CPU has AVX2 and FMA, "haswell". Measured: 1536^3 sgemm on a
// 2-core Sapphire Rapids VM 49.7 -> 73.5 GFLOP/s; 3x3 64@56 forward at batch 1 on a 2-core
// Zen 5 VM (2026-12-07) 39 -> 205 GFLOP/s per core.
const MicroKernel* blis_micro_kernel();

}  // namespace convgemm::detail
