// POSIX shared-memory segments for the shm transport: creating, opening and
// unlinking them, and one mapping per segment per process, so ranks that are
// threads of one process see the same addresses (ThreadSanitizer follows
// atomics by address) and a segment outlives every rank that uses it.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <tutti/error.hpp>

namespace tutti::detail::shm {

inline std::string errno_message(int code) { return std::system_category().message(code); }

// A mapped segment; unmapped with its last user.
class mapping {
 public:
  mapping(void* base, std::size_t bytes) noexcept : base_(static_cast<std::byte*>(base)), bytes_(bytes) {}
  ~mapping() { ::munmap(base_, bytes_); }
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;

  [[nodiscard]] std::byte* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }

 private:
  std::byte* base_;
  std::size_t bytes_;
};

// The mappings this process holds, by segment name.
class mapping_registry {
 public:
  static mapping_registry& instance() {
    static mapping_registry registry;
    return registry;
  }

  // The mapping of `name`, made by `map()` unless this process has one: under
  // the lock, so two ranks of one process never map a segment twice.
  template <class Map>
  std::shared_ptr<mapping> find_or_map(const std::string& name, Map&& map) {
    const std::scoped_lock lock(mutex_);
    if (const auto found = entries_.find(name); found != entries_.end()) {
      if (auto mapped = found->second.lock()) return mapped;
    }
    for (auto it = entries_.begin(); it != entries_.end();) it = it->second.expired() ? entries_.erase(it) : ++it;
    std::shared_ptr<mapping> mapped = map();
    entries_[name] = mapped;
    return mapped;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::weak_ptr<mapping>, std::less<>> entries_;
};

class fd_guard {
 public:
  explicit fd_guard(int fd) noexcept : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// "/tutti-<pid>-<rank>-<64 random bits>": unique per job and rank, and not
// guessable, so a stale or foreign object is never taken for ours.
inline std::string unique_segment_name(int rank) {
  std::uint64_t random = 0;
  if (::getrandom(&random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    random = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&random)) ^
             static_cast<std::uint64_t>(::getpid()) << 32U;
  }
  char hex[17] = {};
  for (int i = 15; i >= 0; --i, random >>= 4U) hex[i] = "0123456789abcdef"[random & 15U];
  return tutti::detail::concat("/tutti-", ::getpid(), '-', rank, '-', hex);
}

inline void unlink_segment(const std::string& name) noexcept { ::shm_unlink(name.c_str()); }

// Creates, sizes and maps a new segment. Its memory is reserved up front
// (posix_fallocate), so a full /dev/shm is an error here rather than a
// SIGBUS on first touch.
inline std::shared_ptr<mapping> create_segment(const std::string& name, std::size_t bytes) {
  return mapping_registry::instance().find_or_map(name, [&] {
    const fd_guard fd(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (fd.get() < 0) tutti::detail::fail(errc::transport, "shm: shm_open(", name, "): ", errno_message(errno));
    auto undo = [&](std::string_view what, int code) {
      unlink_segment(name);
      tutti::detail::fail(errc::transport, "shm: ", what, " of ", bytes, " bytes for ", name, ": ",
                          errno_message(code));
    };
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) undo("ftruncate", errno);
    if (const int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); rc != 0 && rc != EOPNOTSUPP) {
      undo("posix_fallocate (is /dev/shm full?)", rc);
    }
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED) undo("mmap", errno);
    return std::make_shared<mapping>(base, bytes);
  });
}

// Maps a peer's segment, reusing this process's mapping when there is one.
inline std::shared_ptr<mapping> open_segment(const std::string& name) {
  return mapping_registry::instance().find_or_map(name, [&] {
    const fd_guard fd(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0));
    if (fd.get() < 0) tutti::detail::fail(errc::transport, "shm: shm_open(", name, "): ", errno_message(errno));
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
      tutti::detail::fail(errc::transport, "shm: fstat(", name, "): ", errno_message(errno));
    }
    const auto bytes = static_cast<std::size_t>(info.st_size);
    if (bytes == 0) tutti::detail::fail(errc::transport, "shm: segment ", name, " is empty");
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED) tutti::detail::fail(errc::transport, "shm: mmap(", name, "): ", errno_message(errno));
    return std::make_shared<mapping>(base, bytes);
  });
}

}  // namespace tutti::detail::shm
