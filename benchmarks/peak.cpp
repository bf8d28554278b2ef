// The machine's FP32 peak, measured: many independent chains of fused multiply-adds, enough to
// cover the FMA latency on every FMA pipe (Zen 3: 2 pipes x 4 cycles; 12 chains leave room and
// still fit the 16 ymm registers with the two constants). Run on T threads at once for the
// all-cores figure. Uses AVX-512, else AVX2+FMA, when the CPU has them (checked at run time), else
// 4-wide GCC vector multiply and add (counted as 2 FLOPs each, like an FMA).
#include <immintrin.h>

#include <thread>
#include <vector>

#include "bench.hpp"

namespace convgemm::bench {
namespace {

constexpr int kChains = 12;
constexpr int64_t kStepsPerCall = 1 << 20;  // ~ 3 ms per thread at 100 GFLOP/s

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t steps, float seed) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(seed + float(i));
  const __m256 scale = _mm256_set1_ps(0.999999f);
  const __m256 offset = _mm256_set1_ps(1e-7f);
  for (int64_t step = 0; step < steps; ++step) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, offset);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  return lanes[0] + lanes[7];
}
constexpr double kFlopsPerStepAvx2 = 2.0 * 8 * kChains;

// AVX-512: the packed driver's skx kernel runs 16-wide FMAs, so the peak is measured on the
// widest vectors the CPU has. (Zen 4 splits them over its 256-bit pipes: the same FLOP rate as
// AVX2 there, which the measurement shows.)
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t steps, float seed) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + float(i));
  const __m512 scale = _mm512_set1_ps(0.999999f);
  const __m512 offset = _mm512_set1_ps(1e-7f);
  for (int64_t step = 0; step < steps; ++step) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, offset);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  return lanes[0] + lanes[15];
}
constexpr double kFlopsPerStepAvx512 = 2.0 * 16 * kChains;

using Vec4 = float __attribute__((vector_size(16)));
float mul_add_chains_generic(int64_t steps, float seed) {
  Vec4 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Vec4{} + (seed + float(i));
  const Vec4 scale = Vec4{} + 0.999999f, offset = Vec4{} + 1e-7f;
  for (int64_t step = 0; step < steps; ++step) {
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * scale + offset;
  }
  Vec4 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum += acc[i];
  return sum[0] + sum[3];
}
constexpr double kFlopsPerStepGeneric = 2.0 * 4 * kChains;

bool has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }

}  // namespace

std::string peak_isa() {
  if (has_avx512()) return "avx512f, 16-wide";
  return has_avx2_fma() ? "avx2+fma, 8-wide" : "generic 4-wide mul+add";
}

void bench_peak(benchmark::State& state, int threads) {
  const bool avx512 = has_avx512(), avx2 = has_avx2_fma();
  const auto kernel = [avx512, avx2](float seed) {
    if (avx512) return fma_chains_avx512(kStepsPerCall, seed);
    return avx2 ? fma_chains_avx2(kStepsPerCall, seed)
                : mul_add_chains_generic(kStepsPerCall, seed);
  };
  std::vector<float> results(static_cast<size_t>(threads));
  for (auto _ : state) {
    // Thread start-up (tens of microseconds) is small against the milliseconds of each call.
    std::vector<std::jthread> helpers;
    for (int t = 1; t < threads; ++t) {
      helpers.emplace_back([&, t] { results[size_t(t)] = kernel(float(t)); });
    }
    results[0] = kernel(0.0f);
    helpers.clear();  // joins
    benchmark::DoNotOptimize(results.data());
  }
  const double flops = double(threads) * double(kStepsPerCall) *
                       (avx512 ? kFlopsPerStepAvx512
                        : avx2 ? kFlopsPerStepAvx2
                               : kFlopsPerStepGeneric);
  state.counters["GFLOP/s"] =
      benchmark::Counter(1e-9 * flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = flops;
  state.SetLabel(peak_isa());
}

}  // namespace convgemm::bench
