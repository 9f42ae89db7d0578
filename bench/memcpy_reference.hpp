// The memcpy that benchmarks measure beside tutti's numbers, in the same
// binary and run, so that ratios hold on a noisy machine.
#pragma once

#include <benchmark/benchmark.h>

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

}  // namespace tutti::bench
