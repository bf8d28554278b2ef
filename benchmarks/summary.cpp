#include "summary.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

namespace convgemm::bench {
namespace {

std::optional<Measurement> find(const std::map<std::string, Measurement>& results,
                                const std::string& name) {
  const auto found = results.find(name);
  if (found == results.end() || !found->second.error.empty()) return std::nullopt;
  return found->second;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown CPU";
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
  return text;
}

std::string fixed(double value, int decimals) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(decimals);
  out << value;
  return out.str();
}

std::string bytes_text(double bytes) {
  if (bytes >= 1024.0 * 1024.0) return fixed(bytes / (1024.0 * 1024.0), 1) + " MiB";
  if (bytes >= 1024.0) return fixed(bytes / 1024.0, 1) + " KiB";
  return fixed(bytes, 0) + " B";
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    out += ch;
  }
  return out + "\"";
}

constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();

// Missing values travel as NaN (not std::optional: GCC 12 warns falsely on its copies here).
std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

double or_missing(const std::optional<double>& value) { return value ? *value : kMissing; }

const char* short_pass(Pass pass) {
  switch (pass) {
    case Pass::forward:
      return "fwd";
    case Pass::backward_data:
      return "bwd_data";
    case Pass::backward_weights:
      return "bwd_weights";
  }
  return "?";
}

// One line of the table: a convgemm result and everything joined to it.
struct Row {
  const Case* c = nullptr;
  std::optional<Measurement> convgemm;
  std::optional<double> peak, roofline_blas, roofline_tbb, naive, onednn_plain, onednn_blocked;
  bool naive_estimated = false;  // the naive rate was measured on batch 1, not on this batch
  std::string onednn_plain_impl, onednn_blocked_impl;

  std::optional<double> roofline() const {
    if (roofline_blas && roofline_tbb) return std::max(*roofline_blas, *roofline_tbb);
    return roofline_blas ? roofline_blas : roofline_tbb;
  }
  std::optional<double> ratio(std::optional<double> other) const {
    if (!convgemm || !other || *other <= 0.0) return std::nullopt;
    return convgemm->gflops / *other;
  }
};

std::string column(std::optional<double> value, int decimals, const char* prefix = "") {
  return value ? prefix + fixed(*value, decimals) : "-";
}

std::string ratio_column(std::optional<double> value, const char* prefix = "") {
  if (!value) return "-";
  return prefix + fixed(*value, *value >= 100.0 ? 0 : (*value >= 10.0 ? 1 : 2));
}

}  // namespace

bool CollectingReporter::ReportContext(const Context& context) {
  std::cerr << "convgemm benchmarks on " << cpu_model() << ", " << context.cpu_info.num_cpus
            << " CPUs; FLOPs count the padding taps (see benchmarks/README.md)\n";
  return true;
}

void CollectingReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& run : runs) {
    const bool is_median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    const bool is_max = run.run_type == Run::RT_Aggregate && run.aggregate_name == "max";
    const bool is_single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
    if (!is_median && !is_max && !is_single && !run.error_occurred) continue;
    Measurement m;
    m.repetitions = run.repetitions;
    m.iterations = run.iterations;
    m.label = run.report_label;
    if (run.error_occurred) {
      m.error = run.error_message.empty() ? "error" : run.error_message;
    } else {
      const auto counter = [&run](const char* key) {
        const auto found = run.counters.find(key);
        return found == run.counters.end() ? 0.0 : double(found->second.value);
      };
      m.gflops = counter("GFLOP/s");
      m.workspace_bytes = counter("workspace_bytes");
      m.seconds = run.iterations > 0 ? run.real_accumulated_time / double(run.iterations) : 0.0;
    }
    if (is_max) {  // only the peak probe asks for it; kept beside the median
      results_[run.run_name.function_name + "#max"] = m;
      continue;
    }
    results_[run.run_name.function_name] = m;
    if (!m.error.empty()) {
      std::cerr << " skipped: " << m.error << "\n";
    } else {
      std::cerr << " " << fixed(m.gflops, 2) << " GFLOP/s"
                << (m.repetitions > 1 ? " (median of " + std::to_string(m.repetitions) + ")" : "")
                << "\n";
    }
  }
}

