// The collective benchmark loop on Google Benchmark, for any library behind
// the `runner` interface (tutti's ranks, a team of tutti threads, MPI).
//
// Every rank registers the same cases with iteration counts fixed by size
// (cases.hpp), so no rank can run a different number of operations than
// another; each benchmark iteration is a batch of back-to-back operations
// timed on every rank and reported (manual time) as the slowest rank's time
// per operation. Rank 0 reports; the others run silently.
#pragma once

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cases.hpp"
#include "options.hpp"
#include "report.hpp"

namespace tutti::bench {

class runner {
 public:
  runner() = default;
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;
  virtual ~runner() = default;

  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int ranks() const = 0;
  [[nodiscard]] virtual std::string library() const = 0;
  [[nodiscard]] virtual std::size_t element_size() const = 0;
  // What `op` is measured with, from the options' --algo list: "auto" stays,
  // "all" becomes every algorithm the library has for `op`; names the
  // library lacks for `op` are left out.
  [[nodiscard]] virtual std::vector<std::string> algorithms_for(operation op) = 0;
  // Collective: sets up `op` with `algorithm` at geometry `g`.
  virtual void prepare(operation op, const std::string& algorithm, const geometry& g) = 0;
  // Collective: runs `count` operations back to back; the slowest rank's
  // seconds per operation (send_recv: half a round trip).
  virtual double timed(int count) = 0;
  // Collective: runs one operation on the check patterns; the wrong
  // elements over all ranks.
  virtual long long check() = 0;
  // The algorithm that runs for the prepared case ("auto" resolved).
  [[nodiscard]] virtual std::string algorithm_used() = 0;
};

// Discards what Google Benchmark reports: ranks other than 0, and rank 0
// when it prints its own table.
class silent_reporter final : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

// Registers and runs every case; the results, in order (meaningful on rank
// 0; every rank gets its own timings, which are the same maxima).
// `gb_reports` lets Google Benchmark's own reporter print on rank 0
// (--benchmark_format was given).
inline std::vector<result> run_cases(runner& r, const options& o, bool gb_reports) {
  auto rows = std::make_shared<std::vector<result>>();
  for (const operation op : o.operations) {
    for (const std::string& algorithm : r.algorithms_for(op)) {
      for (const std::size_t size : sizes_between(o.min_bytes, o.max_bytes, o.step_factor)) {
        const geometry g = geometry_of(op, size, r.element_size(), r.ranks());
        if (g.bytes == 0) continue;  // smaller than one element per rank
        const iteration_plan plan = plan_for(g.bytes, o.iterations);
        const std::string name = std::string(name_of(op)) + "/" + algorithm + "/" + std::to_string(g.bytes);
        benchmark::RegisterBenchmark(name.c_str(),
                                     [&r, &o, rows, op, algorithm, g, plan](benchmark::State& state) {
                                       r.prepare(op, algorithm, g);
                                       result row;
                                       row.lib = r.library();
                                       row.op = op;
                                       row.ranks = r.ranks();
                                       row.bytes = g.bytes;
                                       row.count = g.bytes / r.element_size();
                                       row.dtype = o.dtype;
                                       row.redop = reduces(op) ? o.op : "-";
                                       row.root = op == operation::broadcast || op == operation::reduce ? 0 : -1;
                                       row.algorithm = r.algorithm_used();
                                       if (o.check) row.wrong = r.check();
                                       for (int i = 0; i < plan.warmup; ++i) r.timed(plan.batch);
                                       double seconds = 0;
                                       for (auto _ : state) {
                                         const double per_operation = r.timed(plan.batch);
                                         state.SetIterationTime(per_operation);
                                         seconds += per_operation;
                                       }
                                       row.iterations = plan.operations();
                                       row.time_us = seconds / plan.iterations * 1e6;
                                       state.counters["algbw_GBps"] = row.algbw_gbps();
                                       state.counters["busbw_GBps"] = row.busbw_gbps();
                                       if (row.wrong >= 0) state.counters["wrong"] = static_cast<double>(row.wrong);
                                       state.SetLabel(row.algorithm);
                                       rows->push_back(std::move(row));
                                     })
            ->Iterations(plan.iterations)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  silent_reporter silent;
  if (r.rank() == 0 && gb_reports) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::ClearRegisteredBenchmarks();
  return std::move(*rows);
}

// Whether argv asks Google Benchmark for its own output format (to be
// looked at before benchmark::Initialize takes the flag out).
inline bool wants_gb_format(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with("--benchmark_format")) return true;
  }
  return false;
}

// What rank 0 does with the results: the table (unless Google Benchmark
// printed its own), the CSV, and the count of wrong elements as the status.
inline int report_results(const runner& r, const options& o, const std::vector<result>& rows, bool gb_reports) {
  if (r.rank() != 0) return 0;
  if (!gb_reports) {
    const std::string title = r.library() + " " + std::to_string(r.ranks()) + " ranks";
    print_table(stdout, rows, title);
  }
  if (!o.csv.empty() && !write_csv(o.csv, rows)) {
    std::fprintf(stderr, "cannot write %s\n", o.csv.c_str());
    return 1;
  }
  long long wrong = 0;
  for (const auto& row : rows) wrong += row.wrong > 0 ? row.wrong : 0;
  if (wrong > 0) std::fprintf(stderr, "%lld wrong elements: see the #wrong column\n", wrong);
  return wrong > 0 ? 3 : 0;
}

}  // namespace tutti::bench
