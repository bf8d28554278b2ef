// The three passes on nhwc tensors (packed_conv.hpp). Per image n and group g, with X_col's rows
// k = (kh, kw, c) (an OHWI filter's order) and the output's positions as the rows of C, so that
// C is row-major like every output the driver writes:
//   forward           Y_g [P x M] = X_col^T [P x K] * W_g^T [K x M] (+ bias in the tile
//                     write-back), straight into y, whose rows are O floats apart; several small
//                     images side by side need no block buffer (their positions are too).
//   backward_data     dX_col^T [P x K'] = dY_g [P x M] * W_g [M x K'] for a range of input
//                     channels (K' = its channels of every tap), a block of output rows at a
//                     time, then added into dX position by position, tap by tap (each tap a
//                     contiguous run of the range's channels).
//   backward_weights  dW_g [M x K] (+)= dY_g^T [M x NP] * X_col^T [NP x K], as in nchw.
// Tasks and blocks are packed_conv.cpp's (the same PackedBlocking), so the contract is the same:
// an element's operations depend on the shape and the CPU's kernel only.
#include <algorithm>
#include <cstring>

#include "../kernels.hpp"
#include "bias_write_back.hpp"
#include "convgemm/detail/check.hpp"
#include "flipped_filter.hpp"
#include "nhwc_taps.hpp"
#include "operands.hpp"
#include "packed_conv.hpp"
#include "prepacked_weights.hpp"
#include "weight_gradient_tasks.hpp"

namespace convgemm::detail {
namespace {

int64_t round_up(int64_t value, int64_t multiple) { return ceil_div(value, multiple) * multiple; }

// dX (+)= a backward_data block, in dx rows [ih_begin, ih_end) only: rows are output positions
// [first, first + count) of the batch, columns the range's K' = taps x channels (tap-major);
// dx_range is channel c_begin of the group in pixel (0, 0) of image 0. Positions in order, then
// taps in order: the order every pixel receives its terms in, fixed by the shape.
void add_block_to_image(const Conv2dShape& s, const float* block, int64_t channels, int64_t first,
                        int64_t count, int64_t ih_begin, int64_t ih_end, float* dx_range) {
  const int64_t KH = s.kernel_height, KW = s.kernel_width, ld = KH * KW * channels;
  nhwc::Origins origins(s, first);
  for (int64_t q = 0; q < count; ++q, origins.next()) {
    const nhwc::Origin& origin = *origins;
    const float* row = block + q * ld;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = origin.ih + kh * s.dilation_height;
      if (ih < ih_begin || ih >= ih_end) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t offset = nhwc::tap_offset(s, origin, kh, kw);
        if (offset < 0) continue;
        const float* terms = row + (kh * KW + kw) * channels;
        float* pixel = dx_range + offset;
        for (int64_t c = 0; c < channels; ++c) pixel[c] += terms[c];
      }
    }
  }
}

// forward's tasks (split as `split` says) on each group's filter, `filter_of(g)`: packed at the
// workspace's start, or an operand the tasks pack themselves.
template <class FilterOfGroup>
void forward_tasks(const Conv2dShape& s, const MicroKernel& kernel, const ForwardSplit& split,
                   const PackedBlocking& b, WorkerPool& pool, const FilterOfGroup& filter_of,
                   const float* x, const float* bias, float* y, bool accumulate, float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t O = s.out_channels, image_floats = s.in_height * s.in_width * s.in_channels;
  const int64_t group_channels = s.in_channels / G;
  const int64_t ranges = split.positions.ranges, parts = split.outputs.ranges;
  const int64_t images = split.images;
  pool.run(ceil_div(s.batch, images) * G * ranges * parts, [&](int64_t task, int slot) {
    const int64_t part = task % parts, range = task / parts % ranges;
    const int64_t g = task / parts / ranges % G, n = task / parts / ranges / G * images;
    const int64_t lanes = std::min(images, s.batch - n) * P;
    // (The last group of images may be smaller.)
    const int64_t lane_begin = split.positions.begin(range);
    const int64_t lane_end = std::min(lanes, split.positions.begin(range + 1));
    const int64_t m_begin = split.outputs.begin(part), m_end = split.outputs.begin(part + 1);
    if (lane_begin >= lane_end || m_begin >= m_end) return;
    const auto weights = filter_of(g);
    const NhwcImageColumns columns{&s, x + n * image_floats + g * group_channels, lane_begin};
    const float* bias_group = bias != nullptr ? bias + g * M : nullptr;
    float* y_rows = y + (n * P + lane_begin) * O + g * M;
    // The bias joins each tile right after its last reduction block, while it is in cache, or
    // is its first values where it has one block (as in nchw).
    const bool bias_first = bias_group != nullptr && !accumulate && K <= kernel.kc;
    auto add_bias = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
      if (bias_group == nullptr || bias_first) return;
      add_bias_per_column(y_rows + row * O + col, O, rows, cols, bias_group + col);
    };
    auto set_bias = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
      if (!bias_first) return false;
      set_bias_per_column(y_rows + row * O + col, O, rows, cols, bias_group + col);
      return true;
    };
    const SlotBuffers buffers = slot_buffers(b, workspace, slot);
    if (streams_output(s, kernel, accumulate)) {
      alignas(64) float tile[kMaxTileFloats];
      const int64_t tile_ld = b_panel_width(kernel);
      auto write_tile = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
        stream_tile_rows(y_rows + row * O + col, O, rows, cols, tile, tile_ld, nullptr,
                         bias_group != nullptr ? bias_group + col : nullptr);
      };
      packed_gemm(kernel, K, columns, weights, GemmOutput{y_rows, O, 1, true, tile},
                  GemmRange{0, lane_end - lane_begin, m_begin, m_end}, b.blocks, buffers.rows,
                  buffers.cols, write_tile);
      finish_streaming_stores();
      return;
    }
    packed_gemm(kernel, K, columns, weights, GemmOutput{y_rows, O, 1, !accumulate},
                GemmRange{0, lane_end - lane_begin, m_begin, m_end}, b.blocks, buffers.rows,
                buffers.cols, add_bias, set_bias);
  });
}

}  // namespace

