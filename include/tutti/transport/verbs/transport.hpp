// The verbs transport: RDMA over InfiniBand or RoCE through libibverbs,
// loaded at run time (verbs/loader.hpp) on the port verbs/device.hpp picks.
//
// Connections. One RC queue pair per peer, made lazily: the first post to a
// peer creates the QP and publishes its record under a store key;
// progress() polls the store for the peer's (one batched lookup for all
// connecting peers, at most every 200 us) and connects the QP once the
// peer's is there; sending starts when both ends are ready
// (verbs/connection.hpp).
//
// Receive resources: one shared receive queue serves every QP
// (verbs/resources.hpp), so receive WQEs do not grow with the number of
// peers; what does is the eager ring per connected peer, which laziness
// bounds to the peers the schedules use.
//
// Eager protocol (messages up to TUTTI_IB_EAGER_LIMIT): RDMA WRITE WITH
// IMMEDIATE into the next slot of the peer's ring, done as soon as it is
// posted; the writer holds one credit per free slot and the reader returns
// them with its own messages (verbs/slot_channel.hpp). A ping-pong thus
// costs one packet (and its acknowledgement) each way, as a bare RDMA WRITE
// does.
//
// Rendezvous (larger messages): ready to send, clear to send with the
// destination's address and rkey, then RDMA WRITEs straight into the
// destination in chunks, the last one WITH IMMEDIATE
// (verbs/peer_channel.hpp).
//
// Failure: a channel waiting on a silent peer probes it every second with a
// zero-byte RDMA WRITE, which the peer's adapter acknowledges on its own;
// a dead peer's QP does not, and the retries end in a completion error
// (TUTTI_IB_TIMEOUT, TUTTI_IB_RETRY_CNT: about half a second by default). A
// completion error is decoded (status string, vendor error) and
// fails the channel of the QP it came from, naming the peer and the QP; the
// wrong-GID-index symptom (status 12, retry exceeded) says which GID was
// used and how to choose another. Abandoning a channel moves its QP to the
// error state, so nothing more is written into or read from posted buffers.
//
// Environment: TUTTI_IB_HCA, TUTTI_IB_GID_INDEX (verbs/device.hpp),
// TUTTI_IB_EAGER_LIMIT, TUTTI_IB_SLOTS, TUTTI_IB_CHUNK_BYTES,
// TUTTI_IB_TIMEOUT, TUTTI_IB_RETRY_CNT (verbs/settings.hpp),
// TUTTI_IB_REG_CACHE and TUTTI_IB_REG_CACHE_BYTES (verbs/memory.hpp),
// TUTTI_IB_LIBRARY (verbs/loader.hpp).
#pragma once

#include <infiniband/verbs.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/topology/discover.hpp>
#include <tutti/topology/nic_choice.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/verbs/device.hpp>
#include <tutti/transport/verbs/loader.hpp>
#include <tutti/transport/verbs/memory.hpp>
#include <tutti/transport/verbs/peer_channel.hpp>
#include <tutti/transport/verbs/resources.hpp>
#include <tutti/transport/verbs/settings.hpp>
#include <tutti/transport/verbs/slot_channel.hpp>
#include <tutti/transport/verbs/transport_state.hpp>
#include <tutti/transport/verbs/wire.hpp>

namespace tutti::transport {

class verbs_transport final : public transport {
 public:
  explicit verbs_transport(const context& ctx) : verbs_transport(ctx, tutti::detail::process_env) {}

  // Throws errc::unavailable when there is no usable RDMA port.
  verbs_transport(const context& ctx, const tutti::detail::env_lookup& env)
      : state_(ctx, env, [&] { return nearest_device(ctx.local_rank_hint, env); }), size_(ctx.size) {
    state_.resources.emplace(*state_.f, state_.device.context());
    state_.registrations = std::make_unique<tutti::detail::verbs::registration_cache>(
        *state_.f, state_.resources->pd, state_.settings.cache_registrations, state_.settings.cache_budget);
    state_.resources->post_receives(tutti::detail::verbs::srq_depth);
    tutti::detail::log(tutti::detail::log_level::info, "verbs: rank ", state_.rank, " uses ",
                       state_.device.port().describe(), ", MTU ",
                       tutti::detail::verbs::mtu_bytes(state_.device.port().active_mtu));
  }

