#pragma once
// What every benchmark of the suite shares: the case it times, its name, its inputs and the
// counters that the summary joins on. Each contender lives in its own file:
//   bench_convgemm.cpp  the plan on either GEMM backend (and naive:: beside it)
//   bench_classic.cpp   "before": whole-image per-element im2col + one threaded GEMM per image
//   bench_roofline.cpp  SGEMM alone, OpenBLAS or dnnl_sgemm (gemm_library.hpp)
//   bench_onednn.cpp    oneDNN convolutions, plain and blocked layouts
//   peak.cpp            the FMA probe

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "convgemm/shape.hpp"
#include "layers.hpp"

namespace convgemm::bench {

// convgemm runs on the packed driver (BLIS's micro-kernel; the OpenBLAS explicit path when the
// library was built without BLIS), convgemm_openblas and convgemm_onednn on the explicit path with
// each GEMM library; the classic composition and the roofline likewise on each library.
enum class Contender {
  convgemm,
  convgemm_openblas,
  convgemm_onednn,
  classic,
  classic_onednn,
  naive,
  roofline_blas,
  roofline_tbb,
  roofline_onednn_omp,
  roofline_onednn_tbb,
  roofline_blis_tbb,
  onednn_plain,
  onednn_blocked,
  convgemm_nhwc,  // the same layer in Layout::nhwc (packed driver; depthwise: direct kernels)
  onednn_nhwc,    // oneDNN on nhwc activations in place, its own weight layout
  // forward on the packed driver with Conv2dOptions::constant_weights (inference): the filter is
  // packed by the untimed first call and kept, as oneDNN's blocked weights are reordered once
  // outside its timed loop
  convgemm_kept_weights
};

const char* pass_name(Pass pass);
const char* contender_name(Contender contender);

// One benchmark: a layer (its batch already set), a pass, a thread count, a contender.
struct Case {
  Layer layer;
  Pass pass = Pass::forward;
  int threads = 1;
  Contender contender = Contender::convgemm;
  int index = 0;  // position in the registration order, for the progress display
};

// "forward/resnet50_3x3_64/batch:8/threads:2" for convgemm; every other contender prefixes its
// name ("roofline_tbb/forward/...") so that the summary joins siblings on the common suffix.
std::string case_suffix(Pass pass, const std::string& layer, int64_t batch, int threads);
std::string case_name(const Case& c);

// The packed driver's trace (Conv2d::describe() of a dense 3x3 layer): "packed(skx 32x12, ...".
std::string packed_driver_trace();

// Buffers aligned to a cache line, as frameworks' allocators hand tensors out: glibc's malloc
// gives large blocks 16-byte alignment, which splits every vector of channels (nhwc) across two
// cache lines for every contender that reads the caller's buffers (measured on the nhwc
// depthwise kernels: 24 against 34 GFLOP/s).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlignment); }
  bool operator==(const CacheLineAllocator&) const = default;
};
using Buffer = std::vector<float, CacheLineAllocator<float>>;

// The tensors of a shape, filled once with a deterministic pattern in [-1, 1). A one-entry
// cache: consecutive benchmarks (contenders, passes, repetitions) of one shape share them, so
// that filling hundreds of megabytes is not paid again for every run.
struct Tensors {
  Conv2dShape shape;
  Buffer x, w, bias, y, dy, dx, dw, dbias;
};
Tensors& tensors_for(const Conv2dShape& shape);
void fill_pattern(Buffer& values, uint64_t seed);

// Prints "[12/96] forward resnet50_3x3_64 batch 8 threads 2 convgemm ..." on stderr the first
// time case `index` starts (a benchmark function runs once per repetition).
void progress_begin(const Case& c);
void progress_begin(int index, const std::string& what);
void set_progress_total(int total);

// The counters every contender reports: GFLOP/s (shape.flops(pass), padding taps included)
// and the FLOPs of one iteration.
void set_flop_counters(benchmark::State& state, const Conv2dShape& shape, Pass pass);

// Contenders. Each builds everything before the timed loop, whose body is one call.
void bench_convgemm(benchmark::State& state, const Case& c);
void bench_naive(benchmark::State& state, const Case& c);
void bench_classic(benchmark::State& state, const Case& c);
void bench_roofline(benchmark::State& state, const Case& c);
bool onednn_available();
std::string onednn_version();  // "2.6.3", or "" without oneDNN
void bench_onednn(benchmark::State& state, const Case& c);
void bench_peak(benchmark::State& state, int threads);
std::string peak_isa();

}  // namespace convgemm::bench
