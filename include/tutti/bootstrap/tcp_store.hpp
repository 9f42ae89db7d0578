// The TCP store: a server (run by rank 0 in a background thread, or alone by
// the tutti-store tool) and a client per rank.
//
// Server: one thread, poll() over non-blocking sockets. Blocking requests
// (multi_get, wait) are parked until their keys exist or their deadline
// passes; a parked request is indexed by one key it still misses, so waking
// it costs O(keys) in total, not O(keys) per set. A connection that sends a
// malformed frame is closed; no frame can make the server allocate more than
// the frame's own validated size, and before authentication only
// handshake-sized frames are accepted.
//
// Authentication (optional shared secret, TUTTI_STORE_TOKEN): the server sends
// a random nonce; the client answers with its own nonce and
// HMAC-SHA256(token, "tutti-store-client" | server nonce | client nonce); the
// server answers with HMAC-SHA256(token, "tutti-store-server" | client nonce |
// server nonce), so each side proves knowledge of the token without sending
// it, and a process without it reads no key. A client that has a token
// refuses a server that does not ask for one.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/detail/sha256.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/detail/store_protocol.hpp>
#include <tutti/error.hpp>

namespace tutti {
namespace detail {

inline detail::store_wire::nonce random_nonce() {
  detail::store_wire::nonce out{};
  std::size_t filled = 0;
  while (filled < out.size()) {
    const ssize_t n = ::getrandom(out.data() + filled, out.size() - filled, 0);
    if (n < 0 && errno != EINTR) fail(errc::internal, "getrandom: ", errno_text(errno));
    if (n > 0) filled += static_cast<std::size_t>(n);
  }
  return out;
}

inline std::string_view as_text(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The proofs of the handshake; `role` keeps a client proof from being replayed
// as a server proof.
inline detail::store_wire::mac handshake_proof(std::string_view token, std::string_view role,
                                               const detail::store_wire::nonce& first,
                                               const detail::store_wire::nonce& second) {
  return hmac_sha256(token, {role, as_text(first), as_text(second)});
}

}  // namespace detail

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

class tcp_store final : public store {
 public:
  // Connects (retrying until `timeout`, since rank 0 may still be starting its
  // server) and authenticates. `timeout` also bounds non-blocking requests.
  tcp_store(detail::endpoint server, std::string token, std::chrono::milliseconds timeout)
      : server_(std::move(server)), name_("the store at " + server_.to_string()), timeout_(timeout) {
    const auto deadline = clock::now() + timeout;
    fd_ = detail::connect_to(server_, deadline);
    handshake(token, deadline);
  }

  void set(std::string_view key, std::string_view value) override {
    call(store_wire_request(detail::store_wire::opcode::set, {key}, {value}));
  }
  std::string get(std::string_view key, timeout_type timeout) override {
    const std::string keys[] = {std::string(key)};
    return std::move(multi_get(keys, timeout).front());
  }
  std::vector<std::string> multi_get(std::span<const std::string> keys, timeout_type timeout) override {
    return call(blocking_request(detail::store_wire::opcode::multi_get, keys, timeout), timeout).items;
  }
  std::int64_t add(std::string_view key, std::int64_t delta) override {
    auto request = store_wire_request(detail::store_wire::opcode::add, {key}, {});
    request.number = delta;
    return call(std::move(request)).number;
  }
  std::string compare_set(std::string_view key, std::string_view expected, std::string_view desired) override {
    return std::move(
        call(store_wire_request(detail::store_wire::opcode::compare_set, {key}, {expected, desired})).items.at(0));
  }
  void wait(std::span<const std::string> keys, timeout_type timeout) override {
    call(blocking_request(detail::store_wire::opcode::wait, keys, timeout), timeout);
  }
  std::vector<bool> contains(std::span<const std::string> keys) override {
    auto request = store_wire_request(detail::store_wire::opcode::contains, {}, {});
    request.keys.assign(keys.begin(), keys.end());
    const auto reply = call(std::move(request));
    const std::string& flags = reply.items.at(0);
    if (flags.size() != keys.size()) {
      detail::fail(errc::remote_failure, name_, " answered ", flags.size(), " flags for ", keys.size(), " keys");
    }
    std::vector<bool> out;
    for (const char f : flags) out.push_back(f != '\0');
    return out;
  }
  bool erase(std::string_view key) override {
    return call(store_wire_request(detail::store_wire::opcode::erase, {key}, {})).number != 0;
  }

