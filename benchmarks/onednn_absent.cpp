// Linked instead of bench_onednn.cpp when CMake does not find oneDNN: the suite then registers
// no oneDNN benchmarks and the summary says so.
#include "bench.hpp"

namespace convgemm::bench {

bool onednn_available() { return false; }
std::string onednn_version() { return ""; }
void bench_onednn(benchmark::State& state, const Case&) {
  state.SkipWithError("built without oneDNN");
}

}  // namespace convgemm::bench
