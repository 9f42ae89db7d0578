// Time for N local processes to form a communicator, through the TCP store
// (rank 0 hosts it) and through the file store: from the moment the first
// process is started until the last one has its communicator. Process start
// is included, as a launcher would see it.
//
// Target on a 2-core machine: 16 ranks in under 200 ms through tcp_store.
#include <tutti/tutti.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../tools/process.hpp"

namespace {

using clock_type = std::chrono::steady_clock;  // CLOCK_MONOTONIC: comparable across processes

constexpr const char* worker_flag = "--rendezvous-worker";

// A rank: forms the world, then writes the time it finished to `result`.
int run_worker(const char* result) {
  try {
    const auto comm = tutti::communicator::from_env();
    std::ofstream(result) << clock_type::now().time_since_epoch().count();
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return 1;
  }
}

void form_world(benchmark::State& state, const std::string& kind, int ranks) {
  for (auto _ : state) {
    std::string pattern = (std::filesystem::temp_directory_path() / "tutti-bench-XXXXXX").string();
    const std::filesystem::path dir = ::mkdtemp(pattern.data());
    std::string store;
    if (kind == "file") {
      store = "file://" + (dir / "store").string();
    } else {
      const auto probe = tutti::detail::listen_on({"127.0.0.1", 0});
      store = "tcp://127.0.0.1:" + std::to_string(tutti::detail::bound_port(probe.get()));
    }
    const auto start = clock_type::now();
    std::vector<tutti::tools::process> children;
    for (int r = 0; r < ranks; ++r) {
      children.push_back(tutti::tools::process::spawn(
          {"/proc/self/exe", worker_flag, (dir / std::to_string(r)).string()},
          {{"TUTTI_RANK", std::to_string(r)}, {"TUTTI_WORLD_SIZE", std::to_string(ranks)}, {"TUTTI_STORE", store}}));
    }
    clock_type::rep last = 0;
    bool ok = true;
    for (int r = 0; r < ranks; ++r) {
      ok = children[static_cast<std::size_t>(r)].wait(std::chrono::seconds(60)) == 0 && ok;
      clock_type::rep done = 0;
      std::ifstream(dir / std::to_string(r)) >> done;
      last = std::max(last, done);
    }
    std::filesystem::remove_all(dir);
    if (!ok) {
      state.SkipWithError("a rank failed");
      break;
    }
    state.SetIterationTime(
        std::chrono::duration<double>(clock_type::duration(last) - start.time_since_epoch()).count());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == worker_flag) return run_worker(argv[2]);
  for (const char* kind : {"tcp", "file"}) {
    for (const int ranks : {2, 4, 8, 16}) {
      benchmark::RegisterBenchmark(("rendezvous/" + std::string(kind) + "/" + std::to_string(ranks)).c_str(),
                                   form_world, std::string(kind), ranks)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(10);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf("target: rendezvous/tcp/16 under 200 ms (time is process start to the last rank's communicator)\n");
  return 0;
}
