// How a pair of ranks of the tcp transport gets its one connection: the
// higher rank connects, the lower accepts and checks the handshake. A part of
// its own because it is setup, off the message path of tcp/channel.hpp:
// retries, handshakes and the refusal of connections that are not ours.
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <tutti/detail/log.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/tcp/endpoint.hpp>
#include <tutti/transport/tcp/wire.hpp>

namespace tutti::detail::tcp {

// Why an acceptor of rank `rank` refuses `h`; empty when the fields are right.
inline std::string refusal(const hello& h, int rank, int world_size, std::uint64_t nonce) {
  if (h.magic != magic) return "it is not a tutti tcp handshake";
  if (h.version != protocol_version) return concat("protocol version ", h.version, " (this is ", protocol_version, ")");
  if (h.nonce != nonce) return "wrong nonce (the connection is meant for another transport or job)";
  if (h.acceptor != static_cast<std::uint32_t>(rank)) return concat("it is meant for rank ", h.acceptor);
  if (h.world_size != static_cast<std::uint32_t>(world_size)) return concat("world size ", h.world_size);
  if (h.connector <= static_cast<std::uint32_t>(rank) || h.connector >= static_cast<std::uint32_t>(world_size)) {
    return concat("rank ", h.connector, " does not connect to rank ", rank);
  }
  return {};
}

// The connecting side of a channel. The peer's address is resolved once;
// refused or unreachable attempts are retried with backoff (1 ms doubling to
// 100 ms) for the transport's timeout after the first; then the channel fails
// with errc::timeout naming the peer's rank and address. The socket being
// connected is the channel's, so that its poll set can wait on it.
class connector {
 public:
  // Where a step left the connection.
  enum class outcome { connecting, connected, retrying, failed };

  explicit connector(endpoint where) : where_(std::move(where)) {}

  void start(steady_clock::time_point now, std::chrono::milliseconds timeout) noexcept {
    started_ = now;
    deadline_ = now + timeout;
  }

  // `who` names the peer in errors (as every step's).
  outcome attempt(fd_handle& fd, const std::string& who) {
    ++attempts_;
    if (resolved_length_ == 0 && !resolve(who)) return outcome::failed;
    fd_handle socket(::socket(resolved_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!socket.valid()) {
      return failed(errc::transport, concat("cannot create a socket to connect to ", who, ": ", errno_text(errno)));
    }
    set_nodelay(socket.get());
    const int rc = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&resolved_), resolved_length_);
    const int code = rc == 0 ? 0 : errno;
    if (rc == 0 || code == EINPROGRESS || code == EINTR) {
      fd = std::move(socket);
      return rc == 0 ? outcome::connected : outcome::connecting;
    }
    return refused(fd, code, who);
  }

  // Whether the connect in flight on `fd` has finished.
  outcome check(fd_handle& fd, steady_clock::time_point now, const std::string& who) {
    pollfd p{fd.get(), POLLOUT, 0};
    const int ready = ::poll(&p, 1, 0);
    if (ready <= 0) {  // still in progress (or interrupted: look again)
      return now >= deadline_ ? refused(fd, ETIMEDOUT, who) : outcome::connecting;
    }
    int code = 0;
    socklen_t length = sizeof code;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &code, &length) != 0) code = errno;
    return code == 0 ? outcome::connected : refused(fd, code, who);
  }

  [[nodiscard]] steady_clock::time_point deadline() const noexcept { return deadline_; }
  [[nodiscard]] steady_clock::time_point retry_at() const noexcept { return retry_at_; }
  [[nodiscard]] int attempts() const noexcept { return attempts_; }
  // After outcome::failed: what the channel fails with.
  [[nodiscard]] errc failure_code() const noexcept { return failure_code_; }
  [[nodiscard]] const std::string& failure() const noexcept { return failure_; }

 private:
  bool resolve(const std::string& who) {
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(where_.host.c_str(), std::to_string(where_.port).c_str(), &hints, &list);
    if (rc != 0 || list == nullptr || list->ai_addrlen > sizeof resolved_) {
      failed(errc::invalid_argument,
             concat("cannot connect to ", who, ": ", rc != 0 ? ::gai_strerror(rc) : "no address"));
      if (list != nullptr) ::freeaddrinfo(list);
      return false;
    }
    std::memcpy(&resolved_, list->ai_addr, list->ai_addrlen);
    resolved_length_ = list->ai_addrlen;
    ::freeaddrinfo(list);
    return true;
  }

  outcome refused(fd_handle& fd, int code, const std::string& who) {
    fd.reset();
    if (code == EACCES || code == EPERM || code == EAFNOSUPPORT || code == EINVAL) {
      return failed(errc::transport, concat("cannot connect to ", who, ": ", errno_text(code)));
    }
    const auto now = steady_clock::now();
    if (now + backoff_ >= deadline_) {
      const std::chrono::duration<double> spent = now - started_;
      return failed(errc::timeout, concat("cannot connect to ", who, ": ", attempts_, " attempts in ", spent.count(),
                                          " s, the last: ", errno_text(code)));
    }
    retry_at_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::microseconds(100'000));
    return outcome::retrying;
  }

  outcome failed(errc code, std::string message) {
    failure_code_ = code;
    failure_ = std::move(message);
    return outcome::failed;
  }

  endpoint where_;
  sockaddr_storage resolved_{};
  socklen_t resolved_length_ = 0;
  int attempts_ = 0;
  std::chrono::microseconds backoff_{1000};
  steady_clock::time_point started_{};
  steady_clock::time_point deadline_{};
  steady_clock::time_point retry_at_{};
  errc failure_code_ = errc::internal;
  std::string failure_;
};

