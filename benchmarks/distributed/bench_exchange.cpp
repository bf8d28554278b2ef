// The gradient exchange alone (issue 13): distributed::tree_allreduce, bitwise independent of the
// number of ranks, against MPI_Allreduce(MPI_SUM) on the same buffer, the speed reference that is
// not bitwise (its summation order depends on R and on the library's algorithm choice).
//
// Run under mpirun, every rank the same program (benchmarks/distributed/run does R = 1, 2, 4, 8):
//   mpirun -np 4 convgemm_bench_exchange
// Each benchmark runs a fixed number of iterations, so that every rank enters the same number of
// collectives (Google Benchmark's own iteration count depends on the rank's timing); rank 0
// reports. Counters, per rank and step: bytes_sent and bytes_received as tree_allreduce counts
// them, and their ratio to the parameter bytes (the bound is 2 (1 - 1/R)).
#include <benchmark/benchmark.h>
#include <convgemm/distributed/distributed.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace distributed = convgemm::distributed;

namespace {

void fill(std::vector<float>& values, int rank) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = float(int64_t(i % 1021) - 510) * 0x1p-10f + float(rank);
  }
}

void bench_tree(benchmark::State& state, int64_t parameters) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<float> values(static_cast<std::size_t>(parameters));
  fill(values, rank);
  distributed::ExchangeTraffic last;
  MPI_Barrier(MPI_COMM_WORLD);
  // check_sizes off: the synchroniser's step() skips it too (sizes are checked once).
  for (auto _ : state) {
    last = distributed::tree_allreduce(std::span<float>(values), MPI_COMM_WORLD,
                                       {.check_sizes = false});
  }
  const double bytes = double(parameters) * sizeof(float);
  state.counters["bytes_sent"] = double(last.bytes_sent);
  state.counters["bytes_received"] = double(last.bytes_received);
  state.counters["sent/param_bytes"] = double(last.bytes_sent) / bytes;
}

void bench_allreduce(benchmark::State& state, int64_t parameters) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<float> values(static_cast<std::size_t>(parameters));
  fill(values, rank);
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state) {
    MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
  }
}

class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  distributed::Environment mpi(argc, argv);
  benchmark::Initialize(&argc, argv);
  const std::string ranks = "/ranks:" + std::to_string(mpi.ranks());
  struct Size {
    const char* name;
    int64_t parameters;
    int64_t iterations;
  };
  for (const Size& size : {Size{"1M", 1'000'000, 40}, Size{"25M", 25'000'000, 6}}) {
    const std::string suffix = std::string("/params:") + size.name + ranks;
    benchmark::RegisterBenchmark(("tree_allreduce" + suffix).c_str(), bench_tree, size.parameters)
        ->Iterations(size.iterations)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("MPI_Allreduce" + suffix).c_str(), bench_allreduce,
                                 size.parameters)
        ->Iterations(size.iterations)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  if (mpi.rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  return 0;
}
