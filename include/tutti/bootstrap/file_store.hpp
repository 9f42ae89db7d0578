// tutti::file_store: a store kept in a directory of a shared file system, for
// jobs whose ranks share storage (NFS, Lustre, GPFS) but can reach no common
// TCP host. It relies only on what such file systems guarantee across hosts:
// rename() replaces a file atomically and flock() excludes other clients.
// inotify would not see other hosts' writes, so waiting readers poll. On NFS,
// mount with lookupcache=positive (or none): by default a client trusts its
// cached "no such file" until the directory's attributes expire (up to a
// minute), so a waiting reader would see a new key that late.
//
// Layout of the directory, one file per key:
//   k_<escaped key>  the value. Bytes other than [A-Za-z0-9._-] are written
//                    %XX, so any key is one legal, readable file name; the
//                    prefix keeps the keys "", "." and ".." legal too.
//   h_<escaped prefix>_<SHA-256 of the key>
//                    keys whose escaped form would be too long a file name.
//                    The prefix keeps them readable; the hash keeps them
//                    apart (a collision would need two keys with the same
//                    SHA-256).
//   .tmp.<host>.<pid>.<thread>.<n>
//                    a value being written, renamed over the key's file once
//                    complete: readers see the old or the new value, never a
//                    torn one. A writer that crashes leaves it behind, unused.
//   .lock            flock()ed around every write, so that add() and
//                    compare_set() are atomic across threads, processes and
//                    hosts (Lustre needs its "flock" mount option for this).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/detail/sha256.hpp>
#include <tutti/error.hpp>

namespace tutti {
namespace detail::fstore {

[[noreturn]] inline void fail_file_op(std::string_view op, const std::filesystem::path& path, int err) {
  fail(errc::transport, "file_store: ", op, " ", path, ": ", std::generic_category().message(err));
}

// Injective, because '%' itself is escaped.
inline std::string escape_file_name(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    const bool plain =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (plain) {
      out += ch;
    } else {
      constexpr const char* hex = "0123456789ABCDEF";
      out.append({'%', hex[c >> 4U], hex[c & 15U]});
    }
  }
  return out;
}

class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  // NFS reports failed write-back at close, so a writer must look.
  [[nodiscard]] int close() noexcept {
    const int rc = ::close(std::exchange(fd_, -1));
    return rc == 0 || errno == EINTR ? 0 : errno;
  }

 private:
  int fd_;
};

inline std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  const auto now = std::chrono::steady_clock::now();
  const auto room =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::time_point::max() - now);
  return timeout >= room ? std::chrono::steady_clock::time_point::max() : now + timeout;
}

// Calls attempt() until it returns true or the deadline passes, sleeping 50 us
// at first and twice as long each time up to max_sleep: quick when the answer
// is near, and many ranks on few cores still leave each other the CPU.
template <class Attempt>
bool poll_until(std::chrono::steady_clock::time_point deadline, std::chrono::microseconds max_sleep,
                Attempt&& attempt) {
  std::chrono::microseconds sleep(50);
  while (!attempt()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(sleep, deadline - now));
    sleep = std::min(sleep * 2, max_sleep);
  }
  return true;
}

inline std::optional<std::string> read_file_if_exists(const std::filesystem::path& path) {
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail_file_op("open", path, errno);
  }
  unique_fd fd(raw);
  // One byte more than the size, so the read that sees EOF needs no growth;
  // the size is only a hint, the loop reads to EOF.
  struct stat info {};
  const bool sized = ::fstat(fd.get(), &info) == 0 && info.st_size >= 0;
  std::string out(sized ? static_cast<std::size_t>(info.st_size) + 1 : 4096, '\0');
  std::size_t size = 0;
  while (true) {
    if (size == out.size()) out.resize(out.size() * 2);
    const ssize_t got = ::read(fd.get(), out.data() + size, out.size() - size);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_file_op("read", path, errno);
    }
    size += static_cast<std::size_t>(got);
  }
  out.resize(size);
  return out;
}

