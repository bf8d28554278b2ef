#include "summary.hpp"
#include "convgemm/conv2d.hpp"

#include "gemm_library.hpp"

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

// The contenders of one GEMM library: convgemm on that backend, the classic composition
// ("before") and the two ways of timing the library's roofline.
struct BackendContenders {
  const char* title;
  Contender convgemm, before, roofline_sequential, roofline_tbb;
};
constexpr BackendContenders kBackends[] = {
    {"packed driver (BLIS kernel)", Contender::convgemm, Contender::classic,
     Contender::roofline_blis_tbb, Contender::roofline_blis_tbb},
    {"explicit, OpenBLAS GEMM", Contender::convgemm_openblas, Contender::classic,
     Contender::roofline_blas, Contender::roofline_tbb},
    {"oneDNN GEMM (dnnl_sgemm)", Contender::convgemm_onednn, Contender::classic_onednn,
     Contender::roofline_onednn_omp, Contender::roofline_onednn_tbb}};
constexpr int kBackendCount = 3;

struct BackendResults {
  std::optional<Measurement> convgemm;
  std::optional<double> before, roofline_sequential, roofline_tbb;

  std::optional<double> gflops() const {
    return convgemm ? std::optional<double>(convgemm->gflops) : std::nullopt;
  }
  std::optional<double> roofline() const {
    if (roofline_sequential && roofline_tbb) return std::max(*roofline_sequential, *roofline_tbb);
    return roofline_sequential ? roofline_sequential : roofline_tbb;
  }
};

std::optional<double> quotient(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b <= 0.0) return std::nullopt;
  return *a / *b;
}

// One line of the table: a case, convgemm on each backend and everything joined to it.
struct Row {
  const Case* c = nullptr;
  BackendResults backend[kBackendCount];
  std::optional<double> peak, naive, onednn_plain, onednn_blocked;
  std::optional<double> nhwc, onednn_nhwc;  // the same layer in Layout::nhwc
  std::optional<double> kept_weights;       // forward with constant_weights (packed driver)
  bool naive_estimated = false;  // the naive rate was measured on batch 1, not on this batch
  std::string onednn_plain_impl, onednn_blocked_impl;

  std::optional<double> gflops(int b) const { return backend[b].gflops(); }
  std::optional<double> ratio(int b, std::optional<double> other) const {
    return quotient(gflops(b), other);
  }
  bool depthwise() const {
    const Conv2dShape& s = c->layer.shape;
    return s.groups > 1 && s.groups == s.in_channels;
  }
  std::optional<double> workspace_per_thread() const {
    const auto& m = backend[0].convgemm;
    if (!m) return std::nullopt;
    return m->workspace_bytes / std::max(1.0, m->threads_used);
  }
};

// Built with += rather than operator+ on a literal: GCC 12 warns falsely there (-Wrestrict).
std::string column(std::optional<double> value, int decimals, const char* prefix = "") {
  if (!value) return "-";
  std::string text = prefix;
  text += fixed(*value, decimals);
  return text;
}