  verbs_transport(const verbs_transport&) = delete;
  verbs_transport& operator=(const verbs_transport&) = delete;

  // The device the host's topology gives local rank `local_rank` (its GPU's
  // nearest NIC, else its CPUs'; see topology/nic_choice.hpp), or "" when
  // the rank or the topology does not say.
  static std::string nearest_device(int local_rank, const tutti::detail::env_lookup& env) {
    try {
      const auto chosen = topology::nic_for_local_rank(topology::this_machine(), local_rank, env);
      return chosen ? chosen->name : std::string();
    } catch (const error& e) {
      tutti::detail::log(tutti::detail::log_level::warn, "verbs: no NIC choice from the topology: ", e.message());
      return {};
    }
  }
  ~verbs_transport() override {
    channels_.clear();  // QPs before the CQs and SRQ they use
  }

  [[nodiscard]] std::string_view name() const noexcept override { return "verbs"; }
  [[nodiscard]] std::string endpoint() const override {
    return tutti::detail::verbs::port_address::encode(state_.device.port());
  }
  [[nodiscard]] const tutti::detail::verbs::port_choice& port() const noexcept { return state_.device.port(); }

  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    channels_.clear();
    channels_.resize(static_cast<std::size_t>(size_));
    for (const int peer : peers) {
      const address_card* card = nullptr;
      for (const auto& c : cards) {
        if (c.rank == peer) card = &c;
      }
      const std::string* text = card != nullptr ? card->endpoint_of(name()) : nullptr;
      if (text == nullptr) {
        tutti::detail::fail(errc::unavailable, "verbs: rank ", peer, " has no verbs endpoint (no RDMA device there?)");
      }
      const auto theirs = tutti::detail::verbs::port_address::decode(*text, peer);
      if (theirs.roce != state_.device.port().roce) {
        tutti::detail::fail(errc::unavailable, "verbs: rank ", peer, "'s port is ", theirs.roce ? "RoCE" : "InfiniBand",
                            " and rank ", state_.rank, "'s is ", state_.device.port().roce ? "RoCE" : "InfiniBand");
      }
      channels_[static_cast<std::size_t>(peer)] = std::make_unique<peer_channel>(state_, peer, theirs);
    }
  }