inline void write_all(int fd, std::string_view bytes, const std::filesystem::path& path) {
  while (!bytes.empty()) {
    const ssize_t wrote = ::write(fd, bytes.data(), bytes.size());
    if (wrote < 0) {
      if (errno == EINTR) continue;
      fail_file_op("write", path, errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(wrote));
  }
}

// flock() excludes open file descriptions, but NFS emulates it with POSIX
// record locks, which belong to a whole process. This lock excludes the
// process's own threads and file_store objects, on any file system. It is a
// std::timed_mutex by hand because GCC 12's ThreadSanitizer does not see the
// pthread_mutex_clocklock() behind timed_mutex::try_lock_until().
class process_lock {
 public:
  static process_lock& instance() {
    static process_lock lock;
    return lock;
  }

  bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> guard(mutex_);
    if (!released_.wait_until(guard, deadline, [&] { return !held_; })) return false;
    held_ = true;
    return true;
  }

  void unlock() {
    {
      const std::lock_guard<std::mutex> guard(mutex_);
      held_ = false;
    }
    released_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  bool held_ = false;
};

// Holds the store's write lock; never waits past the timeout, so a client
// stuck while holding it shows up as an error, not a hang.
class file_store_lock {
 public:
  file_store_lock(const std::filesystem::path& path, std::string_view op, std::string_view key,
                  std::chrono::milliseconds timeout)
      : in_process_(process_lock::instance(), std::defer_lock),
        fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_.get() < 0) fail_file_op("open", path, errno);
    const auto deadline = deadline_after(timeout);
    const bool locked = in_process_.try_lock_until(deadline) && poll_until(deadline, std::chrono::milliseconds(1), [&] {
                          if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) return true;
                          if (errno != EWOULDBLOCK && errno != EINTR) fail_file_op("flock", path, errno);
                          return false;
                        });
    if (!locked) {
      fail(errc::timeout, "file_store: ", op, "(", detail::printable(key), "): ", path, " stayed locked for ",
           std::chrono::duration<double>(timeout).count(), " s");
    }
  }

 private:
  // Declared first, so destroyed last: the file lock is dropped first.
  std::unique_lock<process_lock> in_process_;
  unique_fd fd_;
};

}  // namespace detail::fstore

class file_store final : public store {
 public:
  // Creates the directory if missing. Writers wait at most lock_timeout for
  // one another.
  explicit file_store(std::filesystem::path directory, timeout_type lock_timeout = std::chrono::seconds(60))
      : directory_(std::move(directory)), lock_timeout_(lock_timeout) {
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    if (ec) detail::fail(errc::transport, "file_store: cannot create directory ", directory_, ": ", ec.message());
    if (!std::filesystem::is_directory(directory_, ec)) {
      detail::fail(errc::transport, "file_store: ", directory_, " is not a directory");
    }
  }

  void set(std::string_view key, std::string_view value) override {
    // Writes take the lock too, or one could land between the read and the
    // write of an add() or compare_set() and be lost.
    const detail::fstore::file_store_lock lock(lock_path(), "set", key, lock_timeout_);
    publish(key, value);
  }

  std::string get(std::string_view key, timeout_type timeout) override {
    const std::string keys[] = {std::string(key)};
    return std::move(poll(keys, timeout, true).front());
  }

  std::vector<std::string> multi_get(std::span<const std::string> keys, timeout_type timeout) override {
    return poll(keys, timeout, true);
  }

  std::int64_t add(std::string_view key, std::int64_t delta) override {
    const detail::fstore::file_store_lock lock(lock_path(), "add", key, lock_timeout_);
    const std::int64_t value = detail::add_to_counter(key, load(key).value_or(""), delta);
    publish(key, std::to_string(value));
    return value;
  }

  std::string compare_set(std::string_view key, std::string_view expected, std::string_view desired) override {
    const detail::fstore::file_store_lock lock(lock_path(), "compare_set", key, lock_timeout_);
    std::string current = load(key).value_or(std::string());
    if (current != expected) return current;
    publish(key, desired);
    return std::string(desired);
  }

  void wait(std::span<const std::string> keys, timeout_type timeout) override { (void)poll(keys, timeout, false); }

  std::vector<bool> contains(std::span<const std::string> keys) override {
    std::vector<bool> out;
    out.reserve(keys.size());
    for (const auto& key : keys) out.push_back(exists(key));
    return out;
  }

