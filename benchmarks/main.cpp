// convgemm_bench: the benchmark suite's executable. Registers the layer table (layers.hpp), or
// one --shape, for every pass, thread count and contender, runs them with Google Benchmark and
// prints the summary (summary.hpp). benchmarks/run is the usual way in; see README.md.
#include <tbb/info.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench.hpp"
#include "convgemm/conv2d.hpp"
#include "gemm_library.hpp"
#include "layers.hpp"
#include "shape_spec.hpp"
#include "summary.hpp"

namespace convgemm::bench {
namespace {

constexpr std::string_view kUsage = R"(usage: convgemm_bench [options] [--benchmark_* flags]
  --shape=SPEC       time one convolution instead of the layer table, e.g.
                     N=8,C=64,H=56,W=56,O=64,K=3,pad=1,stride=1[,groups=G,dilation=D,KH=..,KW=..]
  --layers=A,B       only layers whose name contains A or B (e.g. resnet50,textbook)
  --batches=1,8      batch sizes of the layer table (default 1,8)
  --threads=1,2      thread counts (default 1 and all cores)
  --repetitions=R    repetitions per benchmark; the median is reported (default 3, --full 5)
  --min-time=S       minimum seconds per repetition (default 0.03, --full 0.2)
  --naive-limit=G    run naive:: on batch-1 layers of at most G GFLOP (default 1, --full all)
  --full             all of the above at their thorough settings
  --summary-dir=DIR  write summary.txt, summary.json and plot.dat there
)";

struct Options {
  std::optional<Conv2dShape> shape;
  std::vector<std::string> layer_filters;
  std::vector<int64_t> batches{1, 8};
  std::vector<int> threads;
  int repetitions = 3;
  double min_time = 0.03;
  double naive_limit_gflop = 1.0;
  std::string summary_dir;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "convgemm_bench: " << message << "\n" << kUsage;
  std::exit(2);
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> items;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    items.emplace_back(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return items;
}

int64_t positive_integer(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size() && value >= 1) return value;
  } catch (const std::exception&) {
  }
  usage_error(flag + " takes positive integers (got '" + text + "')");
}

double positive_number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size() && value > 0.0) return value;
  } catch (const std::exception&) {
  }
  usage_error(flag + " takes a positive number (got '" + text + "')");
}

