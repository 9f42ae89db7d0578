// The memcpy that benchmarks measure beside tutti's numbers, in the same
// binary and run, so that ratios hold on a noisy machine.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace tutti::bench {

inline void memcpy_reference(benchmark::State& state, std::size_t bytes) {
  std::vector<char> dst(bytes, 1);
  const std::vector<char> src(bytes, 2);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

// Single-thread memcpy bandwidth of `bytes` (pre-faulted), the best of
// `trials`, in GB/s (1e9 bytes per second, as ../shared/peers reports it).
inline double memcpy_gbps(std::size_t bytes, int trials) {
  std::vector<char> dst(bytes, 1);
  const std::vector<char> src(bytes, 2);
  double best = 0;
  for (int t = 0; t < trials; ++t) {
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(bytes) / seconds / 1e9);
  }
  return best;
}

}  // namespace tutti::bench
