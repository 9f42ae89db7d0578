// Multi-process tests: a test binary re-executes itself as a worker process
// (posix_spawn of /proc/self/exe, so no fork of a threaded process, which
// sanitizers reject) with chosen arguments and environment variables.
//
//   TUTTI_TEST_WORKER(counter_hammer) { ...; return 0; }   // args: std::vector<std::string>
//   auto child = tutti::test::subprocess::spawn("counter_hammer", {"8"}, {{"TUTTI_RANK", "3"}});
//   CHECK(child.wait(std::chrono::seconds(10)) == 0);
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

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

class subprocess {
 public:
  using environment = std::vector<std::pair<std::string, std::string>>;

  // Runs worker `name` of this test binary with `args`, and this process's
  // environment with `env` added (or replaced) on top.
  static subprocess spawn(const std::string& name, const std::vector<std::string>& args = {},
                          const environment& env = {}) {
    std::vector<std::string> argv_storage{"/proc/self/exe", worker_flag, name};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<std::string> env_storage;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string item(*entry);
      const auto eq = item.find('=');
      bool replaced = false;
      for (const auto& [key, value] : env) replaced = replaced || item.substr(0, eq) == key;
      if (!replaced) env_storage.push_back(item);
    }
    for (const auto& [key, value] : env) env_storage.push_back(key + "=" + value);

    auto pointers = [](std::vector<std::string>& strings) {
      std::vector<char*> out;
      for (auto& s : strings) out.push_back(s.data());
      out.push_back(nullptr);
      return out;
    };
    auto argv = pointers(argv_storage);
    auto envp = pointers(env_storage);
    pid_t pid = 0;
    if (const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()); rc != 0) {
      throw std::runtime_error("posix_spawn failed: " + std::string(std::strerror(rc)));
    }
    return subprocess(pid);
  }

  subprocess(subprocess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  subprocess& operator=(subprocess&&) = delete;
  subprocess(const subprocess&) = delete;
  subprocess& operator=(const subprocess&) = delete;
  ~subprocess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  // The exit status (128 + signal number if killed by a signal). A worker
  // still running at the deadline is killed and reported as -1, so a hang
  // fails the test instead of hanging it.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (true) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void kill(int signal = SIGKILL) const { ::kill(pid_, signal); }

 private:
  explicit subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

}  // namespace tutti::test
