// What the shm transport does to a peer process through the kernel: watch
// whether it is alive (a pidfd, else kill(pid, 0)) and copy to and from its
// memory (cross-memory attach: process_vm_readv / process_vm_writev).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace tutti::detail::shm {

// Watches one process. The pidfd pins the process itself, so a recycled pid
// is never mistaken for the peer.
class process_watch {
 public:
  process_watch() = default;
  explicit process_watch(pid_t pid) noexcept : pid_(pid) {
#ifdef SYS_pidfd_open
    fd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#endif
  }
  ~process_watch() {
    if (fd_ >= 0) ::close(fd_);
  }
  process_watch(process_watch&& other) noexcept : pid_(other.pid_), fd_(other.fd_) { other.fd_ = -1; }
  process_watch& operator=(process_watch&&) = delete;
  process_watch(const process_watch&) = delete;
  process_watch& operator=(const process_watch&) = delete;

  // Whether the process has exited (killed, crashed, or returned). A zombie
  // counts as exited with a pidfd; without one, kill(pid, 0) cannot tell a
  // zombie from a live process, which only delays detection until the
  // parent reaps it.
  [[nodiscard]] bool exited() const noexcept {
    if (pid_ <= 0) return false;
    if (fd_ >= 0) {
      pollfd entry{fd_, POLLIN, 0};
      return ::poll(&entry, 1, 0) > 0 && (entry.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    }
    return ::kill(pid_, 0) != 0 && errno == ESRCH;
  }

 private:
  pid_t pid_ = 0;
  int fd_ = -1;
};

// Copies `bytes` from `remote` in process `pid` into `local`. Returns 0, or
// the errno of the failure (ESRCH: the process is gone; EPERM: the kernel
// will not let us in; EFAULT: the remote range is not mapped).
inline int read_process(pid_t pid, void* local, std::uint64_t remote, std::size_t bytes) noexcept {
  auto* out = static_cast<std::byte*>(local);
  while (bytes > 0) {
    iovec here{out, bytes};
    iovec there{reinterpret_cast<void*>(static_cast<std::uintptr_t>(remote)), bytes};
    const ssize_t done = ::process_vm_readv(pid, &here, 1, &there, 1, 0);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return done == 0 ? EFAULT : errno;
    out += done;
    remote += static_cast<std::uint64_t>(done);
    bytes -= static_cast<std::size_t>(done);
  }
  return 0;
}

// Copies `bytes` from `local` to `remote` in process `pid`; as read_process.
inline int write_process(pid_t pid, std::uint64_t remote, const void* local, std::size_t bytes) noexcept {
  const auto* in = static_cast<const std::byte*>(local);
  while (bytes > 0) {
    iovec here{const_cast<std::byte*>(in), bytes};
    iovec there{reinterpret_cast<void*>(static_cast<std::uintptr_t>(remote)), bytes};
    const ssize_t done = ::process_vm_writev(pid, &here, 1, &there, 1, 0);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return done == 0 ? EFAULT : errno;
    in += done;
    remote += static_cast<std::uint64_t>(done);
    bytes -= static_cast<std::size_t>(done);
  }
  return 0;
}

}  // namespace tutti::detail::shm