// The accepting side of a transport: its listener, and the connections that
// have not completed their handshake yet. The acceptor checks every field of
// the handshake, and its owner that the connector's channel is still
// unconnected; a connection that fails, or sends no handshake within the
// timeout, is closed with a warning and the transport carries on.
class acceptor {
 public:
  static constexpr std::size_t max_pending = 64;

  // Listens on a free port of `address`.
  acceptor(const std::string& address, int rank, int world_size, std::chrono::milliseconds timeout)
      : listener_(listen_on({address, 0})), nonce_(random_nonce()), rank_(rank), size_(world_size), timeout_(timeout) {
    set_nonblocking(listener_.get());
  }

  [[nodiscard]] std::uint16_t port() const { return bound_port(listener_.get()); }
  // What connectors must present, published in the endpoint.
  [[nodiscard]] std::uint64_t nonce() const noexcept { return nonce_; }

  // Accepts and reads handshakes while `wanted` (a channel waits for its
  // peer) or after polling saw something. `adopt(connector, fd, from)` hands
  // a connection that passed the handshake to its channel and returns why it
  // cannot, if it cannot.
  template <class Adopt>
  void progress(bool wanted, Adopt&& adopt) {
    if (wanted || listener_ready_) accept_connections();
    if (!pending_.empty() && (wanted || handshakes_ready_)) service_handshakes(adopt);
  }

  // Puts the listener and the pending connections into a poll set, and
  // brings `deadline` forward to the first handshake's.
  void watch(std::vector<pollfd>& fds, steady_clock::time_point& deadline) const {
    fds.push_back({listener_.get(), POLLIN, 0});
    for (const auto& p : pending_) {
      fds.push_back({p.fd.get(), POLLIN, 0});
      deadline = std::min(deadline, p.deadline);
    }
  }

  // After the poll of what watch() put first into `fds` (`any`: the poll
  // returned events): a pending handshake that became readable or expired
  // is looked at next.
  void polled(std::span<const pollfd> fds, bool any, steady_clock::time_point now) noexcept {
    if (any && fds[0].revents != 0) listener_ready_ = true;
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      if (fds[i + 1].revents != 0 || now >= pending_[i].deadline) handshakes_ready_ = true;
    }
  }

 private:
  struct pending_connection {
    fd_handle fd;
    std::string from;
    steady_clock::time_point deadline;
    std::array<std::byte, hello_size> bytes{};
    std::size_t received = 0;
  };

  void accept_connections() {
    listener_ready_ = false;
    while (true) {
      sockaddr_storage from{};
      socklen_t length = sizeof from;
      const int accepted =
          ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&from), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (accepted < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          log(log_level::warn, "tcp: rank ", rank_, ": accept: ", errno_text(errno));
        }
        return;
      }
      if (pending_.size() >= max_pending) {
        log(log_level::warn, "tcp: rank ", rank_, " closes a connection from ", pending_.front().from,
            ": too many connections without a handshake");
        pending_.erase(pending_.begin());
      }
      pending_.push_back({fd_handle(accepted), describe(from), steady_clock::now() + timeout_, {}, 0});
      handshakes_ready_ = true;
    }
  }

  template <class Adopt>
  void service_handshakes(Adopt& adopt) {
    handshakes_ready_ = false;
    const auto now = steady_clock::now();
    std::erase_if(pending_, [&](pending_connection& p) { return !read_handshake(p, now, adopt); });
  }

  // False once the connection is settled: adopted by its channel, or closed.
  template <class Adopt>
  bool read_handshake(pending_connection& p, steady_clock::time_point now, Adopt& adopt) {
    auto reject = [&](const auto&... why) {
      log(log_level::warn, "tcp: rank ", rank_, " rejects a connection from ", p.from, ": ", why...);
      return false;
    };
    while (p.received < p.bytes.size()) {
      const ssize_t n = ::recv(p.fd.get(), p.bytes.data() + p.received, p.bytes.size() - p.received, MSG_DONTWAIT);
      if (n > 0) {
        p.received += static_cast<std::size_t>(n);
      } else if (n == 0) {
        return reject("it closed before completing the handshake");
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (now >= p.deadline)
          return reject("no handshake within ", std::chrono::duration<double>(timeout_).count(), " s");
        return true;
      } else if (errno != EINTR) {
        return reject(errno_text(errno));
      }
    }
    const auto h = decode(p.bytes);
    if (auto why = refusal(h, rank_, size_, nonce_); !why.empty()) return reject(why);
    if (auto why = adopt(h.connector, p.fd, p.from); !why.empty()) return reject(why);
    return false;
  }

  fd_handle listener_;
  std::uint64_t nonce_;
  int rank_;
  int size_;
  std::chrono::milliseconds timeout_;
  bool listener_ready_ = false;
  bool handshakes_ready_ = false;
  std::vector<pending_connection> pending_;
};

}  // namespace tutti::detail::tcp
