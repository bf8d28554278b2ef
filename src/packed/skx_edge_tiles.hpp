#pragma once
// Partial tiles of BLIS's skx micro-kernel (32 x 12, C stored by columns), computed at their own
// size. BLIS computes a partial tile as a whole one into a scratch tile and copies the part out,
// so a 32 x 4 tile costs what a 32 x 12 one does: with 64 output channels (five panels of 12
// and one of 4) that is 11% of the kernel's time, and as much with 32 (12 + 12 + 8).
//
// Each element is the operations BLIS's kernel does (read from its code, 0.9.0's
// bli_sgemm_skx_asm_32x12_l2 and its edge case): the sum starts at zero and takes one fused
// multiply-add per step in step order; then C + sum for beta 1, the sum alone for beta 0 (alpha
// is 1). So a tile's bits are the same whichever of the two kernels runs it, and the driver's
// reproducibility argument (packed_gemm.hpp) is untouched.

#include <cstdint>

namespace convgemm::detail {

inline constexpr int64_t kSkxTileRows = 32, kSkxTileCols = 12;

// C[m x n] = beta * C + A_panel^T * B_panel over `depth` steps: a is a 32-wide packed panel, b a
// 12-wide one (micro_kernel.hpp's format), column j of C is c + j * cs_c (rows contiguous).
using SkxEdgeTile = void (*)(int64_t depth, const float* a, const float* b, float beta, float* c,
                             int64_t cs_c, int64_t m);

// The kernel for a partial m x n tile (1 <= m <= 32, 1 <= n <= 12, not both whole), or nullptr
// for a whole tile (BLIS's kernel) or where the CPU has no AVX-512.
SkxEdgeTile skx_edge_tile(int64_t m, int64_t n);

}  // namespace convgemm::detail
