// Child processes for tutti's tools, benchmarks and tests: spawn a program
// with extra environment variables (posix_spawn, so no fork of a threaded
// process), wait for it with a deadline, kill it. Not part of the library.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace tutti::tools {

using environment = std::vector<std::pair<std::string, std::string>>;

class process {
 public:
  // Runs argv[0] (searched in PATH) with this process's environment plus
  // `env`, whose entries replace variables of the same name.
  static process spawn(std::vector<std::string> argv, const environment& env = {}) {
    std::vector<std::string> env_storage;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string item(*entry);
      const auto name = item.substr(0, item.find('='));
      bool replaced = false;
      for (const auto& [key, value] : env) replaced = replaced || name == key;
      if (!replaced) env_storage.push_back(item);
    }
    for (const auto& [key, value] : env) env_storage.push_back(key + "=" + value);
    auto pointers = [](std::vector<std::string>& strings) {
      std::vector<char*> out;
      for (auto& s : strings) out.push_back(s.data());
      out.push_back(nullptr);
      return out;
    };
    auto args = pointers(argv);
    auto envp = pointers(env_storage);
    pid_t pid = 0;
    if (const int rc = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), envp.data()); rc != 0) {
      throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
    }
    return process(pid);
  }

  process(process&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  process& operator=(process&&) = delete;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }

  // The exit status if the process has ended (128 + signal if killed), or -1
  // while it runs. Reaps it once.
  int poll() {
    if (pid_ <= 0) return status_;
    int raw = 0;
    if (::waitpid(pid_, &raw, WNOHANG) != pid_) return -1;
    pid_ = -1;
    status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    return status_;
  }

  // Waits until the process ends or the deadline passes; a process still
  // running then is killed and reported as -1, so a hang fails the caller
  // instead of hanging it.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto nap = std::chrono::microseconds(50);
    while (true) {
      if (const int status = poll(); status >= 0) return status;
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(2000));
    }
  }

  void kill(int signal = SIGKILL) const {
    if (pid_ > 0) ::kill(pid_, signal);
  }

 private:
  explicit process(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  int status_ = -1;
};

}  // namespace tutti::tools
