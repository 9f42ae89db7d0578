// The TCP store's server (tcp_store.hpp), run by rank 0 in a background
// thread or alone by the tutti-store tool.
//
// One thread, poll() over non-blocking sockets. Blocking requests
// (multi_get, wait) are parked until their keys exist or their deadline
// passes; a parked request is indexed by one key it still misses, so waking
// it costs O(keys) in total, not O(keys) per set. A connection that sends a
// malformed frame is closed; no frame can make the server allocate more than
// the frame's own validated size, and before authentication only
// handshake-sized frames are accepted.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/bootstrap/tcp_store_handshake.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/detail/sha256.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/detail/store_protocol.hpp>
#include <tutti/error.hpp>

namespace tutti {

class tcp_store_server {
 public:
  // Listens on `where` (port 0 picks a free port, see port()). An empty token
  // means no authentication.
  explicit tcp_store_server(const detail::endpoint& where, std::string token = {})
      : token_(std::move(token)),
        listener_(detail::listen_on(where)),
        wakeup_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        port_(detail::bound_port(listener_.get())),
        address_{where.host, port_} {
    if (!wakeup_.valid()) detail::fail(errc::transport, "eventfd: ", detail::errno_text(errno));
    detail::set_nonblocking(listener_.get());
    thread_ = std::thread([this] { run(); });
  }

  tcp_store_server(const tcp_store_server&) = delete;
  tcp_store_server& operator=(const tcp_store_server&) = delete;
  ~tcp_store_server() { stop(); }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // Clients connected now (authenticated or not).
  [[nodiscard]] std::size_t connections() const noexcept { return connection_count_.load(); }

  // Keeps serving until every client has gone or `longest` has passed: a rank
  // 0 that failed bootstrap lingers so the others can still read why.
  void linger(std::chrono::milliseconds longest) const {
    const auto deadline = clock::now() + longest;
    while (connections() > 0 && clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  [[nodiscard]] const detail::endpoint& address() const noexcept { return address_; }

  void stop() {
    if (!thread_.joinable()) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wakeup_.get(), &one, sizeof one);
    thread_.join();
  }

 private:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t handshake_frame_limit = 256;

  struct parked_request {
    detail::store_wire::request request;
    clock::time_point deadline;
    std::size_t next_key = 0;  // keys before it were present when last checked
  };

  struct connection {
    std::uint64_t id = 0;
    detail::fd_handle fd;
    std::vector<std::byte> in;
    std::vector<std::byte> out;
    std::size_t out_sent = 0;
    bool authenticated = false;
    bool closing = false;  // close once `out` is flushed
    detail::store_wire::nonce server_nonce{};
    std::optional<parked_request> parked;
  };

  void run() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    while (true) {
      fds.clear();
      ids.clear();
      fds.push_back({wakeup_.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      for (auto& [id, c] : connections_) {
        short events = 0;
        if (!c.parked && !c.closing) events |= POLLIN;
        if (c.out_sent < c.out.size()) events |= POLLOUT;
        fds.push_back({c.fd.get(), events, 0});
        ids.push_back(id);
      }
      const int ready = ::poll(fds.data(), fds.size(), poll_timeout_ms());
      if (ready < 0 && errno != EINTR) {
        detail::log(detail::log_level::error, "store server: poll: ", detail::errno_text(errno));
        return;
      }
      if (fds[0].revents != 0) return;  // stop()
      if (fds[1].revents != 0) accept_all();
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (fds[i + 2].revents != 0) service(ids[i], fds[i + 2].revents);
      }
      expire_parked();
      std::erase_if(connections_, [](const auto& entry) {
        const connection& c = entry.second;
        return !c.fd.valid() || (c.closing && c.out_sent == c.out.size());
      });
      connection_count_.store(connections_.size());
    }
  }

  int poll_timeout_ms() const {
    std::optional<clock::time_point> nearest;
    for (const auto& [id, c] : connections_) {
      if (c.parked && (!nearest || c.parked->deadline < *nearest)) nearest = c.parked->deadline;
    }
    if (!nearest) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*nearest - clock::now()).count();
    return static_cast<int>(std::clamp<std::int64_t>(left, 0, 1 << 30));
  }

