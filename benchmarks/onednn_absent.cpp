// Linked instead of bench_onednn.cpp when CMake does not find oneDNN: the suite then registers
// no oneDNN benchmarks and the summary says so.
#include <stdexcept>

#include "bench.hpp"
#include "gemm_library.hpp"

namespace convgemm::bench {

bool onednn_available() { return false; }
std::string onednn_version() { return ""; }
void bench_onednn(benchmark::State& state, const Case&) {
  state.SkipWithError("built without oneDNN");
}
void onednn_sgemm(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                  int64_t, float, float*, int64_t) {
  throw std::logic_error("convgemm_bench: built without oneDNN, no dnnl_sgemm");
}
void onednn_set_threads(int) {
  throw std::logic_error("convgemm_bench: built without oneDNN, no OpenMP threads to set");
}

}  // namespace convgemm::bench