bool write_summary(const std::vector<Case>& cases,
                   const std::map<std::string, Measurement>& results,
                   const SummaryOptions& options) {
  std::vector<Row> rows;
  std::map<int, double> peaks;
  for (const int threads : options.thread_counts) {
    for (const char* prefix : {"peak/fma/threads:", "peak_end/fma/threads:"}) {
      if (const auto peak = find(results, prefix + std::to_string(threads) + "#max")) {
        peaks[threads] = std::max(peaks[threads], peak->gflops);
      }
    }
  }
  for (const Case& c : cases) {
    if (c.contender != Contender::convgemm) continue;
    Row row;
    row.c = &c;
    const std::string suffix = case_suffix(c.pass, c.layer.name, c.layer.shape.batch, c.threads);
    row.convgemm = find(results, suffix);
    if (peaks.contains(c.threads)) row.peak = peaks[c.threads];
    const auto gflops = [&](const char* contender) -> std::optional<double> {
      const auto m = find(results, std::string(contender) + "/" + suffix);
      return m ? std::optional<double>(m->gflops) : std::nullopt;
    };
    row.roofline_blas = gflops("roofline_blas");
    row.roofline_tbb = gflops("roofline_tbb");
    row.onednn_plain = gflops("onednn_plain");
    row.onednn_blocked = gflops("onednn_blocked");
    if (const auto m = find(results, "onednn_plain/" + suffix)) row.onednn_plain_impl = m->label;
    if (const auto m = find(results, "onednn_blocked/" + suffix))
      row.onednn_blocked_impl = m->label;
    if (const auto m = find(results, "naive/" + case_suffix(c.pass, c.layer.name, 1, 1))) {
      row.naive = m->gflops;
      row.naive_estimated = c.layer.shape.batch != 1;
    }
    rows.push_back(row);
  }

  std::ostringstream text;
  const std::string blas_config = openblas_get_config();
  text << "convgemm benchmarks, " << today() << ", " << cpu_model() << ", "
       << std::thread::hardware_concurrency() << " cores\n";
  text << "Libraries: " << blas_config << "; oneDNN "
       << (options.onednn ? onednn_version() : std::string("absent (oneDNN columns empty)"))
       << "\n";
  text << "Selection: " << options.selection << "\n";
  text << "FMA peak (" << peak_isa() << ", best repetition at start and end):";
  for (const auto& [threads, peak] : peaks) {
    text << " " << threads << (threads == 1 ? " thread " : " threads ") << fixed(peak, 1)
         << " GFLOP/s;";
  }
  text << "\n";
  text << "FLOPs = 2*N*O*OH*OW*(C/G)*KH*KW for every pass, padding taps included.\n"
       << "Times are medians of repetitions (real time). roofGF = SGEMM roofline: the GEMMs\n"
       << "alone, best of threaded OpenBLAS and oneTBB over single-threaded calls.\n"
       << "x naive: naive:: loops, one thread, one iteration on batch 1 ("
       << (std::isfinite(options.naive_limit_gflop)
               ? "layers up to " + fixed(options.naive_limit_gflop, 1) + " GFLOP"
               : std::string("every layer"))
       << ");\n'~' = that batch-1 rate applied to batch N. x dnnl (nchw), x dnnlB (blocked):\n"
       << "> 1 means convgemm is faster.\n\n";

  size_t name_width = 5;
  for (const Row& row : rows) name_width = std::max(name_width, row.c->layer.name.size());
  const std::string format =
      "%-" + std::to_string(name_width) + "s %-11s %2s %3s %8s %6s %7s %6s %8s %7s %7s %10s\n";
  const char* header_format = format.c_str();
  char line[512];
  std::snprintf(line, sizeof line, header_format, "layer", "pass", "N", "thr", "GFLOP/s", "%peak",
                "roofGF", "%roof", "x naive", "x dnnl", "x dnnlB", "workspace");
  text << line;
  for (const Row& row : rows) {
    const Case& c = *row.c;
    const auto percent = [&row](std::optional<double> of) -> std::optional<double> {
      const auto r = row.ratio(of);
      return r ? std::optional<double>(100.0 * *r) : std::nullopt;
    };
    std::snprintf(
        line, sizeof line, header_format, c.layer.name.c_str(), short_pass(c.pass),
        std::to_string(c.layer.shape.batch).c_str(), std::to_string(c.threads).c_str(),
        (row.convgemm ? fixed(row.convgemm->gflops, 2) : std::string("-")).c_str(),
        column(percent(row.peak), 1).c_str(), column(row.roofline(), 1).c_str(),
        column(percent(row.roofline()), 0).c_str(),
        ratio_column(row.ratio(row.naive), row.naive_estimated ? "~" : "").c_str(),
        ratio_column(row.ratio(row.onednn_plain)).c_str(),
        ratio_column(row.ratio(row.onednn_blocked)).c_str(),
        (row.convgemm ? bytes_text(row.convgemm->workspace_bytes) : std::string("-")).c_str());
    text << line;
  }
  std::cout << "\n" << text.str() << std::flush;
  if (options.directory.empty()) return true;

  bool ok = true;
  const auto open = [&](const std::string& name) {
    std::ofstream file(options.directory + "/" + name);
    if (!file) {
      std::cerr << "convgemm_bench: cannot write " << options.directory << "/" << name << "\n";
      ok = false;
    }
    return file;
  };
  if (auto file = open("summary.txt")) file << text.str();

  if (auto json = open("summary.json")) {
    json << "{\n  \"date\": " << json_string(today())
         << ",\n  \"cpu\": " << json_string(cpu_model())
         << ",\n  \"cores\": " << std::thread::hardware_concurrency()
         << ",\n  \"openblas\": " << json_string(blas_config)
         << ",\n  \"onednn\": " << (options.onednn ? json_string(onednn_version()) : "null")
         << ",\n  \"selection\": " << json_string(options.selection) << ",\n  \"flop_convention\": "
         << json_string("2*N*O*OH*OW*(C/G)*KH*KW for every pass, padding taps included")
         << ",\n  \"peak_gflops\": {";
    const char* separator = "";
    for (const auto& [threads, peak] : peaks) {
      json << separator << "\"" << threads << "\": " << json_number(peak);
      separator = ", ";
    }
    json << "},\n  \"rows\": [";
    separator = "\n";
    for (const Row& row : rows) {
      const Case& c = *row.c;
      const double conv = row.convgemm ? row.convgemm->gflops : kMissing;
      const double seconds = row.convgemm ? row.convgemm->seconds : kMissing;
      const double workspace = row.convgemm ? row.convgemm->workspace_bytes : kMissing;
      json << separator << "    {\"layer\": " << json_string(c.layer.name)
           << ", \"shape\": " << json_string(c.layer.shape.to_string())
           << ", \"pass\": " << json_string(pass_name(c.pass))
           << ", \"batch\": " << c.layer.shape.batch << ", \"threads\": " << c.threads
           << ", \"flops\": " << json_number(c.layer.shape.flops(c.pass))
           << ", \"convgemm_gflops\": " << json_number(conv)
           << ", \"convgemm_seconds\": " << json_number(seconds)
           << ", \"workspace_bytes\": " << json_number(workspace)
           << ", \"peak_gflops\": " << json_number(or_missing(row.peak))
           << ", \"roofline_blas_gflops\": " << json_number(or_missing(row.roofline_blas))
           << ", \"roofline_tbb_gflops\": " << json_number(or_missing(row.roofline_tbb))
           << ", \"naive_gflops\": " << json_number(or_missing(row.naive))
           << ", \"naive_estimated_from_batch_1\": " << (row.naive_estimated ? "true" : "false")
           << ", \"onednn_plain_gflops\": " << json_number(or_missing(row.onednn_plain))
           << ", \"onednn_plain_impl\": " << json_string(row.onednn_plain_impl)
           << ", \"onednn_blocked_gflops\": " << json_number(or_missing(row.onednn_blocked))
           << ", \"onednn_blocked_impl\": " << json_string(row.onednn_blocked_impl) << "}";
      separator = ",\n";
    }
    json << "\n  ]\n}\n";
  }

  // plot.dat: the largest batch at the largest thread count, one block per pass.
  if (auto plot = open("plot.dat")) {
    int64_t batch = 0;
    for (const Row& row : rows) batch = std::max(batch, row.c->layer.shape.batch);
    const int threads = options.thread_counts.empty() ? 1 : options.thread_counts.back();
    plot << "# batch " << batch << ", threads " << threads
         << "; GFLOP/s: layer convgemm naive roofline onednn_plain onednn_blocked\n";
    for (const Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weights}) {
      plot << "# " << pass_name(pass) << "\n";
      for (const Row& row : rows) {
        if (row.c->pass != pass || row.c->threads != threads || row.c->layer.shape.batch != batch) {
          continue;
        }
        const auto value = [](double v) { return std::isfinite(v) ? fixed(v, 3) : "NaN"; };
        plot << json_string(row.c->layer.name) << " "
             << value(row.convgemm ? row.convgemm->gflops : kMissing) << " "
             << value(or_missing(row.naive)) << " " << value(or_missing(row.roofline())) << " "
             << value(or_missing(row.onednn_plain)) << " " << value(or_missing(row.onednn_blocked))
             << "\n";
      }
      plot << "\n\n";
    }
  }
  return ok;
}

}  // namespace convgemm::bench