  bool erase(std::string_view key) override {
    const detail::fstore::file_store_lock lock(lock_path(), "erase", key, lock_timeout_);
    const auto file = file_of(key);
    if (::unlink(file.c_str()) == 0) return true;
    if (errno != ENOENT) detail::fstore::fail_file_op("unlink", file, errno);
    return false;
  }

  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return directory_; }

 private:
  // Escaped keys up to this length are file names as they are; longer ones
  // keep this much as a readable prefix before their hash. Both stay well
  // under the 255 bytes most file systems allow in a name.
  static constexpr std::size_t max_plain_name = 200;
  static constexpr std::size_t hashed_prefix = 120;

  [[nodiscard]] std::filesystem::path file_of(std::string_view key) const {
    std::string name = detail::fstore::escape_file_name(key);
    if (name.size() <= max_plain_name) return directory_ / ("k_" + name);
    std::size_t keep = hashed_prefix;
    while (name[keep - 1] == '%' || name[keep - 2] == '%') --keep;  // not in the middle of a %XX
    name.resize(keep);
    return directory_ / ("h_" + name + "_" + detail::to_hex(detail::sha256_of(key)));
  }

  [[nodiscard]] std::filesystem::path lock_path() const { return directory_ / ".lock"; }

  [[nodiscard]] std::optional<std::string> load(std::string_view key) const {
    return detail::fstore::read_file_if_exists(file_of(key));
  }

  [[nodiscard]] bool exists(std::string_view key) const {
    const auto file = file_of(key);
    struct stat info {};
    if (::stat(file.c_str(), &info) == 0) return true;
    if (errno != ENOENT) detail::fstore::fail_file_op("stat", file, errno);
    return false;
  }

  // Called with the lock held.
  void publish(std::string_view key, std::string_view value) {
    const auto file = file_of(key);
    const auto temp = write_temp(value);
    if (::rename(temp.c_str(), file.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      detail::fail(errc::transport, "file_store: rename ", temp, " to ", file, ": ",
                   std::generic_category().message(err));
    }
  }

  // A file name no other writer uses, even on another host with the same pid
  // or after a crash left an old temporary behind (O_EXCL then moves on).
  [[nodiscard]] std::filesystem::path write_temp(std::string_view value) const {
    static std::atomic<std::uint64_t> counter{0};
    static const std::string host = [] {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      return detail::fstore::escape_file_name(name).substr(0, 64);
    }();
    // The pid is read each time, as a forked child must not reuse its parent's names.
    const std::string stem =
        detail::concat(".tmp.", host, ".", ::getpid(), ".", std::hash<std::thread::id>{}(std::this_thread::get_id()));
    for (int attempt = 0;; ++attempt) {
      auto path = directory_ / detail::concat(stem, ".", counter.fetch_add(1));
      const int raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (raw < 0) {
        if (errno == EEXIST && attempt < 100) continue;
        detail::fstore::fail_file_op("create", path, errno);
      }
      detail::fstore::unique_fd fd(raw);
      try {
        detail::fstore::write_all(fd.get(), value, path);
        if (const int err = fd.close(); err != 0) detail::fstore::fail_file_op("close", path, err);
      } catch (...) {
        ::unlink(path.c_str());
        throw;
      }
      return path;
    }
  }

  [[nodiscard]] std::vector<std::string> poll(std::span<const std::string> keys, timeout_type timeout,
                                              bool read_values) const {
    std::vector<std::string> values(keys.size());
    std::vector<std::size_t> missing(keys.size());
    std::iota(missing.begin(), missing.end(), std::size_t{0});
    const bool found =
        detail::fstore::poll_until(detail::fstore::deadline_after(timeout), std::chrono::milliseconds(5), [&] {
          std::erase_if(missing, [&](std::size_t i) {
            if (!read_values) return exists(keys[i]);
            auto value = load(keys[i]);
            if (value) values[i] = std::move(*value);
            return value.has_value();
          });
          return missing.empty();
        });
    if (!found) fail_timeout(keys, missing, timeout);
    return values;
  }

  [[noreturn]] void fail_timeout(std::span<const std::string> keys, std::span<const std::size_t> missing,
                                 timeout_type timeout) const {
    std::vector<std::string> names;
    for (const auto index : missing) names.push_back(keys[index]);
    detail::fail_store_timeout(detail::concat("file_store in ", directory_), names, keys.size(), timeout);
  }

  std::filesystem::path directory_;
  timeout_type lock_timeout_;
};

}  // namespace tutti
