// The TCP transport: non-blocking sockets, one connection per pair of ranks,
// for hosts without RDMA and for multi-host tests across network namespaces.
//
// Listening. The constructor binds a non-blocking listener to a free port on
// one address of the interface chosen by detail/net_interface.hpp
// (TUTTI_SOCKET_IFNAME, else the first up non-loopback interface that is not a
// docker/virbr bridge, else loopback). endpoint() is "address:port/nonce"
// (tcp/endpoint.hpp).
//
// Connections are made lazily, on the first post to a peer. Of each pair the
// higher rank connects and the lower accepts (in progress(), which accepts
// while a channel waits for its peer or after wait_for_activity saw the
// listener readable), so a pair ends up with exactly one connection whoever
// posts first. The connector retries until ctx.config.timeout and opens with
// a handshake the acceptor checks; a stray connection is closed with a
// warning and the transport carries on (tcp/connection.hpp, tcp/wire.hpp).
//
// Messages are length-prefixed and move straight between the posted buffers
// and the kernel's socket buffers, which are the flow control
// (tcp/channel.hpp).
//
// Failure: end of stream, ECONNRESET, EPIPE or another socket error fails the
// channel with errc::remote_failure naming the peer (the kernel closes a
// killed process's sockets, so this is immediate); the socket is closed and
// queued operations are dropped, so nothing more is read into or sent from
// user buffers, and other channels carry on. A peer that never connects
// surfaces as errc::timeout from wait_sent/wait_received.
//
// Environment: TUTTI_SOCKET_IFNAME (interface to listen on). The timeout is
// ctx.config.timeout (TUTTI_TIMEOUT); logging follows TUTTI_LOG.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/detail/net_interface.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/tcp/channel.hpp>
#include <tutti/transport/tcp/connection.hpp>
#include <tutti/transport/tcp/endpoint.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::transport {

class tcp_transport final : public transport {
 public:
  explicit tcp_transport(const context& ctx) : tcp_transport(ctx, tutti::detail::process_env) {}

  // `env` replaces the process environment (TUTTI_SOCKET_IFNAME), for tests.
  tcp_transport(const context& ctx, const tutti::detail::env_lookup& env)
      : state_{ctx.rank, ctx.size, ctx.config.timeout, 0, {}},
        interface_((validate(ctx), tutti::detail::select_interface(env))),
        acceptor_(interface_.address, ctx.rank, ctx.size, ctx.config.timeout) {
    endpoint_ = tutti::detail::tcp::format_endpoint({interface_.address, acceptor_.port()}, acceptor_.nonce());
    tutti::detail::log(tutti::detail::log_level::info, "tcp: rank ", state_.rank, " listens on ", endpoint_,
                       " (interface ", interface_.interface, ")");
  }

  tcp_transport(const tcp_transport&) = delete;
  tcp_transport& operator=(const tcp_transport&) = delete;
  ~tcp_transport() override = default;

