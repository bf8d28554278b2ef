// The gradient exchange alone (issue 13): distributed::tree_allreduce, bitwise independent of the
// number of ranks, against MPI_Allreduce(MPI_SUM) on the same buffer, the speed reference that is
// not bitwise (its summation order depends on R and on the library's algorithm choice); and a
// whole gradient step with its exchange in buckets overlapped with backward, against one bucket
// exchanged after backward.
//
// Run under mpirun, every rank the same program (benchmarks/distributed/run does R = 1, 2, 4, 8):
//   mpirun -np 4 convgemm_bench_exchange
// Each benchmark runs a fixed number of iterations, so that every rank enters the same number of
// collectives (Google Benchmark's own iteration count depends on the rank's timing); rank 0
// reports. Counters, per rank and step: bytes_sent and bytes_received as tree_allreduce counts
// them, and their ratio to the parameter bytes (the bound is 2 (1 - 1/R)).
#include <benchmark/benchmark.h>
#include <convgemm/distributed/distributed.hpp>
#include <convgemm/nn/nn.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace distributed = convgemm::distributed;
namespace nn = convgemm::nn;

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

// A training step's gradient (GradientSynchronizer::compute_gradients) of a small VGG-style CNN
// on 32x32x3 images: 4.6 M parameters, 4.2 M of them in the first Dense layer, which is late in
// the model, so its bucket can travel while the three convolutions' backward runs. One chunk of
// 8 images per rank. bucket_bytes 4 MiB (the default) overlaps; 1 GiB exchanges after backward.
nn::Sequential make_vgg_style() {
  nn::Sequential model;
  int64_t channels = 3;
  for (int64_t width : {64, 128, 256}) {
    model.emplace<nn::Conv2d>(channels, width, 3, 1, 1);
    model.emplace<nn::ReLU>();
    model.emplace<nn::MaxPool2d>(2);
    channels = width;
  }
  model.emplace<nn::Flatten>();
  model.emplace<nn::Dense>(channels * 4 * 4, 1024);
  model.emplace<nn::ReLU>();
  model.emplace<nn::Dense>(1024, 10);
  model.initialize(1);
  return model;
}

void bench_step(benchmark::State& state, int64_t bucket_bytes) {
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  constexpr int64_t kChunk = 8;
  nn::Sequential model = make_vgg_style();
  distributed::GradientSynchronizer sync(model, {.global_batch = kChunk * ranks,
                                                 .chunk_size = kChunk,
                                                 .image_shape = {3, 32, 32},
                                                 .bucket_bytes = bucket_bytes});
  nn::Tensor images({sync.local_batch(), 3, 32, 32});
  std::vector<int32_t> labels(static_cast<std::size_t>(sync.local_batch()));
  for (int64_t i = 0; i < images.size(); ++i) images.data()[i] = float(i % 17) * 0.0625f - 0.5f;
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 10);
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state) sync.compute_gradients(images, labels);
  state.counters["buckets"] = double(sync.bucket_count());
  state.counters["parameters"] = double(sync.parameter_count());
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
  for (const int64_t bucket_bytes : {int64_t{4} << 20, int64_t{1} << 30}) {
    const std::string name = "step_vgg_style/bucket_bytes:" + std::to_string(bucket_bytes) + ranks;
    benchmark::RegisterBenchmark(name.c_str(), bench_step, bucket_bytes)
        ->Iterations(20)
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
