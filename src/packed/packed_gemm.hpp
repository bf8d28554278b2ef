#pragma once
// The packed GEMM driver: BLIS's loops around its micro-kernel (Goto & van de Geijn; BLIS
// docs/KernelsHowTo.md), with the packing left to the caller's operands, so that an operand can
// be gathered straight from an image (im2col inside the packing) or packed once and reused.
//
//   C [rows x cols] (+)= A [rows x depth] * B [depth x cols]
//
// Loops, outermost first: blocks of B's lanes (cols), reduction blocks of kernel.kc steps, blocks
// of A's lanes (rows), then the tiles. A tile's micro-kernel call adds one reduction block to
// it, so every element of C is the same sequence of operations whatever the blocks of lanes, the
// task that runs it or its place in a tile:
//   C = (((beta0 * C + block_0) + block_1) + ...),  block_r = one fma chain over kc steps
// cut where the reduction is cut (multiples of kernel.kc from the first step), which depends on
// `depth` only. That is the whole reproducibility argument: lanes never interact.
//
// Orientation: the kernel runs at full speed only with its preferred C storage. When it prefers
// columns, the driver multiplies C^T = B^T * A^T instead: B's lanes become the tile rows.

#include <algorithm>
#include <cassert>
#include <concepts>
#include <cstdint>

#include "micro_kernel.hpp"

namespace convgemm::detail {

// An operand supplies its packed panels: `lanes` lanes from `first_lane`, over reduction steps
// [step, step + steps), in panels `width` wide (micro_kernel.hpp's format), either written into
// `buffer` (which holds panels for any block the caller asks for) or found ready elsewhere.
template <class T>
concept PanelOperand = requires(const T& operand, int64_t i, float* buffer) {
  { operand.panels(i, i, i, i, i, buffer) } -> std::same_as<const float*>;
};

// Where C lives: element (row, col) at data[row * row_stride + col * col_stride], rows and cols
// as in the A * B view. `overwrite`: the first reduction block replaces C instead of adding.
// With `tile` set, the reduction is one block and the kernel does not write C: each tile goes
// into `tile` (kMaxTileFloats, 64-byte aligned), element (row, col) of it, in the A * B view,
// at tile[row * b_panel_width(kernel) + col], and finish writes it to C from there (say, with
// stores that bypass the cache).
struct GemmOutput {
  float* data;
  int64_t row_stride, col_stride;
  bool overwrite;
  float* tile = nullptr;
};
inline constexpr int64_t kMaxTileFloats = 1024;  // BLIS's single-precision tiles: 32 x 12 at most

// Lanes of C one call works on (rows and cols as in the A * B view).
struct GemmRange {
  int64_t row_begin, row_end, col_begin, col_end;
};

// Lanes per packed block, in the kernel's terms: `mc` lanes of the operand whose panels are the
// tile rows (mr wide, streamed from L2), `nc` of the other (nr wide, one panel kept in L1 while
// it meets every row panel of the block). Multiples of mr and nr; the buffers hold mc x kc and
// kc x nc floats. Any positive values give the same bits (lanes never interact).
struct PackBlocks {
  int64_t mc, nc;
};

// The widths of A's and B's panels for `kernel` (see Orientation above).
inline int64_t a_panel_width(const MicroKernel& kernel) {
  return kernel.prefers_rows ? kernel.mr : kernel.nr;
}
inline int64_t b_panel_width(const MicroKernel& kernel) {
  return kernel.prefers_rows ? kernel.nr : kernel.mr;
}

namespace packed {

// The finish hook, called a few tiles late. A tile's last stores may still wait for their cache
// lines (the first write to an output misses all the way to memory), and a hook that reads the
// tile at once waits with them: the textbook layer's bias pass, 14% of its forward, sat on those
// loads. Tiles are disjoint, so the order of their finishes changes nothing.
template <class Finish>
class LateFinish {
 public:
  explicit LateFinish(Finish& finish) : finish_(finish) {}
  LateFinish(const LateFinish&) = delete;
  LateFinish& operator=(const LateFinish&) = delete;
  ~LateFinish() {
    for (int64_t k = 0; k < count_; ++k) call(pending_[(oldest_ + k) % kLag]);
  }
  void operator()(int64_t i, int64_t m, int64_t j, int64_t n) {
    if (count_ == kLag) {
      call(pending_[oldest_]);
      oldest_ = (oldest_ + 1) % kLag;
      --count_;
    }
    pending_[(oldest_ + count_) % kLag] = {i, m, j, n};
    ++count_;
  }

