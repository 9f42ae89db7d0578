// Runs N ranks of a program on this host, as tutti-run and tutti-bench do:
// every rank gets TUTTI_RANK, TUTTI_WORLD_SIZE, TUTTI_LOCAL_RANK and one
// TUTTI_STORE. When a rank fails, the others get a grace period to report
// their own view of the failure, then are killed. Not part of the library.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <tutti/detail/socket.hpp>

#include "process.hpp"

namespace tutti::tools {

// A store address on a loopback port that is free now.
inline std::string free_loopback_store() {
  const auto listener = tutti::detail::listen_on({"127.0.0.1", 0});
  return "tcp://127.0.0.1:" + std::to_string(tutti::detail::bound_port(listener.get()));
}

// Starts the ranks and waits for all of them; returns the first failing
// rank's exit status, or 0. `who` prefixes the messages.
inline int run_local_ranks(const std::vector<std::string>& program, int ranks, const std::string& store,
                           std::chrono::milliseconds grace, const char* who, const environment& extra = {}) {
  std::vector<process> children;
  for (int r = 0; r < ranks; ++r) {
    environment env = extra;
    env.insert(env.end(), {{"TUTTI_RANK", std::to_string(r)},
                           {"TUTTI_WORLD_SIZE", std::to_string(ranks)},
                           {"TUTTI_LOCAL_RANK", std::to_string(r)},
                           {"TUTTI_STORE", store}});
    children.push_back(process::spawn(program, env));
  }
  int result = 0;
  auto kill_at = std::chrono::steady_clock::time_point::max();
  std::size_t running = children.size();
  while (running > 0) {
    running = 0;
    for (std::size_t r = 0; r < children.size(); ++r) {
      if (!children[r].running()) continue;
      const int status = children[r].poll();
      if (status < 0) {
        ++running;
        continue;
      }
      if (status != 0 && result == 0) {
        result = status;
        std::fprintf(stderr, "%s: rank %zu exited with status %d\n", who, r, status);
        kill_at = std::chrono::steady_clock::now() + grace;
      }
    }
    if (std::chrono::steady_clock::now() >= kill_at) {
      for (auto& child : children) child.kill();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return result;
}

}  // namespace tutti::tools