  [[nodiscard]] std::string_view name() const noexcept override { return "tcp"; }
  [[nodiscard]] std::string endpoint() const override { return endpoint_; }
  // The interface the listener is on, e.g. "eth0".
  [[nodiscard]] const std::string& interface_name() const noexcept { return interface_.interface; }

  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    const int rank = state_.rank;
    const int size = state_.size;
    std::vector<std::unique_ptr<peer_channel>> channels(static_cast<std::size_t>(size));
    for (const int peer : peers) {
      if (peer < 0 || peer >= size || peer == rank) {
        tutti::detail::fail(errc::invalid_argument, "tcp: rank ", rank, " cannot serve peer ", peer, " in a world of ",
                            size);
      }
      const address_card* card = nullptr;
      for (const auto& c : cards) {
        if (c.rank == peer) card = &c;
      }
      if (card == nullptr) tutti::detail::fail(errc::invalid_argument, "tcp: no address card for rank ", peer);
      const std::string* text = card->endpoint_of(name());
      if (text == nullptr) {
        tutti::detail::fail(errc::unavailable, "tcp: rank ", peer, " (", card->describe(), ") has no tcp endpoint");
      }
      channels[static_cast<std::size_t>(peer)] =
          std::make_unique<peer_channel>(state_, peer, tutti::detail::tcp::parse_endpoint(*text, peer));
    }
    channels_ = std::move(channels);
    state_.active.clear();
    state_.active.reserve(peers.size());
    pollfds_.reserve(peers.size() + 1 + tutti::detail::tcp::acceptor::max_pending);
    attached_ = true;
  }

  channel& to(int peer) override {
    if (peer < 0 || peer >= static_cast<int>(channels_.size()) || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::invalid_argument, "tcp: rank ", peer, " is not a peer of rank ", state_.rank,
                          "'s transport");
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  // Connected peers, and the kernel's socket buffers for them: tcp keeps
  // nothing of its own (receives land in the posted buffers).
  [[nodiscard]] footprint held() const override {
    footprint out;
    for (const auto& c : channels_) {
      if (!c || c->state != link_state::connected) continue;
      ++out.connections;
      for (const int option : {SO_SNDBUF, SO_RCVBUF}) {
        int bytes = 0;
        socklen_t length = sizeof bytes;
        if (::getsockopt(c->fd.get(), SOL_SOCKET, option, &bytes, &length) == 0 && bytes > 0) {
          out.memory_bytes += static_cast<std::size_t>(bytes);
        }
      }
    }
    return out;
  }

  void progress() override {
    if (!attached_) return;
    acceptor_.progress(state_.accept_wanted > 0,
                       [this](std::uint32_t connector, tutti::detail::fd_handle& fd, const std::string& from) {
                         return adopt(connector, fd, from);
                       });
    auto& active = state_.active;
    const auto now = clock::now();
    for (std::size_t i = 0; i < active.size();) {
      peer_channel& c = *active[i];
      if (now < c.idle_until) {
        ++i;
        continue;
      }
      c.progress(now);
      if (c.quiet()) {
        c.active = false;
        active[i] = active.back();
        active.pop_back();
      } else {
        ++i;
      }
    }
  }

  void wait_for_activity(clock::time_point deadline) override {
    pollfds_.clear();
    acceptor_.watch(pollfds_, deadline);
    for (const peer_channel* c : state_.active) {
      const short events = c->poll_events(deadline);
      if (events != 0) pollfds_.push_back({c->fd.get(), events, 0});
    }
    bool polled = false;
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - clock::now()).count();
    if (left > 0) {
      const auto capped = std::min<std::int64_t>(left, std::int64_t{3600} * 1'000'000'000);
      const timespec wait{static_cast<time_t>(capped / 1'000'000'000), static_cast<long>(capped % 1'000'000'000)};
      polled = ::ppoll(pollfds_.data(), pollfds_.size(), &wait, nullptr) > 0;
    }
    for (peer_channel* c : state_.active) c->idle_until = {};
    acceptor_.polled(pollfds_, polled, clock::now());
  }

 private:
  using peer_channel = tutti::detail::tcp::peer_channel;
  using link_state = tutti::detail::tcp::link_state;

  static void validate(const context& ctx) {
    if (ctx.size < 1 || ctx.rank < 0 || ctx.rank >= ctx.size) {
      tutti::detail::fail(errc::invalid_argument, "tcp: rank ", ctx.rank, " in a world of ", ctx.size);
    }
  }

  // Hands a connection that passed the handshake to the connector's channel;
  // why not, when it cannot take it.
  std::string adopt(std::uint32_t connector, tutti::detail::fd_handle& fd, const std::string& from) {
    peer_channel* c = channels_[connector].get();
    if (c == nullptr) return tutti::detail::concat("rank ", connector, " is not a peer of this transport");
    if (c->state == link_state::connected) return tutti::detail::concat("rank ", connector, " is already connected");
    if (c->state == link_state::closed) {
      return tutti::detail::concat("the channel to rank ", connector, " has already failed");
    }
    c->adopt(std::move(fd), from);
    return {};
  }

  tutti::detail::tcp::transport_state state_;
  tutti::detail::interface_address interface_;
  tutti::detail::tcp::acceptor acceptor_;
  std::string endpoint_;
  bool attached_ = false;
  std::vector<std::unique_ptr<peer_channel>> channels_;
  std::vector<pollfd> pollfds_;
};

}  // namespace tutti::transport
