#include "bench.hpp"

#include <iostream>
#include <memory>

#include "convgemm/conv2d.hpp"

namespace convgemm::bench {

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward:
      return "forward";
    case Pass::backward_data:
      return "backward_data";
    case Pass::backward_weights:
      return "backward_weights";
  }
  return "?";
}

const char* contender_name(Contender contender) {
  switch (contender) {
    case Contender::convgemm:
      return "convgemm";
    case Contender::convgemm_openblas:
      return "convgemm_openblas";
    case Contender::roofline_blis_tbb:
      return "roofline_blis_tbb";
    case Contender::convgemm_onednn:
      return "convgemm_onednn";
    case Contender::classic:
      return "classic";
    case Contender::classic_onednn:
      return "classic_onednn";
    case Contender::naive:
      return "naive";
    case Contender::roofline_blas:
      return "roofline_blas";
    case Contender::roofline_tbb:
      return "roofline_tbb";
    case Contender::roofline_onednn_omp:
      return "roofline_onednn_omp";
    case Contender::roofline_onednn_tbb:
      return "roofline_onednn_tbb";
    case Contender::onednn_plain:
      return "onednn_plain";
    case Contender::onednn_blocked:
      return "onednn_blocked";
    case Contender::convgemm_nhwc:
      return "convgemm_nhwc";
    case Contender::onednn_nhwc:
      return "onednn_nhwc";
    case Contender::convgemm_kept_weights:
      return "convgemm_kept_weights";
  }
  return "?";
}

std::string case_suffix(Pass pass, const std::string& layer, int64_t batch, int threads) {
  return std::string(pass_name(pass)) + "/" + layer + "/batch:" + std::to_string(batch) +
         "/threads:" + std::to_string(threads);
}

std::string case_name(const Case& c) {
  const std::string suffix = case_suffix(c.pass, c.layer.name, c.layer.shape.batch, c.threads);
  if (c.contender == Contender::convgemm) return suffix;
  return std::string(contender_name(c.contender)) + "/" + suffix;
}

std::string packed_driver_trace() {
  const Conv2dShape dense{.in_channels = 64,
                          .in_height = 8,
                          .in_width = 8,
                          .out_channels = 64,
                          .kernel_height = 3,
                          .kernel_width = 3};
  return Conv2d(dense, {.gemm_backend = GemmBackend::packed}).describe();
}

void fill_pattern(Buffer& values, uint64_t seed) {
  // A 64-bit LCG (Knuth's MMIX constants): fast enough for hundreds of megabytes, and the
  // values only need to be ordinary floats (no zeros, no denormals) for timing.
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& value : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    value = float(int64_t(state >> 40) - (int64_t(1) << 23)) / float(int64_t(1) << 23);
  }
}

Tensors& tensors_for(const Conv2dShape& shape) {
  static std::unique_ptr<Tensors> cached;
  if (cached == nullptr || !(cached->shape == shape)) {
    cached.reset();  // free the previous shape's buffers before allocating the next
    auto tensors = std::make_unique<Tensors>();
    tensors->shape = shape;
    const auto sized = [](Buffer& v, int64_t n, uint64_t seed) {
      v.resize(size_t(n));
      fill_pattern(v, seed);
    };
    sized(tensors->x, shape.input_elements(), 1);
    sized(tensors->w, shape.weight_elements(), 2);
    sized(tensors->bias, shape.bias_elements(), 3);
    sized(tensors->y, shape.output_elements(), 4);
    sized(tensors->dy, shape.output_elements(), 5);
    sized(tensors->dx, shape.input_elements(), 6);
    sized(tensors->dw, shape.weight_elements(), 7);
    sized(tensors->dbias, shape.bias_elements(), 8);
    cached = std::move(tensors);
  }
  return *cached;
}

namespace {
int g_progress_total = 0;
int g_progress_last = -1;
}  // namespace

void set_progress_total(int total) { g_progress_total = total; }

void progress_begin(int index, const std::string& what) {
  if (index == g_progress_last) return;
  g_progress_last = index;
  std::cerr << "[" << index + 1 << "/" << g_progress_total << "] " << what << " ..." << std::flush;
}

void progress_begin(const Case& c) {
  progress_begin(c.index, std::string(pass_name(c.pass)) + " " + c.layer.name + " batch " +
                              std::to_string(c.layer.shape.batch) + " threads " +
                              std::to_string(c.threads) + " " + contender_name(c.contender));
}

void set_flop_counters(benchmark::State& state, const Conv2dShape& shape, Pass pass) {
  const double flops = shape.flops(pass);
  state.counters["GFLOP/s"] =
      benchmark::Counter(1e-9 * flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = flops;
}

}  // namespace convgemm::bench