// Takes our own flags out of argv, leaving Google Benchmark's (and unknown ones, which it
// reports) in place.
Options parse_options(int& argc, char** argv) {
  Options options;
  bool full = false;
  std::optional<int> repetitions;
  std::optional<double> min_time, naive_limit;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t equals = arg.find('=');
    const std::string flag = arg.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : arg.substr(equals + 1);
    const auto need_value = [&] {
      if (equals == std::string::npos || value.empty()) usage_error(flag + " needs =value");
    };
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (flag == "--shape") {
      need_value();
      try {
        options.shape = parse_shape_spec(value);
      } catch (const std::invalid_argument& error) {
        std::cerr << "convgemm_bench: " << error.what() << "\n";
        std::exit(2);
      }
    } else if (flag == "--layers") {
      need_value();
      options.layer_filters = split(value);
    } else if (flag == "--batches") {
      need_value();
      options.batches.clear();
      for (const auto& item : split(value)) options.batches.push_back(positive_integer(flag, item));
    } else if (flag == "--threads") {
      need_value();
      for (const auto& item : split(value)) {
        options.threads.push_back(int(std::min<int64_t>(positive_integer(flag, item), 1024)));
      }
    } else if (flag == "--repetitions") {
      need_value();
      repetitions = int(std::min<int64_t>(positive_integer(flag, value), 1000));
    } else if (flag == "--min-time") {
      need_value();
      min_time = positive_number(flag, value);
    } else if (flag == "--naive-limit") {
      need_value();
      naive_limit = positive_number(flag, value);
    } else if (flag == "--full") {
      full = true;
    } else if (flag == "--summary-dir") {
      need_value();
      options.summary_dir = value;
    } else {
      argv[kept++] = argv[i];
      continue;
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  if (full) {
    options.repetitions = 5;
    options.min_time = 0.2;
    options.naive_limit_gflop = std::numeric_limits<double>::infinity();
  }
  if (repetitions) options.repetitions = *repetitions;
  if (min_time) options.min_time = *min_time;
  if (naive_limit) options.naive_limit_gflop = *naive_limit;
  if (options.threads.empty()) {
    options.threads.push_back(1);
    const int all = tbb::info::default_concurrency();
    if (all > 1) options.threads.push_back(all);
  }
  return options;
}

bool selected(const Options& options, const Layer& layer) {
  if (options.layer_filters.empty()) return true;
  for (const auto& filter : options.layer_filters) {
    if (layer.name.find(filter) != std::string::npos) return true;
  }
  return false;
}

// The registration order keeps one shape's benchmarks together (the input cache holds one).
std::vector<Case> make_cases(const Options& options, std::vector<Layer> layers) {
  // Contenders that leave a library's threads spinning after their calls (OpenBLAS's for ~0.1 s,
  // THREAD_TIMEOUT; OpenMP's for a while) go last, OpenBLAS's last of all, so that they do not
  // slow a multi-threaded contender that runs next.
  std::vector<Contender> contenders{Contender::convgemm, Contender::convgemm_openblas};
  if (gemm_backend_available(GemmBackend::packed)) {
    contenders.push_back(Contender::convgemm_nhwc);
    contenders.push_back(Contender::convgemm_kept_weights);
  }
  if (gemm_backend_available(GemmBackend::onednn)) {
    contenders.push_back(Contender::convgemm_onednn);
  }
  contenders.push_back(Contender::roofline_tbb);
  if (gemm_backend_available(GemmBackend::packed))
    contenders.push_back(Contender::roofline_blis_tbb);
  if (onednn_available()) {
    for (const Contender contender :
         {Contender::roofline_onednn_tbb, Contender::onednn_plain, Contender::onednn_blocked,
          Contender::onednn_nhwc, Contender::classic_onednn, Contender::roofline_onednn_omp}) {
      contenders.push_back(contender);
    }
  }
  contenders.push_back(Contender::classic);
  contenders.push_back(Contender::roofline_blas);
  const Pass passes[] = {Pass::forward, Pass::backward_data, Pass::backward_weights};
  std::vector<Case> cases;
  for (const Layer& layer : layers) {
    const Layer single = with_batch(layer, 1);
    if (single.shape.flops(Pass::forward) <= options.naive_limit_gflop * 1e9) {
      for (const Pass pass : passes) cases.push_back({single, pass, 1, Contender::naive});
    }
    for (const int64_t batch : options.batches) {
      for (const Pass pass : passes) {
        for (const int threads : options.threads) {
          for (const Contender contender : contenders) {
            // On one thread both roofline variants are the same sequential calls: keep one.
            if (threads == 1 && (contender == Contender::roofline_blas ||
                                 contender == Contender::roofline_onednn_omp)) {
              continue;
            }
            // Kept weights change forward only (the gradients read the weights as they come).
            if (contender == Contender::convgemm_kept_weights &&
                (pass != Pass::forward ||
                 (layer.shape.groups > 1 && layer.shape.groups == layer.shape.in_channels))) {
              continue;
            }
            cases.push_back({with_batch(layer, batch), pass, threads, contender});
          }
        }
      }
    }
  }
  return cases;
}

std::string describe_selection(const Options& options, size_t layer_count) {
  // A stream rather than string operator+: GCC 12 warns falsely (-Wrestrict, PR 105329) on
  // "literal" + std::to_string(...).
  std::ostringstream text;
  if (options.shape) {
    text << "--shape " << options.shape->to_string();
  } else {
    text << layer_count << " layers, batches";
    for (const auto batch : options.batches) text << " " << batch;
  }
  text << ", threads";
  for (const int threads : options.threads) text << " " << threads;
  text << ", " << options.repetitions << " repetitions of >= " << options.min_time << " s";
  return text.str();
}

int run(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  std::vector<Layer> layers;
  if (options.shape) {
    Layer layer{options.shape->to_string(), *options.shape};
    layer.shape.batch = options.shape->batch;
    options.batches = {options.shape->batch};
    layers.push_back(layer);
  } else {
    for (const Layer& layer : network_layers()) {
      if (selected(options, layer)) layers.push_back(layer);
    }
    if (layers.empty()) usage_error("--layers matches no layer of layers.hpp");
  }
  std::vector<Case> cases = make_cases(options, layers);
  try {
    require_openblas_cblas();
  } catch (const std::runtime_error& error) {
    std::cerr << "convgemm_bench: " << error.what() << "\n";
    return 1;
  }

  // The peak probe runs first and last: on a shared machine the best of both, and of all their
  // repetitions (the "max" statistic), is the least disturbed measure of the hardware.
  const int peak_count = int(options.threads.size());
  set_progress_total(2 * peak_count + int(cases.size()));
  const auto register_peaks = [&](const char* prefix, int first_index) {
    for (int i = 0; i < peak_count; ++i) {
      const int threads = options.threads[size_t(i)];
      const std::string name = std::string(prefix) + "/fma/threads:" + std::to_string(threads);
      const int index = first_index + i;
      benchmark::RegisterBenchmark(name.c_str(),
                                   [index, name, threads](benchmark::State& state) {
                                     progress_begin(index, name);
                                     bench_peak(state, threads);
                                   })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.05)
          ->Repetitions(std::max(options.repetitions, 5))
          ->ComputeStatistics("max",
                              [](const std::vector<double>& values) {
                                return *std::max_element(values.begin(), values.end());
                              })
          ->DisplayAggregatesOnly(true);
    }
  };
  register_peaks("peak", 0);
  for (size_t i = 0; i < cases.size(); ++i) {
    Case& c = cases[i];
    c.index = peak_count + int(i);
    const auto function = [c](benchmark::State& state) {
      switch (c.contender) {
        case Contender::convgemm:
        case Contender::convgemm_openblas:
        case Contender::convgemm_onednn:
        case Contender::convgemm_nhwc:
        case Contender::convgemm_kept_weights:
          bench_convgemm(state, c);
          break;
        case Contender::classic:
        case Contender::classic_onednn:
          bench_classic(state, c);
          break;
        case Contender::naive:
          bench_naive(state, c);
          break;
        case Contender::roofline_blas:
        case Contender::roofline_tbb:
        case Contender::roofline_onednn_omp:
        case Contender::roofline_onednn_tbb:
        case Contender::roofline_blis_tbb:
          bench_roofline(state, c);
          break;
        case Contender::onednn_plain:
        case Contender::onednn_blocked:
        case Contender::onednn_nhwc:
          bench_onednn(state, c);
          break;
      }
    };
    auto* benchmark = benchmark::RegisterBenchmark(case_name(c).c_str(), function);
    benchmark->UseRealTime()->Unit(benchmark::kMillisecond);
    if (c.contender == Contender::naive) {
      // Seconds per call: one iteration, one repetition, stated in the summary.
      benchmark->Iterations(1)->Repetitions(1);
    } else {
      benchmark->MinTime(options.min_time)
          ->Repetitions(options.repetitions)
          ->DisplayAggregatesOnly(true);
    }
  }

  register_peaks("peak_end", peak_count + int(cases.size()));

  if (!options.summary_dir.empty()) std::filesystem::create_directories(options.summary_dir);
  if (!onednn_available()) {
    std::cerr << "oneDNN not found at build time: the oneDNN columns are absent\n";
  }
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  SummaryOptions summary{.directory = options.summary_dir,
                         .thread_counts = options.threads,
                         .selection = describe_selection(options, layers.size()),
                         .naive_limit_gflop = options.naive_limit_gflop,
                         .onednn = onednn_available()};
  return write_summary(cases, reporter.results(), summary) ? 0 : 1;
}

}  // namespace
}  // namespace convgemm::bench

int main(int argc, char** argv) { return convgemm::bench::run(argc, argv); }