 private:
  using clock = std::chrono::steady_clock;
  // How long past a blocking request's own timeout the client waits for the
  // server's answer before deciding the server is gone.
  static constexpr std::chrono::seconds server_grace{5};

  static detail::store_wire::request store_wire_request(detail::store_wire::opcode op,
                                                        std::initializer_list<std::string_view> keys,
                                                        std::initializer_list<std::string_view> values) {
    detail::store_wire::request request;
    request.op = op;
    for (const auto k : keys) request.keys.emplace_back(k);
    for (const auto v : values) request.values.emplace_back(v);
    return request;
  }

  static detail::store_wire::request blocking_request(detail::store_wire::opcode op, std::span<const std::string> keys,
                                                      timeout_type timeout) {
    if (keys.empty()) detail::fail(errc::invalid_argument, "store: waiting on an empty list of keys");
    auto request = store_wire_request(op, {}, {});
    request.keys.assign(keys.begin(), keys.end());
    request.timeout_ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(timeout.count(), 0, 0x7fff'ffff));
    return request;
  }

  void handshake(const std::string& token, clock::time_point deadline) {
    namespace wire = detail::store_wire;
    const auto hello = wire::decode_server_hello(receive_frame(deadline));
    if (hello.auth_required && token.empty()) {
      detail::fail(errc::remote_failure, name_, " requires a token: set TUTTI_STORE_TOKEN");
    }
    if (!hello.auth_required && !token.empty()) {
      detail::fail(errc::remote_failure, name_,
                   " does not ask for a token, but TUTTI_STORE_TOKEN is set here: refusing to talk to it");
    }
    wire::client_hello reply;
    reply.client_nonce = detail::random_nonce();
    if (!token.empty()) {
      reply.proof = detail::handshake_proof(token, "tutti-store-client", hello.server_nonce, reply.client_nonce);
    }
    detail::send_all(fd_.get(), wire::encode(reply), deadline, name_);
    const auto verdict = wire::decode_verdict(receive_frame(deadline));
    if (!verdict.accepted) detail::fail(errc::remote_failure, name_, " refused this process: wrong TUTTI_STORE_TOKEN");
    if (!token.empty()) {
      const auto expected =
          detail::handshake_proof(token, "tutti-store-server", reply.client_nonce, hello.server_nonce);
      if (!detail::constant_time_equal(expected, verdict.proof)) {
        detail::fail(errc::remote_failure, name_, " could not prove that it knows TUTTI_STORE_TOKEN");
      }
    }
  }

  std::vector<std::byte> receive_frame(clock::time_point deadline) {
    std::byte prefix[4];
    detail::recv_all(fd_.get(), prefix, deadline, name_);
    std::vector<std::byte> body(detail::store_wire::frame_length(std::span<const std::byte, 4>(prefix)));
    detail::recv_all(fd_.get(), body, deadline, name_);
    return body;
  }

  detail::store_wire::response call(detail::store_wire::request request,
                                    std::optional<timeout_type> blocking = std::nullopt) {
    namespace wire = detail::store_wire;
    for (const auto& key : request.keys) {
      if (key.size() > wire::max_key) {
        detail::fail(errc::invalid_argument, "store: key of ", key.size(), " bytes exceeds ", wire::max_key);
      }
    }
    const auto frame = wire::encode(request);
    const auto deadline = clock::now() + (blocking ? *blocking + server_grace : timeout_);
    const std::scoped_lock lock(mutex_);
    if (broken_) detail::fail(errc::remote_failure, name_, " failed earlier; the connection is closed");
    wire::response reply;
    try {
      detail::send_all(fd_.get(), frame, deadline, name_);
      reply = wire::decode_response(receive_frame(deadline));
    } catch (const error&) {
      // A lost server or a garbled reply leaves the connection out of step.
      broken_ = true;
      throw;
    }
    if (reply.code == wire::status::timeout) {
      detail::fail_store_timeout(name_, reply.items, request.keys.size(), blocking.value_or(timeout_));
    }
    if (reply.code == wire::status::error) {
      detail::fail(errc::invalid_argument, reply.items.empty() ? "store: error" : reply.items[0]);
    }
    return reply;
  }

  detail::endpoint server_;
  std::string name_;
  std::chrono::milliseconds timeout_;
  detail::fd_handle fd_;
  std::mutex mutex_;
  bool broken_ = false;
};

}  // namespace tutti