std::string ratio_column(std::optional<double> value, const char* prefix = "") {
  if (!value) return "-";
  return column(value, *value >= 100.0 ? 0 : (*value >= 10.0 ? 1 : 2), prefix);
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
      m.threads_used = counter("threads_used");
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

namespace {

std::vector<Row> join_rows(const std::vector<Case>& cases,
                           const std::map<std::string, Measurement>& results,
                           const std::map<int, double>& peaks) {
  std::vector<Row> rows;
  for (const Case& c : cases) {
    if (c.contender != Contender::convgemm) continue;
    Row row;
    row.c = &c;
    const std::string suffix = case_suffix(c.pass, c.layer.name, c.layer.shape.batch, c.threads);
    const auto measurement = [&](Contender contender) {
      return find(results, contender == Contender::convgemm
                               ? suffix
                               : std::string(contender_name(contender)) + "/" + suffix);
    };
    const auto gflops = [&](Contender contender) -> std::optional<double> {
      const auto m = measurement(contender);
      return m ? std::optional<double>(m->gflops) : std::nullopt;
    };
    for (int b = 0; b < kBackendCount; ++b) {
      row.backend[b].convgemm = measurement(kBackends[b].convgemm);
      row.backend[b].before = gflops(kBackends[b].before);
      row.backend[b].roofline_sequential = gflops(kBackends[b].roofline_sequential);
      row.backend[b].roofline_tbb = gflops(kBackends[b].roofline_tbb);
    }
    if (const auto peak = peaks.find(c.threads); peak != peaks.end()) row.peak = peak->second;
    row.onednn_plain = gflops(Contender::onednn_plain);
    row.onednn_blocked = gflops(Contender::onednn_blocked);
    row.nhwc = gflops(Contender::convgemm_nhwc);
    row.onednn_nhwc = gflops(Contender::onednn_nhwc);
    row.kept_weights = gflops(Contender::convgemm_kept_weights);
    if (const auto m = measurement(Contender::onednn_plain)) row.onednn_plain_impl = m->label;
    if (const auto m = measurement(Contender::onednn_blocked)) row.onednn_blocked_impl = m->label;
    if (const auto m = find(results, "naive/" + case_suffix(c.pass, c.layer.name, 1, 1))) {
      row.naive = m->gflops;
      row.naive_estimated = c.layer.shape.batch != 1;
    }
    rows.push_back(row);
  }
  return rows;
}

std::string percent_column(std::optional<double> ratio) {
  return ratio ? fixed(100.0 * *ratio, 0) : "-";
}

// The per-case table: one line per (layer, pass, batch, threads), a group of columns per backend.
std::string case_table(const std::vector<Row>& rows) {
  size_t name_width = 5;
  for (const Row& row : rows) name_width = std::max(name_width, row.c->layer.name.size());
  const std::string lead = "%-" + std::to_string(name_width) + "s %-11s %2s %3s";
  const std::string group = " | %7s %7s %5s %5s %6s %6s";
  const std::string format = lead + group + group + group + " | %7s %10s\n";
  std::ostringstream text;
  char line[512];
  std::snprintf(line, sizeof line,
                ("%-" + std::to_string(name_width + 19) + "s | %-45s | %-45s | %-45s |\n").c_str(),
                "", kBackends[0].title, kBackends[1].title, kBackends[2].title);
  text << line;
  std::snprintf(line, sizeof line, format.c_str(), "layer", "pass", "N", "thr", "before", "GFLOP/s",
                "%peak", "%roof", "x dnnl", "xdnnlB", "before", "GFLOP/s", "%peak", "%roof",
                "x dnnl", "xdnnlB", "before", "GFLOP/s", "%peak", "%roof", "x dnnl", "xdnnlB",
                "x naive", "ws/thread");
  text << line;
  for (const Row& row : rows) {
    const Case& c = *row.c;
    std::string cells[kBackendCount][6];
    for (int b = 0; b < kBackendCount; ++b) {
      const BackendResults& r = row.backend[b];
      cells[b][0] = column(r.before, 1);
      cells[b][1] = column(r.gflops(), 2);
      cells[b][2] = percent_column(row.ratio(b, row.peak));
      cells[b][3] = percent_column(row.ratio(b, r.roofline()));
      cells[b][4] = ratio_column(row.ratio(b, row.onednn_plain));
      cells[b][5] = ratio_column(row.ratio(b, row.onednn_blocked));
    }
    const auto workspace = row.workspace_per_thread();
    std::snprintf(line, sizeof line, format.c_str(), c.layer.name.c_str(), short_pass(c.pass),
                  std::to_string(c.layer.shape.batch).c_str(), std::to_string(c.threads).c_str(),
                  cells[0][0].c_str(), cells[0][1].c_str(), cells[0][2].c_str(),
                  cells[0][3].c_str(), cells[0][4].c_str(), cells[0][5].c_str(),
                  cells[1][0].c_str(), cells[1][1].c_str(), cells[1][2].c_str(),
                  cells[1][3].c_str(), cells[1][4].c_str(), cells[1][5].c_str(),
                  cells[2][0].c_str(), cells[2][1].c_str(), cells[2][2].c_str(),
                  cells[2][3].c_str(), cells[2][4].c_str(), cells[2][5].c_str(),
                  ratio_column(row.ratio(0, row.naive), row.naive_estimated ? "~" : "").c_str(),
                  workspace ? bytes_text(*workspace).c_str() : "-");
    text << line;
  }
  return text.str();
}

// Geometric mean of value(row) over the rows that pass `keep` and have a value.
template <class Keep, class Value>
std::optional<double> geomean(const std::vector<Row>& rows, Keep keep, Value value) {
  double log_sum = 0.0;
  int count = 0;
  for (const Row& row : rows) {
    if (!keep(row)) continue;
    if (const std::optional<double> v = value(row); v && *v > 0.0) {
      log_sum += std::log(*v);
      ++count;
    }
  }
  if (count == 0) return std::nullopt;
  return std::exp(log_sum / count);
}

constexpr Pass kPasses[] = {Pass::forward, Pass::backward_data, Pass::backward_weights};

// The dense layers' (every layer but the depthwise ones) geometric means per backend, pass and
// thread count: the numbers the targets are stated in.
struct DenseMeans {
  std::optional<double> before, gflops, speedup, peak, roofline, onednn_plain, onednn_blocked;
};

DenseMeans dense_means(const std::vector<Row>& rows, int b, Pass pass, int threads) {
  const auto keep = [&](const Row& row) {
    return !row.depthwise() && row.c->pass == pass && row.c->threads == threads;
  };
  DenseMeans m;
  m.before = geomean(rows, keep, [&](const Row& r) { return r.backend[b].before; });
  m.gflops = geomean(rows, keep, [&](const Row& r) { return r.gflops(b); });
  m.speedup = geomean(rows, keep, [&](const Row& r) { return r.ratio(b, r.backend[b].before); });
  m.peak = geomean(rows, keep, [&](const Row& r) { return r.ratio(b, r.peak); });
  m.roofline =
      geomean(rows, keep, [&](const Row& r) { return r.ratio(b, r.backend[b].roofline()); });
  m.onednn_plain = geomean(rows, keep, [&](const Row& r) { return r.ratio(b, r.onednn_plain); });
  m.onednn_blocked =
      geomean(rows, keep, [&](const Row& r) { return r.ratio(b, r.onednn_blocked); });
  return m;
}

std::string dense_table(const std::vector<Row>& rows, const std::vector<int>& thread_counts) {
  std::ostringstream text;
  text << "Dense layers (all but depthwise), geometric means over layers and batches:\n";
  const char* format = "%-25s %-11s %3s %8s %8s %8s %6s %7s %7s %7s\n";
  char line[256];
  std::snprintf(line, sizeof line, format, "GEMM backend", "pass", "thr", "before", "GFLOP/s",
                "x before", "%peak", "x roof", "x dnnl", "x dnnlB");
  text << line;
  for (int b = 0; b < kBackendCount; ++b) {
    for (const Pass pass : kPasses) {
      for (const int threads : thread_counts) {
        const DenseMeans m = dense_means(rows, b, pass, threads);
        if (!m.gflops) continue;
        std::snprintf(line, sizeof line, format, kBackends[b].title, short_pass(pass),
                      std::to_string(threads).c_str(), column(m.before, 1).c_str(),
                      column(m.gflops, 1).c_str(), ratio_column(m.speedup).c_str(),
                      percent_column(m.peak).c_str(), ratio_column(m.roofline).c_str(),
                      ratio_column(m.onednn_plain).c_str(), ratio_column(m.onednn_blocked).c_str());
        text << line;
      }
    }
  }
  return text.str();
}

// Channels-last: convgemm on the layer in nhwc (the packed driver; depthwise layers on their
// direct kernels), against its packed nchw path and the three oneDNN layouts, per case, then the
// geometric means over dense and depthwise layers.
std::string nhwc_table(const std::vector<Row>& rows, const std::vector<int>& thread_counts) {
  size_t name_width = 5;
  for (const Row& row : rows) name_width = std::max(name_width, row.c->layer.name.size());
  const std::string format =
      "%-" + std::to_string(name_width) + "s %-11s %2s %3s | %8s %6s %8s %8s %8s %8s\n";
  std::ostringstream text;
  text << "Channels-last (Layout::nhwc; depthwise on its direct kernels): x = nhwc GFLOP/s over "
          "the other's\n";
  char line[512];
  std::snprintf(line, sizeof line, format.c_str(), "layer", "pass", "N", "thr", "GFLOP/s", "%peak",
                "x nchw", "x dnnl", "x dnnlB", "x dnnlC");
  text << line;
  for (const Row& row : rows) {
    if (!row.nhwc) continue;
    const Case& c = *row.c;
    std::snprintf(line, sizeof line, format.c_str(), c.layer.name.c_str(), short_pass(c.pass),
                  std::to_string(c.layer.shape.batch).c_str(), std::to_string(c.threads).c_str(),
                  column(row.nhwc, 2).c_str(), percent_column(quotient(row.nhwc, row.peak)).c_str(),
                  ratio_column(quotient(row.nhwc, row.gflops(0))).c_str(),
                  ratio_column(quotient(row.nhwc, row.onednn_nhwc)).c_str(),
                  ratio_column(quotient(row.nhwc, row.onednn_blocked)).c_str(),
                  ratio_column(quotient(row.nhwc, row.onednn_plain)).c_str());
    text << line;
  }
  text << "(x nchw: convgemm's packed nchw; x dnnl: oneDNN nhwc; x dnnlB: oneDNN blocked;\n"
       << "x dnnlC: oneDNN nchw)\nGeometric means:\n";
  const std::string mean_format = "%-10s %-11s %3s | %8s %6s %8s %8s %8s %8s\n";
  std::snprintf(line, sizeof line, mean_format.c_str(), "layers", "pass", "thr", "GFLOP/s", "%peak",
                "x nchw", "x dnnl", "x dnnlB", "x dnnlC");
  text << line;
  for (const bool depthwise : {false, true}) {
    for (const Pass pass : kPasses) {
      for (const int threads : thread_counts) {
        const auto keep = [&](const Row& r) {
          return r.depthwise() == depthwise && r.c->pass == pass && r.c->threads == threads;
        };
        const auto mean = [&](auto value) { return geomean(rows, keep, value); };
        const auto nhwc_over = [&](std::optional<double> Row::*other) {
          return mean([other](const Row& r) { return quotient(r.nhwc, r.*other); });
        };
        const auto gflops = mean([](const Row& r) { return r.nhwc; });
        if (!gflops) continue;
        std::snprintf(
            line, sizeof line, mean_format.c_str(), depthwise ? "depthwise" : "dense",
            short_pass(pass), std::to_string(threads).c_str(), column(gflops, 1).c_str(),
            percent_column(nhwc_over(&Row::peak)).c_str(),
            ratio_column(mean([](const Row& r) { return quotient(r.nhwc, r.gflops(0)); })).c_str(),
            ratio_column(nhwc_over(&Row::onednn_nhwc)).c_str(),
            ratio_column(nhwc_over(&Row::onednn_blocked)).c_str(),
            ratio_column(nhwc_over(&Row::onednn_plain)).c_str());
        text << line;
      }
    }
  }
  return text.str();
}

// One measured value of a target, and the value it must reach (at least, or at most).
struct Item {
  std::string label;
  std::optional<double> value;
  double threshold;
};

// "met" or "MISSED" (or "n/a" with nothing measured), the target, and every item with its margin.
std::string verdict(const std::string& target, const std::vector<Item>& items, bool at_least) {
  bool measured = false, met = true;
  std::string details;
  for (const Item& item : items) {
    if (!details.empty()) details += "; ";
    details += item.label;
    details += ' ';
    if (!item.value) {
      details += '-';
      continue;
    }
    measured = true;
    const double margin = at_least ? *item.value - item.threshold : item.threshold - *item.value;
    met = met && margin >= 0.0;
    details += fixed(*item.value, 2);
    if (margin < 0.0) {
      details += " (short by ";
      details += fixed(-margin, -margin < 0.01 ? 3 : 2);
      details += ')';
    }
  }
  std::string text = measured ? (met ? "  met     " : "  MISSED  ") : "  n/a     ";
  text += target;
  text += "\n            ";
  text += details;
  text += '\n';
  return text;
}

std::string thread_label(int threads) { return std::to_string(threads) + "T"; }

// The performance targets of the packed-driver issue, each with what this run measured
// (backend 0 is the packed driver, backend 1 the explicit path on OpenBLAS).
std::string targets(const std::vector<Row>& rows, const std::vector<int>& thread_counts,
                    const std::map<int, double>& peaks) {
  std::ostringstream text;
  text << "Targets (dense = geometric mean over the dense layers; T = threads):\n";
  const int most = thread_counts.empty() ? 1 : thread_counts.back();
  const auto per_threads = [&](int b, Pass pass, auto metric, auto threshold) {
    std::vector<Item> items;
    for (const int threads : thread_counts) {
      items.push_back(
          {thread_label(threads), metric(dense_means(rows, b, pass, threads)), threshold(threads)});
    }
    return items;
  };
  const auto fixed_threshold = [](double t) { return [t](int) { return t; }; };
  const auto blocked = [](const DenseMeans& m) { return m.onednn_blocked; };
  // The packed driver against the explicit OpenBLAS path, layer by layer, then the mean.
  const auto over_explicit = [&](Pass pass, double threshold) {
    std::vector<Item> items;
    for (const int threads : thread_counts) {
      const auto keep = [&](const Row& r) {
        return !r.depthwise() && r.c->pass == pass && r.c->threads == threads;
      };
      items.push_back({thread_label(threads),
                       geomean(rows, keep, [](const Row& r) { return r.ratio(0, r.gflops(1)); }),
                       threshold});
    }
    return items;
  };
  const std::string packed = kBackends[0].title;
  text << verdict(
      "fwd, " + packed + ": dense x oneDNN blocked >= 0.85 (1T), 0.80 (more)",
      per_threads(0, Pass::forward, blocked, [](int t) { return t == 1 ? 0.85 : 0.80; }), true);
  {
    // The same target for inference: the filter packed once and kept, as oneDNN's blocked
    // weights are reordered once before its timed loop.
    std::vector<Item> items;
    for (const int threads : thread_counts) {
      const auto keep = [&](const Row& r) {
        return !r.depthwise() && r.c->pass == Pass::forward && r.c->threads == threads;
      };
      items.push_back(
          {thread_label(threads),
           geomean(rows, keep,
                   [](const Row& r) { return quotient(r.kept_weights, r.onednn_blocked); }),
           threads == 1 ? 0.85 : 0.80});
    }
    text << verdict("fwd, " + packed +
                        " with kept weights (constant_weights): dense x oneDNN blocked >= 0.85 "
                        "(1T), 0.80 (more)",
                    items, true);
  }
  text << verdict("fwd, " + packed + ": dense x the explicit OpenBLAS path >= 1.15",
                  over_explicit(Pass::forward, 1.15), true);
  {
    std::vector<Item> one_thread;
    const DenseMeans m = dense_means(rows, 0, Pass::forward, 1);
    one_thread.push_back({"1T", m.peak, 0.75});
    text << verdict("fwd, " + packed + ": dense fraction of the FMA peak >= 0.75 (1T)", one_thread,
                    true);
  }
  text << verdict("bwd_data, " + packed + ": dense x oneDNN blocked >= 1.0",
                  per_threads(0, Pass::backward_data, blocked, fixed_threshold(1.0)), true);
  text << verdict("bwd_weights, " + packed + ": dense x oneDNN blocked >= 0.8",
                  per_threads(0, Pass::backward_weights, blocked, fixed_threshold(0.8)), true);
  for (const Pass pass : {Pass::backward_data, Pass::backward_weights}) {
    text << verdict(std::string(short_pass(pass)) + ", " + packed +
                        ": dense x the explicit OpenBLAS path >= 1.1",
                    over_explicit(pass, 1.1), true);
  }

  // Worst row of a selection, labelled with its layer, batch and threads.
  const auto worst = [&](auto keep, auto value, bool at_least) -> std::optional<Item> {
    std::optional<Item> found;
    for (const Row& row : rows) {
      if (!keep(row)) continue;
      const std::optional<double> v = value(row);
      if (!v) continue;
      if (!found || (at_least ? *v < *found->value : *v > *found->value)) {
        found = Item{row.c->layer.name + " N" + std::to_string(row.c->layer.shape.batch) + " " +
                         thread_label(row.c->threads),
                     v, 0.0};
      }
    }
    return found;
  };
  const auto with_threshold = [](std::optional<Item> item, double threshold) {
    if (!item) return std::vector<Item>{{"nothing measured", std::nullopt, threshold}};
    item->threshold = threshold;
    return std::vector<Item>{*item};
  };

  // Batch 1: the most threads against one thread, layer by layer; beside it what the machine
  // itself gave in this run (a shared machine may not give a second core in full).
  if (peaks.contains(1) && peaks.contains(most) && most > 1) {
    text << "  (the FMA probe itself: " << thread_label(most) << " = "
         << fixed(peaks.at(most) / peaks.at(1), 2) << "x 1T in this run)\n";
  }
  for (const Pass pass : kPasses) {
    if (most <= 1) break;
    std::vector<double> speedups;
    std::optional<Item> slowest;
    for (const Row& many : rows) {
      if (many.depthwise() || many.c->pass != pass || many.c->threads != most ||
          many.c->layer.shape.batch != 1) {
        continue;
      }
      for (const Row& one : rows) {
        if (one.c->pass != pass || one.c->threads != 1 || one.c->layer.shape.batch != 1 ||
            one.c->layer.name != many.c->layer.name) {
          continue;
        }
        const auto speedup = quotient(many.gflops(0), one.gflops(0));
        if (!speedup) continue;
        speedups.push_back(*speedup);
        if (!slowest || *speedup < *slowest->value) {
          slowest = Item{"worst " + many.c->layer.name, speedup, 1.7};
        }
      }
    }
    std::vector<Item> items;
    if (!speedups.empty()) {
      std::sort(speedups.begin(), speedups.end());
      const std::size_t mid = speedups.size() / 2;
      const double median =
          speedups.size() % 2 == 1 ? speedups[mid] : 0.5 * (speedups[mid - 1] + speedups[mid]);
      items.push_back({"median", median, 1.7});
      slowest->threshold = 0.0;  // reported, not judged
      items.push_back(*slowest);
    }
    text << verdict(std::string(short_pass(pass)) + ", " + packed + ", batch 1: " +
                        thread_label(most) + " >= 1.7x 1T (median over the dense layers)",
                    items, true);
  }

  for (const Pass pass : kPasses) {
    const auto depthwise = [&](const Row& r) { return r.depthwise() && r.c->pass == pass; };
    const struct {
      const char* name;
      std::optional<double> Row::*peer;
      double threshold;
    } peers[] = {{"blocked", &Row::onednn_blocked, 1.0}, {"nchw", &Row::onednn_plain, 10.0}};
    for (const auto& peer : peers) {
      const auto ratio = [&](const Row& r) { return r.ratio(0, r.*peer.peer); };
      text << verdict(std::string(short_pass(pass)) + ", depthwise: x oneDNN " + peer.name +
                          " >= " + fixed(peer.threshold, 1) + " (worst)",
                      with_threshold(worst(depthwise, ratio, true), peer.threshold), true);
    }
  }
  // The channels-last issue's targets (nhwc rows exist only when the packed driver is built).
  for (const Pass pass : kPasses) {
    const auto depthwise = [&](const Row& r) {
      return r.depthwise() && r.c->pass == pass && r.nhwc;
    };
    const struct {
      const char* name;
      std::optional<double> Row::*peer;
      double threshold;
    } peers[] = {{"blocked", &Row::onednn_blocked, 1.0}, {"nchw", &Row::onednn_plain, 10.0}};
    for (const auto& peer : peers) {
      const auto ratio = [&](const Row& r) { return quotient(r.nhwc, r.*peer.peer); };
      text << verdict(std::string(short_pass(pass)) + ", depthwise nhwc: x oneDNN " + peer.name +
                          " >= " + fixed(peer.threshold, 1) + " (worst)",
                      with_threshold(worst(depthwise, ratio, true), peer.threshold), true);
    }
  }
  {
    const struct {
      const char* name;
      std::optional<double> (*ratio)(const Row&);
    } peers[] = {
        {"convgemm's packed nchw", [](const Row& r) { return quotient(r.nhwc, r.gflops(0)); }},
        {"oneDNN nhwc", [](const Row& r) { return quotient(r.nhwc, r.onednn_nhwc); }}};
    for (const auto& peer : peers) {
      std::vector<Item> items;
      for (const int threads : thread_counts) {
        const auto keep = [&](const Row& r) {
          return !r.depthwise() && r.c->pass == Pass::forward && r.c->threads == threads;
        };
        items.push_back({thread_label(threads), geomean(rows, keep, peer.ratio), 1.0});
      }
      text << verdict(std::string("fwd, dense nhwc: x ") + peer.name + " >= 1.0", items, true);
    }
  }
  const auto all = [](const Row&) { return true; };
  const auto mebibytes = [](const Row& r) -> std::optional<double> {
    const auto bytes = r.workspace_per_thread();
    return bytes ? std::optional<double>(*bytes / (1024.0 * 1024.0)) : std::nullopt;
  };
  text << verdict("default workspace <= 2 MiB per thread on every layer (largest, MiB)",
                  with_threshold(worst(all, mebibytes, false), 2.0), false);
  return text.str();
}

}  // namespace

bool write_summary(const std::vector<Case>& cases,
                   const std::map<std::string, Measurement>& results,
                   const SummaryOptions& options) {
  std::map<int, double> peaks;
  for (const int threads : options.thread_counts) {
    for (const char* prefix : {"peak/fma/threads:", "peak_end/fma/threads:"}) {
      if (const auto peak = find(results, prefix + std::to_string(threads) + "#max")) {
        peaks[threads] = std::max(peaks[threads], peak->gflops);
      }
    }
  }
  const std::vector<Row> rows = join_rows(cases, results, peaks);

  std::ostringstream text;
  const std::string blas_config = openblas_get_config();
  text << "convgemm benchmarks, " << today() << ", " << cpu_model() << ", "
       << std::thread::hardware_concurrency() << " cores\n";
  text << "Libraries: " << blas_config << "; oneDNN "
       << (options.onednn ? onednn_version() : std::string("absent (oneDNN columns empty)"))
       << "\n";
  if (gemm_backend_available(GemmBackend::packed)) {
    text << "Packed driver: " << packed_driver_trace()
         << "; its %roof is against BLIS's own SGEMM (serial, configuration "
         << blis_configuration() << ") over oneTBB workers\n";
  }
  text << "Selection: " << options.selection << "\n";
  text << "FMA peak (" << peak_isa() << ", best repetition at start and end):";
  for (const auto& [threads, peak] : peaks) {
    text << " " << threads << (threads == 1 ? " thread " : " threads ") << fixed(peak, 1)
         << " GFLOP/s;";
  }
  text << "\n";
  text
      << "FLOPs = 2*N*O*OH*OW*(C/G)*KH*KW for every pass, padding taps included. Times are\n"
      << "medians of repetitions (real time). Per GEMM backend: before = the classic composition\n"
      << "(whole-image per-element im2col, one GEMM per image, the library threaded), GFLOP/s =\n"
      << "convgemm on that backend, %roof = against that library's SGEMM roofline (the GEMMs\n"
      << "alone, best of threaded library and oneTBB over single-threaded calls). x dnnl (nchw),\n"
      << "xdnnlB (blocked): > 1 means convgemm is faster. x naive: against naive:: on one thread,\n"
      << "batch 1 ("
      << (std::isfinite(options.naive_limit_gflop)
              ? "layers up to " + fixed(options.naive_limit_gflop, 1) + " GFLOP"
              : std::string("every layer"))
      << "; '~' = that batch-1 rate applied to batch N).\n\n";
  text << case_table(rows) << "\n"
       << dense_table(rows, options.thread_counts) << "\n"
       << nhwc_table(rows, options.thread_counts) << "\n"
       << targets(rows, options.thread_counts, peaks);
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
    const char* keys[] = {"packed", "openblas", "onednn"};
    for (const Row& row : rows) {
      const Case& c = *row.c;
      json << separator << "    {\"layer\": " << json_string(c.layer.name)
           << ", \"shape\": " << json_string(c.layer.shape.to_string())
           << ", \"pass\": " << json_string(pass_name(c.pass))
           << ", \"batch\": " << c.layer.shape.batch << ", \"threads\": " << c.threads
           << ", \"flops\": " << json_number(c.layer.shape.flops(c.pass))
           << ", \"workspace_bytes_per_thread\": "
           << json_number(or_missing(row.workspace_per_thread()));
      for (int b = 0; b < kBackendCount; ++b) {
        const BackendResults& r = row.backend[b];
        const std::string key = keys[b];
        json << ", \"convgemm_" << key << "_gflops\": " << json_number(or_missing(r.gflops()))
             << ", \"convgemm_" << key
             << "_seconds\": " << json_number(r.convgemm ? r.convgemm->seconds : kMissing)
             << ", \"before_" << key << "_gflops\": " << json_number(or_missing(r.before))
             << ", \"roofline_" << key << "_gflops\": " << json_number(or_missing(r.roofline()));
      }
      json << ", \"peak_gflops\": " << json_number(or_missing(row.peak))
           << ", \"naive_gflops\": " << json_number(or_missing(row.naive))
           << ", \"naive_estimated_from_batch_1\": " << (row.naive_estimated ? "true" : "false")
           << ", \"onednn_plain_gflops\": " << json_number(or_missing(row.onednn_plain))
           << ", \"onednn_plain_impl\": " << json_string(row.onednn_plain_impl)
           << ", \"onednn_blocked_gflops\": " << json_number(or_missing(row.onednn_blocked))
           << ", \"onednn_blocked_impl\": " << json_string(row.onednn_blocked_impl)
           << ", \"convgemm_kept_weights_gflops\": " << json_number(or_missing(row.kept_weights))
           << ", \"convgemm_nhwc_gflops\": " << json_number(or_missing(row.nhwc))
           << ", \"onednn_nhwc_gflops\": " << json_number(or_missing(row.onednn_nhwc)) << "}";
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
         << "; GFLOP/s: layer convgemm_packed convgemm_openblas before_openblas naive"
            " roofline_openblas onednn_plain onednn_blocked peak\n";
    for (const Pass pass : kPasses) {
      plot << "# " << pass_name(pass) << "\n";
      for (const Row& row : rows) {
        if (row.c->pass != pass || row.c->threads != threads || row.c->layer.shape.batch != batch) {
          continue;
        }
        const auto value = [](std::optional<double> v) { return v ? fixed(*v, 3) : "NaN"; };
        plot << json_string(row.c->layer.name) << " " << value(row.gflops(0)) << " "
             << value(row.gflops(1)) << " " << value(row.backend[0].before) << " "
             << value(row.naive) << " " << value(row.backend[0].roofline()) << " "
             << value(row.onednn_plain) << " " << value(row.onednn_blocked) << " "
             << value(row.peak) << "\n";
      }
      plot << "\n\n";
    }
  }
  return ok;
}

}  // namespace convgemm::bench