void packed_forward_nhwc(const Conv2dShape& s, const MicroKernel& kernel, const PackedBlocking& b,
                         WorkerPool& pool, const float* x, const float* w, const float* bias,
                         float* y, bool accumulate, FilterPacking packing, float* workspace) {
  with_filter(
      s, kernel, pool, packing == FilterPacking::per_call && b.forward.filter_in_tasks,
      packing == FilterPacking::packed, b.forward.filter_width,
      [&](int64_t g) { return filter_rows(s, w, g); }, workspace,
      [&](const auto& filter_of) {
        forward_tasks(s, kernel, b.forward, b, pool, filter_of, x, bias, y, accumulate, workspace);
      });
}

void packed_backward_data_nhwc(const Conv2dShape& s, const MicroKernel& kernel,
                               const PackedBlocking& b, WorkerPool& pool, const float* dy,
                               const float* w, float* dx, bool accumulate, float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t O = s.out_channels, OH = s.out_height(), OW = s.out_width();
  const int64_t T = s.kernel_height * s.kernel_width, group_channels = s.in_channels / G;
  const int64_t ranges = b.channel_ranges, wb = b_panel_width(kernel);
  if (b.data_as_forward) {
    const Conv2dShape as_forward = data_gradient_forward_shape(s);
    with_filter(
        as_forward, kernel, pool, b.data_forward.filter_in_tasks, false,
        b.data_forward.filter_width,
        [&](int64_t g) {
          return FlippedFilter{&s, w + g * M * K};
        },
        workspace,
        [&](const auto& filter_of) {
          forward_tasks(as_forward, kernel, b.data_forward, b, pool, filter_of, dy, nullptr, dx,
                        accumulate, workspace);
        });
    return;
  }
  auto range_channels = [&](int64_t range) {
    return std::min(group_channels, (range + 1) * b.channels_per_range) -
           range * b.channels_per_range;
  };
  // W_g's columns of one channel range: lane l is tap l / channels, channel l % channels, so
  // the lanes of a tap are contiguous in the OHWI row and the taps C/G floats apart.
  auto range_weights = [&](int64_t g, int64_t range) {
    return LanesAlongRows{w + g * M * K + range * b.channels_per_range, K,
                          /*per_image=*/range_channels(range), /*image_stride=*/group_channels};
  };
  // Packed once per call where nchw's is (a small filter, several images), range by range.
  const int64_t range_floats = prepacked_floats(b.channels_per_range * T, M, wb);
  const int64_t m_blocks = ceil_div(M, kernel.kc);
  const bool prepacked = b.data_weights_shared;
  if (prepacked)
    pool.run(G * ranges * m_blocks, [&](int64_t task, int) {
      const int64_t block = task % m_blocks, range = task / m_blocks % ranges;
      const int64_t g = task / m_blocks / ranges, step = block * kernel.kc;
      const int64_t lanes = range_channels(range) * T;
      range_weights(g, range).panels(
          0, lanes, step, std::min(kernel.kc, M - step), wb,
          workspace + (g * ranges + range) * range_floats + step * round_up(lanes, wb));
    });
  auto with_weights = [&](int64_t g, int64_t range, auto&& run) {
    if (prepacked) {
      run(PrepackedPanels{workspace + (g * ranges + range) * range_floats,
                          round_up(range_channels(range) * T, wb), kernel.kc});
    } else {
      run(range_weights(g, range));
    }
  };
  if (!accumulate) {
    const int64_t rows = s.batch * s.in_height, row_floats = s.in_width * s.in_channels;
    pool.run(rows, [&](int64_t row, int) {
      std::memset(dx + row * row_floats, 0, static_cast<std::size_t>(row_floats) * sizeof(float));
    });
  }
  // Tasks (band, group of images, group, range), as in nchw: blocks of output rows of one
  // image, or whole images side by side, added into dx in position order. Two channel ranges'
  // tasks write the same pixels' cache lines, and too few tasks leave workers idle: then each
  // image's dx rows are cut into a band per worker, the bands' tasks in turn (a worker takes a
  // run of consecutive tasks), and a band's task runs every output row that reaches the band
  // (the rows two bands share run in both) but adds only into it: each pixel still receives its
  // terms in position order.
  const int64_t images = b.images_per_data_block, image_groups = ceil_div(s.batch, images);
  const int64_t tasks = image_groups * G * ranges, H = s.in_height;
  const bool banded = images == 1 && (ranges > 1 || tasks < pool.slots());
  const int64_t bands = banded ? std::min<int64_t>(pool.slots(), H) : 1;
  pool.run(bands * tasks, [&](int64_t band_task, int slot) {
    const int64_t band = band_task / tasks, task = band_task % tasks;
    const int64_t ih_begin = band * H / bands, ih_end = (band + 1) * H / bands;
    const int64_t range = task % ranges, g = task / ranges % G, n = task / ranges / G * images;
    const int64_t channels = range_channels(range), columns = channels * T;
    float* dx_range = dx + g * group_channels + range * b.channels_per_range;
    const SlotBuffers buffers = slot_buffers(b, workspace, slot);
    with_weights(g, range, [&](const auto& weights) {
      // Output positions [first, first + count) of the batch into the block, then into dx.
      auto run_block = [&](int64_t first, int64_t count) {
        const LanesAcrossRows gradients{dy + first * O + g * M, O, /*per_image=*/M,
                                        /*image_stride=*/0};
        packed_gemm(kernel, M, gradients, weights,
                    GemmOutput{buffers.data_block, columns, 1, /*overwrite=*/true},
                    GemmRange{0, count, 0, columns}, b.blocks, buffers.rows, buffers.cols,
                    kNoWriteBack);
        add_block_to_image(s, buffers.data_block, channels, first, count, ih_begin, ih_end,
                           dx_range);
      };
      if (images > 1) {
        run_block(n * P, std::min(images, s.batch - n) * P);
        return;
      }
      // The output rows whose taps reach the band: oh * sh - pt + (KH - 1) * dh >= ih_begin and
      // oh * sh - pt <= ih_end - 1.
      const int64_t reach = (s.kernel_height - 1) * s.dilation_height;
      const int64_t oh_first =
          std::max<int64_t>(0, ceil_div(ih_begin + s.pad_top - reach, s.stride_height));
      const int64_t oh_last = std::min(OH, (ih_end - 1 + s.pad_top) / s.stride_height + 1);
      for (int64_t oh_begin = oh_first; oh_begin < oh_last; oh_begin += b.rows_per_block) {
        const int64_t oh_end = std::min(oh_last, oh_begin + b.rows_per_block);
        run_block(n * P + oh_begin * OW, (oh_end - oh_begin) * OW);
      }
    });
  });
}

void packed_backward_weights_nhwc(const Conv2dShape& s, const MicroKernel& kernel,
                                  const PackedBlocking& b, WorkerPool& pool, const float* x,
                                  const float* dy, float* dw, float* db, bool accumulate,
                                  float* workspace) {
  const int64_t M = s.gemm_m(), O = s.out_channels, group_channels = s.in_channels / s.groups;
  // dY_g^T: lane m of step n * P + p is dy[(n * P + p) * O + g * M + m].
  weight_gradient_tasks(
      s, kernel, b, pool,
      [&](int64_t g) {
        return std::pair{LanesAlongRows{dy + g * M, s.out_channels},
                         NhwcImageRows{&s, x + g * group_channels}};
      },
      [&](int64_t g, int64_t begin, int64_t steps, double* sums) {
        for (int64_t m = 0; m < M; m += kChannelsPerSum) {
          channel_sums_nhwc(dy + begin * O, steps, O, g * M + m, std::min(kChannelsPerSum, M - m),
                            sums + m);
        }
      },
      dw, db, accumulate, workspace);
}

}  // namespace convgemm::detail