  void accept_all() {
    while (true) {
      detail::fd_handle fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd.valid()) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          detail::log(detail::log_level::warn, "store server: accept: ", detail::errno_text(errno));
        }
        return;
      }
      detail::set_nodelay(fd.get());
      connection c;
      c.id = next_id_++;
      c.fd = std::move(fd);
      c.server_nonce = detail::random_nonce();
      queue(c, detail::store_wire::encode(detail::store_wire::server_hello{!token_.empty(), c.server_nonce}));
      const auto id = c.id;
      connections_.emplace(id, std::move(c));
    }
  }

  void service(std::uint64_t id, short revents) {
    connection& c = connections_.at(id);
    if ((revents & POLLOUT) != 0) flush(c);
    if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && c.fd.valid() && !c.closing) {
      read_available(c);
      try {
        process_frames(c);
      } catch (const error& e) {
        detail::log(detail::log_level::warn, "store server: closing a connection: ", e.what());
        c.fd.reset();
      }
    }
  }

  void read_available(connection& c) {
    std::byte buffer[64 * 1024];
    while (true) {
      const ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
      if (n > 0) {
        c.in.insert(c.in.end(), buffer, buffer + n);
        if (c.in.size() > detail::store_wire::max_frame + 4) return;  // process_frames rejects or consumes it
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c.fd.reset();
      return;
    }
  }

  void process_frames(connection& c) {
    std::size_t consumed = 0;
    while (c.fd.valid() && !c.parked && !c.closing && c.in.size() - consumed >= 4) {
      const std::span<const std::byte, 4> prefix(c.in.data() + consumed, 4);
      const std::size_t length = detail::store_wire::frame_length(prefix);
      if (!c.authenticated && length > handshake_frame_limit) {
        detail::store_wire::malformed(detail::concat("handshake frame of ", length, " bytes"));
      }
      if (c.in.size() - consumed - 4 < length) break;
      const std::span<const std::byte> body(c.in.data() + consumed + 4, length);
      consumed += 4 + length;
      if (c.authenticated) {
        handle(c, detail::store_wire::decode_request(body));
      } else {
        authenticate(c, detail::store_wire::decode_client_hello(body));
      }
    }
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(consumed));
  }

  void authenticate(connection& c, const detail::store_wire::client_hello& hello) {
    detail::store_wire::verdict verdict;
    if (token_.empty()) {
      verdict.accepted = true;
    } else {
      const auto expected = detail::handshake_proof(token_, "tutti-store-client", c.server_nonce, hello.client_nonce);
      verdict.accepted = detail::constant_time_equal(expected, hello.proof);
      if (verdict.accepted) {
        verdict.proof = detail::handshake_proof(token_, "tutti-store-server", hello.client_nonce, c.server_nonce);
      }
    }
    queue(c, detail::store_wire::encode(verdict));
    if (verdict.accepted) {
      c.authenticated = true;
    } else {
      detail::log(detail::log_level::warn, "store server: refused a client with a wrong token");
      c.closing = true;
    }
  }

  void handle(connection& c, detail::store_wire::request request) {
    using detail::store_wire::opcode;
    detail::store_wire::response reply;
    switch (request.op) {
      case opcode::set:
        values_.insert_or_assign(request.keys[0], std::move(request.values[0]));
        changed(request.keys[0]);
        break;
      case opcode::add: {
        std::string& text = values_[request.keys[0]];
        try {
          reply.number = detail::add_to_counter(request.keys[0], text, request.number);
        } catch (const error& e) {
          reply.code = detail::store_wire::status::error;
          reply.items.push_back(e.message());
          break;
        }
        text = std::to_string(reply.number);
        changed(request.keys[0]);
        break;
      }
      case opcode::compare_set: {
        const auto found = values_.find(request.keys[0]);
        const std::string current = found == values_.end() ? std::string{} : found->second;
        if (current == request.values[0]) {
          values_.insert_or_assign(request.keys[0], request.values[1]);
          reply.items.push_back(std::move(request.values[1]));
          changed(request.keys[0]);
        } else {
          reply.items.push_back(current);
        }
        break;
      }
      case opcode::contains: {
        std::string flags;
        for (const auto& key : request.keys) flags.push_back(values_.contains(key) ? '\1' : '\0');
        reply.items.push_back(std::move(flags));
        break;
      }
      case opcode::erase: reply.number = values_.erase(request.keys[0]) != 0 ? 1 : 0; break;
      case opcode::multi_get:
      case opcode::wait: {
        const auto deadline = clock::now() + std::chrono::milliseconds(request.timeout_ms);
        c.parked = parked_request{std::move(request), deadline, 0};
        try_complete(c);
        return;
      }
    }
    queue(c, detail::store_wire::encode(reply));
  }

  // Answers a parked request if all its keys exist; otherwise indexes it
  // under the first missing key.
  void try_complete(connection& c) {
    parked_request& p = *c.parked;
    const auto& keys = p.request.keys;
    while (p.next_key < keys.size() && values_.contains(keys[p.next_key])) ++p.next_key;
    if (p.next_key < keys.size()) {
      waiters_[keys[p.next_key]].push_back(c.id);
      return;
    }
    // Keys seen earlier may have been erased since: re-check from the start.
    if (!std::all_of(keys.begin(), keys.end(), [&](const auto& k) { return values_.contains(k); })) {
      p.next_key = 0;
      try_complete(c);
      return;
    }
    detail::store_wire::response reply;
    if (p.request.op == detail::store_wire::opcode::multi_get) {
      for (const auto& key : keys) reply.items.push_back(values_.at(key));
    }
    c.parked.reset();
    queue(c, detail::store_wire::encode(reply));
  }

  void changed(const std::string& key) {
    const auto found = waiters_.find(key);
    if (found == waiters_.end()) return;
    const std::vector<std::uint64_t> ids = std::move(found->second);
    waiters_.erase(found);
    for (const auto id : ids) {
      const auto c = connections_.find(id);
      if (c != connections_.end() && c->second.fd.valid() && c->second.parked) try_complete(c->second);
    }
  }

  void expire_parked() {
    const auto now = clock::now();
    for (auto& [id, c] : connections_) {
      if (!c.parked || c.parked->deadline > now) continue;
      detail::store_wire::response reply;
      reply.code = detail::store_wire::status::timeout;
      for (const auto& key : c.parked->request.keys) {
        if (!values_.contains(key)) reply.items.push_back(key);
      }
      c.parked.reset();
      queue(c, detail::store_wire::encode(reply));
    }
  }

  void queue(connection& c, std::vector<std::byte> frame) {
    if (c.out_sent == c.out.size()) {
      c.out.clear();
      c.out_sent = 0;
    }
    c.out.insert(c.out.end(), frame.begin(), frame.end());
    flush(c);
  }

  static void flush(connection& c) {
    while (c.fd.valid() && c.out_sent < c.out.size()) {
      const ssize_t n =
          ::send(c.fd.get(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out_sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        c.fd.reset();
      } else {
        return;
      }
    }
  }

  std::string token_;
  detail::fd_handle listener_;
  detail::fd_handle wakeup_;
  std::uint16_t port_;
  detail::endpoint address_;
  std::unordered_map<std::string, std::string> values_;
  std::map<std::uint64_t, connection> connections_;
  std::unordered_map<std::string, std::vector<std::uint64_t>> waiters_;
  std::uint64_t next_id_ = 0;
  std::atomic<std::size_t> connection_count_{0};
  std::thread thread_;
};

}  // namespace tutti
