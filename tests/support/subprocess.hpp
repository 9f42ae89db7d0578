// Multi-process tests: a test binary re-executes itself as a worker process
// with chosen arguments and environment variables.
//
//   TUTTI_TEST_WORKER(counter_hammer) { ...; return 0; }   // args: std::vector<std::string>
//   auto child = tutti::test::subprocess::spawn("counter_hammer", {"8"}, {{"TUTTI_RANK", "3"}});
//   CHECK(child.wait(std::chrono::seconds(10)) == 0);
#pragma once

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../../tools/process.hpp"

namespace tutti::test {

using worker_fn = int (*)(const std::vector<std::string>& args);

inline std::map<std::string, worker_fn>& workers() {
  static std::map<std::string, worker_fn> registry;
  return registry;
}

struct worker_registration {
  worker_registration(const char* name, worker_fn fn) { workers()[name] = fn; }
};

#define TUTTI_TEST_WORKER(name)                                                                                     \
  static int tutti_test_worker_##name(const std::vector<std::string>& args);                                        \
  static const ::tutti::test::worker_registration tutti_test_worker_registration_##name{#name,                      \
                                                                                        &tutti_test_worker_##name}; \
  static int tutti_test_worker_##name([[maybe_unused]] const std::vector<std::string>& args)

inline constexpr const char* worker_flag = "--tutti-worker";

// Called first by the test main: runs the worker named on the command line,
// if any, and returns its exit status.
inline std::optional<int> run_worker_if_requested(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[1], worker_flag) != 0) return std::nullopt;
  const auto found = workers().find(argv[2]);
  if (found == workers().end()) return 127;
  return found->second(std::vector<std::string>(argv + 3, argv + argc));
}

struct subprocess {
  using environment = tools::environment;

  // Runs worker `name` of this test binary with `args` and `env` on top of
  // this process's environment.
  static tools::process spawn(const std::string& name, const std::vector<std::string>& args = {},
                              const environment& env = {}) {
    std::vector<std::string> argv{"/proc/self/exe", worker_flag, name};
    argv.insert(argv.end(), args.begin(), args.end());
    return tools::process::spawn(std::move(argv), env);
  }
};

}  // namespace tutti::test
