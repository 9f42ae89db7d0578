// Bandwidth of the reduction kernels (dst = dst + src) beside memcpy of the
// same buffer size in the same process, so the ratio is meaningful on a noisy
// machine. Bytes are the size of the reduced array: a reduction reads two
// arrays and writes one, memcpy reads one and writes one.
//
// Targets: float sum >= 0.7 x memcpy at 64 MiB, >= 0.9 x at 64 KiB.
#include <tutti/tutti.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>
#include "memcpy_reference.hpp"

namespace {

constexpr std::size_t min_bytes = std::size_t{4} << 10;
constexpr std::size_t max_bytes = std::size_t{64} << 20;

template <class T>
void reduce_sum(benchmark::State& state, std::size_t bytes) {
  std::vector<T> dst(bytes / sizeof(T), T(0.001f));
  const std::vector<T> src(bytes / sizeof(T), T(0.002f));
  for (auto _ : state) {
    tutti::reduce_into(std::span<T>(dst), std::span<const T>(src), tutti::sum{});
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

// Shows Google Benchmark's table as usual and keeps bytes/s per run name for
// the summary of ratios.
class collecting_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      const auto bytes_per_second = run.counters.find("bytes_per_second");
      if (!run.error_occurred && bytes_per_second != run.counters.end()) {
        rates[run.benchmark_name()] = bytes_per_second->second.value;
      }
    }
  }
  std::map<std::string, double> rates;
};

std::string name(const char* kernel, std::size_t bytes) { return std::string(kernel) + "/" + std::to_string(bytes); }

std::string human(std::size_t bytes) {
  return bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

int main(int argc, char** argv) {
  const char* kernels[] = {"memcpy", "sum_float32", "sum_float64", "sum_bfloat16"};
  // Interleaved per size, so memcpy and the kernels see the same machine state.
  for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    benchmark::RegisterBenchmark(name(kernels[0], bytes).c_str(), tutti::bench::memcpy_reference, bytes);
    benchmark::RegisterBenchmark(name(kernels[1], bytes).c_str(), reduce_sum<float>, bytes);
    benchmark::RegisterBenchmark(name(kernels[2], bytes).c_str(), reduce_sum<double>, bytes);
    benchmark::RegisterBenchmark(name(kernels[3], bytes).c_str(), reduce_sum<tutti::bfloat16>, bytes);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  collecting_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\n%-10s %12s %12s %12s %12s   ratio to memcpy: %s %s %s\n", "size", "memcpy GB/s", "float32", "float64",
              "bfloat16", "float32", "float64", "bfloat16");
  for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    double rate[4] = {};
    bool complete = true;
    for (int k = 0; k < 4; ++k) {
      const auto found = reporter.rates.find(name(kernels[k], bytes));
      complete = complete && found != reporter.rates.end();
      if (found != reporter.rates.end()) rate[k] = found->second / 1e9;
    }
    if (!complete) continue;  // filtered out with --benchmark_filter
    std::printf("%-10s %12.2f %12.2f %12.2f %12.2f   %23.2f %7.2f %8.2f\n", human(bytes).c_str(), rate[0], rate[1],
                rate[2], rate[3], rate[1] / rate[0], rate[2] / rate[0], rate[3] / rate[0]);
  }
  std::printf("targets: float32 >= 0.90 x memcpy at 64 KiB (in cache), >= 0.70 x at 64 MiB\n");
  return 0;
}
