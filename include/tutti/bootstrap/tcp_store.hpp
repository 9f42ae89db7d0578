// The TCP store: a server (run by rank 0 in a background thread, or alone by
// the tutti-store tool) and a client per rank.
//
// The server lives in tcp_store_server.hpp, which this header includes:
// including it gives both.
//
// Authentication (optional shared secret, TUTTI_STORE_TOKEN): the server sends
// a random nonce; the client answers with its own nonce and
// HMAC-SHA256(token, "tutti-store-client" | server nonce | client nonce); the
// server answers with HMAC-SHA256(token, "tutti-store-server" | client nonce |
// server nonce), so each side proves knowledge of the token without sending
// it, and a process without it reads no key. A client that has a token
// refuses a server that does not ask for one.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/bootstrap/tcp_store_handshake.hpp>
#include <tutti/bootstrap/tcp_store_server.hpp>
#include <tutti/detail/sha256.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/detail/store_protocol.hpp>
#include <tutti/error.hpp>

namespace tutti {

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
