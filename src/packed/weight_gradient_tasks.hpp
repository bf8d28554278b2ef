#pragma once
// backward_weights' tasks, shared by both layouts (packed_conv.hpp):
//   dW_g [M x K] (+)= A_g [M x NP] * B_g [NP x K],  NP = every position of every image, in order,
// either as ranges of dW's lanes, each over the whole reduction, or, for a small dW, as chunks
// of the reduction fixed by the shape (PackedBlocking says which), summed in chunk order.

#include <algorithm>
#include <cstdint>
#include <utility>

#include "../parallel.hpp"
#include "packed_conv.hpp"
#include "packed_gemm.hpp"

namespace convgemm::detail {

// An operand seen from step `first` on: its step t is the underlying operand's step first + t.
template <PanelOperand Operand>
struct StepsFrom {
  Operand operand;
  int64_t first;
  const float* panels(int64_t lane, int64_t lanes, int64_t step, int64_t steps, int64_t width,
                      float* buffer) const {
    return operand.panels(lane, lanes, first + step, steps, width, buffer);
  }
};

// `operands_of(g)` returns the pair {A_g, B_g}. With chunks, chunk 0 sums into dw (onto its
// values when accumulating) and chunk c > 0 into partial c - 1 at the workspace's start; each
// dW element is then dw + partial 0 + partial 1 + ..., in that order, on any thread count.
// db (chunks only; null for none): `bias_sums(g, begin, steps, sums)` writes group g's sums of
// dY over steps [begin, begin + steps) in double, which each chunk's task calls on its own
// steps right after its GEMM has streamed them (one pass over dY less: at batch 8 the separate
// sum read 26 MB of 1x1 64->256's dY from memory again, 21% of the pass); db is then the
// chunks' sums added in chunk order, rounded once.
template <class OperandsOfGroup, class BiasSums>
void weight_gradient_tasks(const Conv2dShape& s, const MicroKernel& kernel, const PackedBlocking& b,
                           WorkerPool& pool, const OperandsOfGroup& operands_of,
                           const BiasSums& bias_sums, float* dw, float* db, bool accumulate,
                           float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), depth = s.batch * s.gemm_p();
  if (b.weight_chunks == 1) {
    const int64_t ranges = b.weight_ranges;
    pool.run(G * ranges, [&](int64_t task, int slot) {
      const int64_t g = task / ranges, begin = task % ranges * b.weight_lanes_per_range;
      const int64_t end =
          std::min(b.weight_ranges_of_outputs ? M : K, begin + b.weight_lanes_per_range);
      const GemmRange lanes =
          b.weight_ranges_of_outputs ? GemmRange{begin, end, 0, K} : GemmRange{0, M, begin, end};
      const auto [gradients, rows] = operands_of(g);
      const SlotBuffers buffers = slot_buffers(b, workspace, slot);
      packed_gemm(kernel, depth, gradients, rows, GemmOutput{dw + g * M * K, K, 1, !accumulate},
                  lanes, b.blocks, buffers.rows, buffers.cols, kNoWriteBack);
    });
    return;
  }
  const int64_t chunks = b.weight_chunks, weight_floats = G * M * K;
  float* partials = workspace;
  auto* chunk_bias_sums =
      reinterpret_cast<double*>(workspace + weight_partial_dw_floats(s, chunks));  // [chunk][G*M]
  pool.run(G * chunks, [&](int64_t task, int slot) {
    const int64_t g = task / chunks, chunk = task % chunks;
    const int64_t begin = chunk * b.weight_chunk_steps;
    const int64_t steps = std::min(depth - begin, b.weight_chunk_steps);
    float* sums = (chunk == 0 ? dw : partials + (chunk - 1) * weight_floats) + g * M * K;
    const auto [gradients, rows] = operands_of(g);
    const SlotBuffers buffers = slot_buffers(b, workspace, slot);
    packed_gemm(kernel, steps, StepsFrom<decltype(gradients)>{gradients, begin},
                StepsFrom<decltype(rows)>{rows, begin},
                GemmOutput{sums, K, 1, /*overwrite=*/chunk > 0 || !accumulate},
                GemmRange{0, M, 0, K}, b.blocks, buffers.rows, buffers.cols, kNoWriteBack);
    if (db != nullptr) bias_sums(g, begin, steps, chunk_bias_sums + (chunk * G + g) * M);
  });
  pool.run(G * M, [&](int64_t row, int) {  // row g * M + m of every group's dW, and db[row]
    float* sums = dw + row * K;
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      const float* partial = partials + (chunk - 1) * weight_floats + row * K;
      for (int64_t k = 0; k < K; ++k) sums[k] += partial[k];
    }
    if (db == nullptr) return;
    double sum = chunk_bias_sums[row];
    for (int64_t chunk = 1; chunk < chunks; ++chunk) sum += chunk_bias_sums[chunk * G * M + row];
    db[row] = accumulate ? db[row] + static_cast<float>(sum) : static_cast<float>(sum);
  });
}

}  // namespace convgemm::detail