 private:
  static constexpr int64_t kLag = 4;
  struct Tile {
    int64_t i, m, j, n;
  };
  void call(const Tile& t) { finish_(t.i, t.m, t.j, t.n); }
  Finish& finish_;
  Tile pending_[kLag] = {};
  int64_t oldest_ = 0, count_ = 0;
};

// BLIS's loop nest in the kernel's terms: `rows` is the operand of the tile rows (mr-wide
// panels), `cols` the other; c[i * rs + j * cs]. finish(i, m, j, n) and start(i, m, j, n) in
// these terms too.
template <PanelOperand Rows, PanelOperand Cols, class Finish, class Start>
void kernel_loops(const MicroKernel& kernel, int64_t depth, const Rows& rows, const Cols& cols,
                  float* c, int64_t rs, int64_t cs, bool overwrite, float* tile, int64_t i_begin,
                  int64_t i_end, int64_t j_begin, int64_t j_end, const PackBlocks& blocks,
                  float* row_buffer, float* col_buffer, Finish& finish, const Start& start) {
  const int64_t mr = kernel.mr, nr = kernel.nr;
  assert(tile == nullptr || (depth <= kernel.kc && mr * nr <= kMaxTileFloats));
  // (A tile in the kernel's preferred storage: its rows contiguous, or its columns.)
  const int64_t tile_rs = kernel.prefers_rows ? nr : 1, tile_cs = kernel.prefers_rows ? 1 : mr;
  LateFinish late_finish(finish);
  for (int64_t jc = j_begin; jc < j_end; jc += blocks.nc) {
    const int64_t nc = std::min(blocks.nc, j_end - jc);
    for (int64_t step = 0; step < depth; step += kernel.kc) {
      const int64_t steps = std::min(kernel.kc, depth - step);
      const bool last = step + steps == depth;
      const float beta = step == 0 && overwrite ? 0.0f : 1.0f;
      const float* col_panels = cols.panels(jc, nc, step, steps, nr, col_buffer);
      for (int64_t ic = i_begin; ic < i_end; ic += blocks.mc) {
        const int64_t mc = std::min(blocks.mc, i_end - ic);
        const float* row_panels = rows.panels(ic, mc, step, steps, mr, row_buffer);
        for (int64_t j = 0; j < nc; j += nr) {
          const int64_t n = std::min(nr, nc - j);
          for (int64_t i = 0; i < mc; i += mr) {
            const int64_t m = std::min(mr, mc - i);
            if (tile != nullptr) {
              kernel.multiply(m, n, steps, row_panels + i * steps, col_panels + j * steps, 0.0f,
                              tile, tile_rs, tile_cs);
              finish(ic + i, m, jc + j, n);
              continue;
            }
            const bool started = step == 0 && start(ic + i, m, jc + j, n);
            kernel.multiply(m, n, steps, row_panels + i * steps, col_panels + j * steps,
                            started ? 1.0f : beta, c + (ic + i) * rs + (jc + j) * cs, rs, cs);
            if (last) late_finish(ic + i, m, jc + j, n);
          }
        }
      }
    }
  }
}

}  // namespace packed

// A start hook that writes nothing (below).
inline constexpr auto kNoStart = [](int64_t, int64_t, int64_t, int64_t) { return false; };

// Runs the loops above over `range` of C = A * B (+ C unless c.overwrite). `finish(row, rows,
// col, cols)` is called once per tile after its last reduction block: the write-back hook (the
// bias, or nothing). `start(row, rows, col, cols)`, called before a tile's first reduction
// block, may write the tile's first values into C and return true: that block then adds to
// them. (A bias written before a tile's only block is the same single rounding as one added
// after it, and costs no second pass over the tile.) Buffers as PackBlocks says.
template <PanelOperand A, PanelOperand B, class Finish, class Start = decltype(kNoStart)>
void packed_gemm(const MicroKernel& kernel, int64_t depth, const A& a, const B& b,
                 const GemmOutput& c, const GemmRange& range, const PackBlocks& blocks,
                 float* row_buffer, float* col_buffer, Finish&& finish,
                 const Start& start = kNoStart) {
  if (kernel.prefers_rows) {
    packed::kernel_loops(kernel, depth, a, b, c.data, c.row_stride, c.col_stride, c.overwrite,
                         c.tile, range.row_begin, range.row_end, range.col_begin, range.col_end,
                         blocks, row_buffer, col_buffer, finish, start);
  } else {  // C^T = B^T * A^T: B's lanes are the tile rows
    auto transposed = [&](int64_t i, int64_t m, int64_t j, int64_t n) { finish(j, n, i, m); };
    auto transposed_start = [&](int64_t i, int64_t m, int64_t j, int64_t n) {
      return start(j, n, i, m);
    };
    packed::kernel_loops(kernel, depth, b, a, c.data, c.col_stride, c.row_stride, c.overwrite,
                         c.tile, range.col_begin, range.col_end, range.row_begin, range.row_end,
                         blocks, row_buffer, col_buffer, transposed, transposed_start);
  }
}

}  // namespace convgemm::detail