  channel& to(int peer) override {
    if (peer < 0 || peer >= static_cast<int>(channels_.size()) || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::invalid_argument, "verbs: rank ", peer, " is not a peer of rank ", state_.rank,
                          "'s transport");
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  // Keeps [data, data + bytes) registered until unregister_memory, so
  // rendezvous transfers from and into it cost no registration.
  void register_memory(const void* data, std::size_t bytes) override { state_.registrations->pin(data, bytes); }
  void unregister_memory(const void* data) override { state_.registrations->unpin(data); }
  [[nodiscard]] const tutti::detail::verbs::registration_cache& registrations() const noexcept {
    return *state_.registrations;
  }
  // The RDMA device of the chosen port: the cluster view's rail.
  [[nodiscard]] std::string nic() const override { return port().device; }

  // Peers with a queue pair, and the registered eager ring and staging
  // slots each holds.
  [[nodiscard]] footprint held() const override {
    footprint out;
    for (const auto& c : channels_) {
      if (!c || !c->has_queue_pair()) continue;
      ++out.connections;
      out.memory_bytes += c->registered_bytes();
    }
    return out;
  }

  void progress() override {
    poll_completions();
    if (!state_.connecting.empty()) advance_connections();
    for (std::size_t i = 0; i < state_.busy.size(); ++i) state_.busy[i]->pump();
    std::erase_if(state_.busy, [](peer_channel* c) { return !c->busy(); });
  }

  void wait_for_activity(clock::time_point deadline) override {
    // Connections progress through the store, which cannot wake us.
    if (!state_.connecting.empty()) deadline = std::min(deadline, clock::now() + std::chrono::microseconds(200));
    state_.resources->arm();
    poll_completions();  // what arrived before arming would not wake the channel
    const auto now = clock::now();
    if (now >= deadline) return;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{state_.resources->events->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(ms, 1000))) > 0) state_.resources->consume_events();
  }

 private:
  using peer_channel = tutti::detail::verbs::peer_channel;

  peer_channel* channel_of(std::uint32_t qp_num) {
    const auto found = state_.qp_owners.find(qp_num);
    return found == state_.qp_owners.end() ? nullptr : found->second;
  }

  void poll_completions() {
    std::array<ibv_wc, 32> wcs;
    for (;;) {
      const int n = ibv_poll_cq(state_.resources->recv_cq, static_cast<int>(wcs.size()), wcs.data());
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) {
        const ibv_wc& wc = wcs[static_cast<std::size_t>(i)];
        peer_channel* c = channel_of(wc.qp_num);
        if (c == nullptr) continue;
        if (wc.status != IBV_WC_SUCCESS) {
          c->on_error(wc);
        } else {
          c->on_arrival(wc.imm_data, wc.byte_len);
        }
      }
      state_.resources->post_receives(n);
    }
    for (;;) {
      const int n = ibv_poll_cq(state_.resources->send_cq, static_cast<int>(wcs.size()), wcs.data());
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) {
        const ibv_wc& wc = wcs[static_cast<std::size_t>(i)];
        const int peer = static_cast<int>(wc.wr_id >> 32);
        const auto w = static_cast<tutti::detail::verbs::work>((wc.wr_id >> 24) & 0xff);
        const auto index = static_cast<std::uint32_t>(wc.wr_id & 0xffffff);
        peer_channel* c = peer >= 0 && static_cast<std::size_t>(peer) < channels_.size()
                              ? channels_[static_cast<std::size_t>(peer)].get()
                              : nullptr;
        if (c == nullptr) {
          --state_.send_cq_used;
          continue;
        }
        if (wc.status != IBV_WC_SUCCESS) {
          --state_.send_cq_used;
          c->on_error(wc);
        } else {
          c->on_send_done(w, index);
        }
      }
    }
  }

  // Looks up the peers' records for every connecting channel at once.
  void advance_connections() {
    const auto now = clock::now();
    if (now < next_store_poll_) return;
    next_store_poll_ = now + std::chrono::microseconds(200);
    std::vector<std::string> keys;
    for (auto* c : state_.connecting) {
      keys.push_back(
          peer_channel::key(c->peer(), state_.rank, c->state() == peer_channel::link::exchanging ? "qp" : "ready"));
    }
    const auto present = state_.store->contains(keys);
    for (std::size_t i = 0; i < state_.connecting.size(); ++i) {
      peer_channel* c = state_.connecting[i];
      try {
        if (present[i]) {
          if (c->state() == peer_channel::link::exchanging) {
            c->complete_exchange(state_.store->get(keys[i], state_.timeout));
          } else {
            c->become_connected();
          }
        } else if (now > c->connect_deadline()) {
          c->fail_connect(errc::timeout,
                          tutti::detail::concat("verbs: rank ", c->peer(), " did not connect to rank ", state_.rank,
                                                " within the timeout (its queue pair record never appeared)"));
        }
      } catch (const error& e) {
        c->fail_connect(e.code(), e.message());
      }
    }
    std::erase_if(state_.connecting,
                  [](peer_channel* c) { return c->failed() || c->state() == peer_channel::link::connected; });
  }

  tutti::detail::verbs::transport_state state_;
  int size_;
  std::vector<std::unique_ptr<peer_channel>> channels_;
  clock::time_point next_store_poll_{};
};

}  // namespace tutti::transport
