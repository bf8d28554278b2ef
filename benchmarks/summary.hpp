#pragma once
// The suite's console: a progress display while the benchmarks run, then the summary that joins
// every convgemm result with its siblings (same "pass/layer/batch:N/threads:T" suffix):
// summary.txt (the table), summary.json, plot.dat (read by plot.gp).

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

#include "bench.hpp"

namespace convgemm::bench {

// One benchmark's result: the median over repetitions (or the single run without repetitions).
struct Measurement {
  double gflops = 0.0;
  double seconds = 0.0;  // real time of one iteration
  double workspace_bytes = 0.0;
  double threads_used = 0.0;  // convgemm's worker slots
  int64_t repetitions = 1;
  int64_t iterations = 0;
  std::string label;
  std::string error;  // non-empty: the benchmark was skipped
};

// The display reporter: ends each progress line with the median, keeps every median by name.
class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  const std::map<std::string, Measurement>& results() const { return results_; }

 private:
  std::map<std::string, Measurement> results_;
};

struct SummaryOptions {
  std::string directory;           // where summary.txt, summary.json, plot.dat go ("" = none)
  std::vector<int> thread_counts;  // the thread counts that were run (the plot uses the largest)
  std::string selection;           // one line: what was run
  double naive_limit_gflop = 0.0;  // naive ran on batch-1 layers up to this many GFLOP
  bool onednn = false;
};

// Prints the table to stdout and writes the files. Returns false if a file could not be written.
bool write_summary(const std::vector<Case>& cases,
                   const std::map<std::string, Measurement>& results,
                   const SummaryOptions& options);

}  // namespace convgemm::bench
