// Thin, exception-safe wrappers over POSIX TCP sockets, shared by the TCP
// store and the TCP transport: owned descriptors, name resolution, bounded
// connect retries and deadline-bounded blocking I/O. Every failure is a
// tutti::error naming the address and the system's reason.
#pragma once

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <tutti/error.hpp>

namespace tutti::detail {

using steady_clock = std::chrono::steady_clock;

inline std::string errno_text(int code) { return std::strerror(code); }

class fd_handle {
 public:
  fd_handle() = default;
  explicit fd_handle(int fd) noexcept : fd_(fd) {}
  fd_handle(fd_handle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  fd_handle& operator=(fd_handle&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  fd_handle(const fd_handle&) = delete;
  fd_handle& operator=(const fd_handle&) = delete;
  ~fd_handle() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// host:port, where host is a name or an address (IPv6 without brackets).
struct endpoint {
  std::string host;
  std::uint16_t port = 0;

  [[nodiscard]] std::string to_string() const {
    return host.find(':') != std::string::npos ? concat('[', host, "]:", port) : concat(host, ':', port);
  }
};

// Parses "tcp://host:port" or "tcp://[v6addr]:port"; `what` names the
// setting in errors (e.g. "TUTTI_STORE").
inline endpoint parse_tcp_url(std::string_view url, std::string_view what) {
  constexpr std::string_view scheme = "tcp://";
  auto bad = [&](std::string_view why) {
    fail(errc::invalid_argument, what, "='", url, "' is not tcp://host:port (", why, ")");
  };
  if (!url.starts_with(scheme)) bad("scheme");
  std::string_view rest = url.substr(scheme.size());
  std::string_view host;
  std::string_view port_text;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') bad("brackets");
    host = rest.substr(1, close - 1);
    port_text = rest.substr(close + 2);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) bad("no port");
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) bad("IPv6 addresses need brackets");
  }
  if (host.empty() || host.find_first_of("/@[] \t") != std::string_view::npos) bad("empty or malformed host");
  unsigned port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    bad("port");
  }
  for (const char c : port_text) port = port * 10 + static_cast<unsigned>(c - '0');
  if (port == 0 || port > 65535) bad("port out of range");
  return {std::string(host), static_cast<std::uint16_t>(port)};
}

struct resolved_addresses {
  resolved_addresses(const endpoint& where, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const std::string port = std::to_string(where.port);
    if (const int rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints, &list); rc != 0) {
      fail(errc::transport, "cannot resolve ", where.to_string(), ": ", ::gai_strerror(rc));
    }
  }
  resolved_addresses(const resolved_addresses&) = delete;
  resolved_addresses& operator=(const resolved_addresses&) = delete;
  ~resolved_addresses() { ::freeaddrinfo(list); }

  addrinfo* list = nullptr;
};

inline void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    fail(errc::transport, "fcntl(O_NONBLOCK): ", errno_text(errno));
  }
}

inline void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A listening socket on exactly the given address (never a wildcard unless
// the caller passes one). Port 0 picks a free port; see bound_port().
inline fd_handle listen_on(const endpoint& where, int backlog = 1024) {
  const resolved_addresses addresses(where, true);
  int last_error = 0;
  for (addrinfo* a = addresses.list; a != nullptr; a = a->ai_next) {
    fd_handle fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last_error = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd.get(), backlog) == 0) return fd;
    last_error = errno;
  }
  fail(errc::transport, "cannot listen on ", where.to_string(), ": ", errno_text(last_error));
}

inline std::uint16_t bound_port(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    fail(errc::transport, "getsockname: ", errno_text(errno));
  }
  const auto network_port = address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                                          : reinterpret_cast<sockaddr_in*>(&address)->sin_port;
  return ntohs(network_port);
}

// Connects, retrying refused or unreachable attempts with backoff until the
// deadline: the peer may not be listening yet when a job starts.
inline fd_handle connect_to(const endpoint& where, steady_clock::time_point deadline) {
  auto backoff = std::chrono::milliseconds(1);
  int last_error = 0;
  int attempts = 0;
  while (true) {
    ++attempts;
    const resolved_addresses addresses(where, false);
    for (addrinfo* a = addresses.list; a != nullptr; a = a->ai_next) {
      fd_handle fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (!fd.valid()) {
        last_error = errno;
        continue;
      }
      if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
        set_nodelay(fd.get());
        return fd;
      }
      last_error = errno;
    }
    if (steady_clock::now() + backoff >= deadline) break;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
  }
  fail(errc::timeout, "cannot connect to ", where.to_string(), " after ", attempts,
       " attempts: ", errno_text(last_error));
}

// Waits for `events` on fd until the deadline; false on timeout.
inline bool poll_until(int fd, short events, steady_clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) fail(errc::transport, "poll: ", errno_text(errno));
  }
}

// Sends every byte or throws: timeout at the deadline, remote_failure when the
// peer has gone. `peer` names the other side in messages.
inline void send_all(int fd, std::span<const std::byte> data, steady_clock::time_point deadline,
                     std::string_view peer) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data = data.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!poll_until(fd, POLLOUT, deadline)) fail(errc::timeout, "sending to ", peer, " timed out");
    } else if (n < 0 && errno != EINTR) {
      fail(errc::remote_failure, "sending to ", peer, " failed: ", errno_text(errno));
    }
  }
}

inline void recv_all(int fd, std::span<std::byte> data, steady_clock::time_point deadline, std::string_view peer) {
  while (!data.empty()) {
    const ssize_t n = ::recv(fd, data.data(), data.size(), MSG_DONTWAIT);
    if (n > 0) {
      data = data.subspan(static_cast<std::size_t>(n));
    } else if (n == 0) {
      fail(errc::remote_failure, peer, " closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!poll_until(fd, POLLIN, deadline)) fail(errc::timeout, "waiting for ", peer, " timed out");
    } else if (errno != EINTR) {
      fail(errc::remote_failure, "receiving from ", peer, " failed: ", errno_text(errno));
    }
  }
}

}  // namespace tutti::detail
