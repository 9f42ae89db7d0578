// The verbs transport: RDMA over InfiniBand or RoCE through libibverbs,
// loaded at run time (verbs/loader.hpp) on the port verbs/device.hpp picks.
//
// Connections. One RC queue pair per peer, made lazily: the first post to a
// peer creates the QP and publishes (qpn, psn, receive ring address and
// rkey) under a store key; progress() polls the store for the peer's (one
// batched lookup for all connecting peers, at most every 200 us), moves the
// QP to RTR and RTS with the smaller path MTU of the two ports, and
// publishes that it is ready; sending starts once the peer is ready too, so
// no packet reaches a QP that cannot take it. Retries are bounded (timeout
// 14, ~67 ms, 7 retries) so a dead peer ends in a completion error.
//
// Receive resources: one shared receive queue of zero-length work requests
// serves every QP (data arrives by RDMA WRITE, only the immediate needs a
// WQE), so receive WQEs do not grow with the number of peers; what does is
// the eager ring per connected peer (TUTTI_IB_SLOTS x TUTTI_IB_EAGER_LIMIT
// bytes, 16 x 8 KiB by default), which laziness bounds to the peers the
// schedules use.
//
// Eager protocol (messages up to TUTTI_IB_EAGER_LIMIT): RDMA WRITE WITH
// IMMEDIATE into the next slot of the peer's ring, inline when it fits the
// QP's max_inline_data, else from a registered staging copy, so the send is
// done as soon as it is posted. The immediate carries the type and length.
// The writer holds one credit per free slot; the reader copies a slot into
// the posted receive, frees slots in order and returns the credits in the
// immediate of its next message to the writer, or, once half the ring is
// owed, in a zero-byte write of their own. A ping-pong thus costs one packet
// (and its acknowledgement) each way, as a bare RDMA WRITE does.
//
// Rendezvous (larger messages): the sender announces the size in a ready to
// send slot message; the receiver, once its receive is posted and the size
// matches, registers the destination and answers clear to send with its
// address and rkey (or, when the size differs, rejects it, so both ends fail
// with the mismatch rather than the sender timing out); the sender registers its source and RDMA WRITEs straight
// into the destination in chunks (TUTTI_IB_CHUNK_BYTES, several in flight),
// the last one WITH IMMEDIATE, which tells the receiver the data is in place
// (RC delivers in order). Later sends on the channel wait until that last
// write is posted, so messages match receives in order. Registrations come
// from verbs/memory.hpp's cache.
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
// TUTTI_IB_TIMEOUT, TUTTI_IB_RETRY_CNT, TUTTI_IB_REG_CACHE and
// TUTTI_IB_REG_CACHE_BYTES (verbs/memory.hpp), TUTTI_IB_LIBRARY (loader.hpp).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <sys/random.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/topology/discover.hpp>
#include <tutti/topology/nic_choice.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/verbs/device.hpp>
#include <tutti/transport/verbs/loader.hpp>
#include <tutti/transport/verbs/memory.hpp>

namespace tutti::detail::verbs {

// The immediate, 32 bits on the wire (network order): the type (2 bits),
// the ring slots the writer returns with it (9 bits: every message carries
// the credits its sender owes, so a conversation needs no credit messages of
// its own), and the length of a slot message (21 bits).
enum class imm_type : std::uint32_t { data = 0, credit = 1, control = 2, finish = 3 };
inline constexpr std::uint32_t max_imm_credits = (1U << 9) - 1;
inline constexpr std::uint32_t max_imm_length = (1U << 21) - 1;
struct immediate {
  imm_type type = imm_type::data;
  std::uint32_t credits = 0;
  std::uint32_t length = 0;

  [[nodiscard]] std::uint32_t encode() const noexcept {
    return htonl((static_cast<std::uint32_t>(type) << 30) | ((credits & max_imm_credits) << 21) |
                 (length & max_imm_length));
  }
  static immediate decode(std::uint32_t wire) noexcept {
    const std::uint32_t host = ntohl(wire);
    return {static_cast<imm_type>(host >> 30), (host >> 21) & max_imm_credits, host & max_imm_length};
  }
};

// A control message, carried in a ring slot.
struct control {
  static constexpr std::uint32_t ready_to_send = 1;
  static constexpr std::uint32_t clear_to_send = 2;
  // The announced size does not match the posted receive (`bytes`): the
  // sender fails with a mismatch instead of waiting for clear to send.
  static constexpr std::uint32_t reject = 3;
  std::uint32_t kind = 0;
  std::uint32_t rkey = 0;
  std::uint64_t address = 0;
  std::uint64_t bytes = 0;
};

struct settings {
  std::size_t eager_limit = 8192;
  std::uint32_t slots = 16;
  std::size_t chunk_bytes = std::size_t{1} << 20;
  bool cache_registrations = false;
  std::size_t cache_budget = std::size_t{1} << 30;
  // The local ACK timeout exponent (4.096 us x 2^timeout per try) and the
  // retries before a silent peer is a completion error: 14 and 6 detect a
  // dead peer in about half a second. Not 7 retries: soft-RoCE reads a
  // retry count of 7 as "retry forever", as the spec does only for RNR.
  std::uint8_t ack_timeout = 14;
  std::uint8_t retry_count = 6;

  static settings from(const env_lookup& env) {
    settings s;
    if (auto v = env("TUTTI_IB_EAGER_LIMIT")) {
      s.eager_limit = static_cast<std::size_t>(parse_env_int("TUTTI_IB_EAGER_LIMIT", *v, 64, 1 << 20));
    }
    if (auto v = env("TUTTI_IB_SLOTS"))
      s.slots = static_cast<std::uint32_t>(parse_env_int("TUTTI_IB_SLOTS", *v, 2, 256));
    if (auto v = env("TUTTI_IB_CHUNK_BYTES")) {
      s.chunk_bytes = static_cast<std::size_t>(parse_env_int("TUTTI_IB_CHUNK_BYTES", *v, 4096, std::int64_t{1} << 30));
    }
    if (auto v = env("TUTTI_IB_REG_CACHE")) s.cache_registrations = parse_env_int("TUTTI_IB_REG_CACHE", *v, 0, 1) == 1;
    if (auto v = env("TUTTI_IB_REG_CACHE_BYTES")) {
      s.cache_budget = static_cast<std::size_t>(
          parse_env_int("TUTTI_IB_REG_CACHE_BYTES", *v, 0, std::numeric_limits<std::int64_t>::max()));
    }
    if (auto v = env("TUTTI_IB_TIMEOUT"))
      s.ack_timeout = static_cast<std::uint8_t>(parse_env_int("TUTTI_IB_TIMEOUT", *v, 1, 31));
    if (auto v = env("TUTTI_IB_RETRY_CNT"))
      s.retry_count = static_cast<std::uint8_t>(parse_env_int("TUTTI_IB_RETRY_CNT", *v, 0, 7));
    // The slot must also hold a control message.
    s.eager_limit = std::max(s.eager_limit, sizeof(control));
    return s;
  }
};

// What a rank publishes for one peer's queue pair.
struct qp_info {
  std::uint32_t qpn = 0;
  std::uint32_t psn = 0;
  std::uint64_t ring_address = 0;
  std::uint32_t ring_rkey = 0;
  std::uint32_t slots = 0;
  std::uint64_t slot_bytes = 0;

  [[nodiscard]] std::string encode() const {
    return concat(qpn, ',', psn, ',', ring_address, ',', ring_rkey, ',', slots, ',', slot_bytes);
  }
  static qp_info decode(std::string_view text, int peer) {
    qp_info out;
    const auto malformed = [&] {
      fail(errc::remote_failure, "verbs: rank ", peer, " published a malformed queue pair record");
    };
    std::uint64_t fields[6] = {};
    std::size_t n = 0;
    for (;;) {
      const auto comma = text.find(',');
      const std::string_view item = text.substr(0, comma);
      if (n == 6) malformed();
      const auto [end, status] = std::from_chars(item.data(), item.data() + item.size(), fields[n]);
      if (item.empty() || status != std::errc{} || end != item.data() + item.size()) malformed();
      ++n;
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    if (n != 6) malformed();
    out.qpn = static_cast<std::uint32_t>(fields[0]);
    out.psn = static_cast<std::uint32_t>(fields[1]);
    out.ring_address = fields[2];
    out.ring_rkey = static_cast<std::uint32_t>(fields[3]);
    out.slots = static_cast<std::uint32_t>(fields[4]);
    out.slot_bytes = fields[5];
    return out;
  }
};

// The port a rank publishes in its address card: "device:port/lid/gid/mtu/roce".
struct port_address {
  std::uint16_t lid = 0;
  std::array<std::uint8_t, 16> gid{};
  int mtu = IBV_MTU_1024;
  bool roce = false;

  static std::string encode(const port_choice& p) {
    std::string hex;
    for (const auto b : p.gid) hex += concat("0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15]);
    return concat(p.device, ':', p.port, '/', p.lid, '/', hex, '/', static_cast<int>(p.active_mtu), '/',
                  p.roce ? 1 : 0);
  }
  static port_address decode(std::string_view text, int peer) {
    auto bad = [&] { fail(errc::remote_failure, "verbs: rank ", peer, " published endpoint '", text, "', not valid"); };
    std::string_view parts[5];
    for (auto& part : parts) {
      const auto slash = text.find('/');
      part = text.substr(0, slash);
      text = slash == std::string_view::npos ? std::string_view{} : text.substr(slash + 1);
    }
    port_address out;
    auto number = [&](std::string_view s, auto& into) {
      const auto [end, status] = std::from_chars(s.data(), s.data() + s.size(), into);
      if (s.empty() || status != std::errc{} || end != s.data() + s.size()) bad();
    };
    number(parts[1], out.lid);
    if (parts[2].size() != 32) bad();
    for (std::size_t i = 0; i < 16; ++i) {
      const std::string_view byte = parts[2].substr(2 * i, 2);
      const auto [end, status] = std::from_chars(byte.data(), byte.data() + 2, out.gid[i], 16);
      if (status != std::errc{} || end != byte.data() + 2) bad();
    }
    int roce = 0;
    number(parts[3], out.mtu);
    number(parts[4], roce);
    out.roce = roce == 1;
    return out;
  }
};

inline std::uint32_t random_psn() {
  std::uint32_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = 0x5a5a5a;
  return v & 0xffffff;
}

}  // namespace tutti::detail::verbs

namespace tutti::transport {

class verbs_transport final : public transport {
 public:
  explicit verbs_transport(const context& ctx) : verbs_transport(ctx, tutti::detail::process_env) {}

  // Throws errc::unavailable when there is no usable RDMA port.
  verbs_transport(const context& ctx, const tutti::detail::env_lookup& env)
      : rank_(ctx.rank),
        size_(ctx.size),
        timeout_(ctx.config.timeout),
        store_(ctx.scoped_store),
        settings_(tutti::detail::verbs::settings::from(env)),
        device_(tutti::detail::verbs::open_port(env, [&] { return nearest_device(ctx.local_rank_hint, env); })),
        f_(&tutti::detail::verbs::libibverbs().functions) {
    resources_.emplace(*f_, device_.context());
    registrations_ = std::make_unique<tutti::detail::verbs::registration_cache>(
        *f_, resources_->pd, settings_.cache_registrations, settings_.cache_budget);
    post_srq_receives(srq_depth);
    tutti::detail::log(tutti::detail::log_level::info, "verbs: rank ", rank_, " uses ", device_.port().describe(),
                       ", MTU ", tutti::detail::verbs::mtu_bytes(device_.port().active_mtu));
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
    return tutti::detail::verbs::port_address::encode(device_.port());
  }
  [[nodiscard]] const tutti::detail::verbs::port_choice& port() const noexcept { return device_.port(); }

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
      if (theirs.roce != device_.port().roce) {
        tutti::detail::fail(errc::unavailable, "verbs: rank ", peer, "'s port is ", theirs.roce ? "RoCE" : "InfiniBand",
                            " and rank ", rank_, "'s is ", device_.port().roce ? "RoCE" : "InfiniBand");
      }
      channels_[static_cast<std::size_t>(peer)] = std::make_unique<peer_channel>(*this, peer, theirs);
    }
  }

  channel& to(int peer) override {
    if (peer < 0 || peer >= static_cast<int>(channels_.size()) || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::invalid_argument, "verbs: rank ", peer, " is not a peer of rank ", rank_,
                          "'s transport");
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  // Keeps [data, data + bytes) registered until unregister_memory, so
  // rendezvous transfers from and into it cost no registration.
  void register_memory(const void* data, std::size_t bytes) { registrations_->pin(data, bytes); }
  void unregister_memory(const void* data) { registrations_->unpin(data); }
  [[nodiscard]] const tutti::detail::verbs::registration_cache& registrations() const noexcept {
    return *registrations_;
  }

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
    if (!connecting_.empty()) advance_connections();
    for (std::size_t i = 0; i < busy_.size(); ++i) busy_[i]->pump();
    std::erase_if(busy_, [](peer_channel* c) { return !c->busy(); });
  }

  void wait_for_activity(clock::time_point deadline) override {
    // Connections progress through the store, which cannot wake us.
    if (!connecting_.empty()) deadline = std::min(deadline, clock::now() + std::chrono::microseconds(200));
    resources_->arm();
    poll_completions();  // what arrived before arming would not wake the channel
    const auto now = clock::now();
    if (now >= deadline) return;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{resources_->events->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(ms, 1000))) > 0) resources_->consume_events();
  }

 private:
  static constexpr int srq_depth = 2048;
  static constexpr int cq_depth = 8192;
  static constexpr std::uint32_t send_depth = 128;  // work requests in flight per QP
  static constexpr std::chrono::seconds probe_interval{1};

  // The device-wide objects: protection domain, completion queues and their
  // event channel, the shared receive queue.
  struct resources {
    const tutti::detail::verbs::api* f;
    ibv_pd* pd = nullptr;
    ibv_comp_channel* events = nullptr;
    ibv_cq* send_cq = nullptr;
    ibv_cq* recv_cq = nullptr;
    ibv_srq* srq = nullptr;

    resources(const tutti::detail::verbs::api& api, ibv_context* context) : f(&api) {
      try {
        pd = f->alloc_pd(context);
        if (pd == nullptr) fail_errno("ibv_alloc_pd");
        events = f->create_comp_channel(context);
        if (events == nullptr) fail_errno("ibv_create_comp_channel");
        ::fcntl(events->fd, F_SETFL, ::fcntl(events->fd, F_GETFL) | O_NONBLOCK);
        send_cq = f->create_cq(context, cq_depth, nullptr, events, 0);
        if (send_cq == nullptr) fail_errno("ibv_create_cq");
        recv_cq = f->create_cq(context, srq_depth * 2, nullptr, events, 0);
        if (recv_cq == nullptr) fail_errno("ibv_create_cq");
        ibv_srq_init_attr attr{};
        attr.attr.max_wr = srq_depth;
        attr.attr.max_sge = 1;
        srq = f->create_srq(pd, &attr);
        if (srq == nullptr) fail_errno("ibv_create_srq");
      } catch (...) {
        release();
        throw;
      }
    }
    resources(const resources&) = delete;
    resources& operator=(const resources&) = delete;
    ~resources() { release(); }

    static void fail_errno(const char* what) {
      tutti::detail::fail(errc::transport, "verbs: ", what, " failed: ", std::strerror(errno));
    }
    void arm() const {
      ibv_req_notify_cq(send_cq, 0);
      ibv_req_notify_cq(recv_cq, 0);
    }
    void consume_events() const {
      void* context = nullptr;
      ibv_cq* cq = nullptr;
      while (f->get_cq_event(events, &cq, &context) == 0) f->ack_cq_events(cq, 1);
    }
    void release() noexcept {
      if (srq != nullptr) f->destroy_srq(srq);
      if (recv_cq != nullptr) f->destroy_cq(recv_cq);
      if (send_cq != nullptr) f->destroy_cq(send_cq);
      if (events != nullptr) f->destroy_comp_channel(events);
      if (pd != nullptr) f->dealloc_pd(pd);
      srq = nullptr;
      recv_cq = send_cq = nullptr;
      events = nullptr;
      pd = nullptr;
    }
  };

  // Work request ids: the peer in the high half, what completed in the low.
  enum class work : std::uint32_t { eager = 1, control = 2, credit = 3, chunk = 4, finish = 5, probe = 6, reject = 7 };
  static std::uint64_t wr_id(int peer, work w, std::uint32_t index = 0) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(peer)) << 32) |
           (static_cast<std::uint64_t>(w) << 24) | (index & 0xffffff);
  }

  class peer_channel final : public channel {
   public:
    peer_channel(verbs_transport& owner, int peer, const tutti::detail::verbs::port_address& theirs)
        : channel(peer), owner_(owner), theirs_(theirs) {}
    ~peer_channel() override { destroy_qp(); }

    // Whether progress() must visit this channel.
    [[nodiscard]] bool busy() const noexcept {
      return state_ == link::connected && (!sends_.empty() || !recvs_.empty() || credits_owed_ >= credit_batch());
    }

    void pump() {
      if (state_ != link::connected || failed()) return;
      match_receives();
      start_sends();
      return_credits();
      probe_if_silent();
    }

    // --- completions, routed by the transport ----------------------------------

    void on_arrival(std::uint32_t imm, std::uint32_t bytes) {
      const auto [type, credits, value] = tutti::detail::verbs::immediate::decode(imm);
      last_heard_ = clock::now();
      credits_ += credits;
      switch (type) {
        case tutti::detail::verbs::imm_type::credit: break;
        case tutti::detail::verbs::imm_type::finish: ++finishes_; break;
        case tutti::detail::verbs::imm_type::data:
        case tutti::detail::verbs::imm_type::control: {
          const auto slot = static_cast<std::uint32_t>(arrived_total_++ % info_.slots);
          if (bytes != value || bytes > slot_bytes()) {
            fail_with(errc::remote_failure, tutti::detail::concat("verbs: rank ", peer(), " wrote ", bytes,
                                                                  " bytes into a slot announced as ", value));
            return;
          }
          if (type == tutti::detail::verbs::imm_type::control) {
            tutti::detail::verbs::control c;
            std::memcpy(&c, ring_.data() + std::size_t{slot} * slot_bytes(), sizeof c);
            release_slot(slot);
            if (c.kind == tutti::detail::verbs::control::clear_to_send) {
              clear_to_send_.push_back(c);
            } else if (c.kind == tutti::detail::verbs::control::reject) {
              rejected(c.bytes);
            } else if (c.kind == tutti::detail::verbs::control::ready_to_send) {
              arrived_.push_back({slot, c.bytes, true});
            } else {
              fail_with(errc::remote_failure,
                        tutti::detail::concat("verbs: rank ", peer(), " sent an unknown control message ", c.kind));
            }
          } else {
            arrived_.push_back({slot, bytes, false});
          }
          break;
        }
      }
      owner_.mark_busy(*this);
    }

    void on_send_done(work w, std::uint32_t index) {
      --in_flight_;
      --owner_.send_cq_used_;
      last_heard_ = clock::now();
      if (w == work::probe) probe_in_flight_ = false;
      if (w == work::eager || w == work::control || w == work::reject) staging_busy_[index] = false;
      if (w == work::reject) on_abandon();  // the rejection is out: now stop the QP
      if (w == work::finish) {
        // The large send whose last chunk this was is complete.
        for (auto& s : sends_) {
          if (s.state == send_state::writing && s.id == index) {
            s.state = send_state::done;
            owner_.registrations_->release(s.lease);
            s.lease = {};
            break;
          }
        }
        retire_sends();
      }
      owner_.mark_busy(*this);
    }

    void on_error(const ibv_wc& wc) {
      if (failed()) return;  // flushed work after the first error
      const auto& f = *owner_.f_;
      const bool retry = wc.status == IBV_WC_RETRY_EXC_ERR;
      const auto& port = owner_.device_.port();
      fail_with(retry ? errc::remote_failure : errc::transport,
                tutti::detail::concat(
                    "verbs: completion error on QP ", qp_ != nullptr ? qp_->qp_num : 0, " to rank ", peer(), ": ",
                    f.wc_status_str(wc.status), " (status ", static_cast<int>(wc.status), ", vendor error 0x", std::hex,
                    wc.vendor_err, std::dec, ")",
                    retry ? tutti::detail::concat(
                                "; the peer did not answer: it died, or it is unreachable from ", port.describe(),
                                port.roce ? " (if it is alive, this GID may be wrong: set TUTTI_IB_GID_INDEX)" : "")
                          : std::string()));
      owner_.mark_busy(*this);
    }

    // --- connection --------------------------------------------------------------

    void begin_connect() {
      const auto& f = *owner_.f_;
      const auto& s = owner_.settings_;
      ring_ = tutti::detail::verbs::owned_region(f, owner_.resources_->pd, std::size_t{s.slots} * s.eager_limit);
      staging_ = tutti::detail::verbs::owned_region(f, owner_.resources_->pd, std::size_t{s.slots} * s.eager_limit);
      staging_busy_.assign(s.slots, false);
      slot_free_.assign(s.slots, false);
      ibv_qp_init_attr init{};
      init.send_cq = owner_.resources_->send_cq;
      init.recv_cq = owner_.resources_->recv_cq;
      init.srq = owner_.resources_->srq;
      init.qp_type = IBV_QPT_RC;
      init.cap.max_send_wr = send_depth;
      init.cap.max_send_sge = 1;
      init.cap.max_inline_data = 64;
      qp_ = f.create_qp(owner_.resources_->pd, &init);
      if (qp_ == nullptr) {
        tutti::detail::fail(errc::transport, "verbs: ibv_create_qp to rank ", peer(),
                            " failed: ", std::strerror(errno));
      }
      max_inline_ = init.cap.max_inline_data;
      ibv_qp_attr attr{};
      attr.qp_state = IBV_QPS_INIT;
      attr.pkey_index = 0;
      attr.port_num = static_cast<std::uint8_t>(owner_.device_.port().port);
      attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
      modify(attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, "INIT");
      mine_.qpn = qp_->qp_num;
      mine_.psn = tutti::detail::verbs::random_psn();
      mine_.ring_address = reinterpret_cast<std::uintptr_t>(ring_.data());
      mine_.ring_rkey = ring_.rkey();
      mine_.slots = s.slots;
      mine_.slot_bytes = s.eager_limit;
      owner_.store_->set(key(owner_.rank_, peer(), "qp"), mine_.encode());
      owner_.qp_owners_[qp_->qp_num] = this;
      state_ = link::exchanging;
      connect_deadline_ = clock::now() + owner_.timeout_;
    }

    // The peer's record arrived: to RTR and RTS, then tell the peer.
    void complete_exchange(const std::string& record) {
      info_ = tutti::detail::verbs::qp_info::decode(record, peer());
      // Both ends pick eager or rendezvous by the same limit and index the
      // same ring shape: the settings must agree.
      if (info_.slots != mine_.slots || info_.slot_bytes != mine_.slot_bytes) {
        tutti::detail::fail(errc::invalid_argument, "verbs: rank ", peer(), " uses ", info_.slots, " slots of ",
                            info_.slot_bytes, " bytes and rank ", owner_.rank_, " ", mine_.slots, " of ",
                            mine_.slot_bytes, ": set TUTTI_IB_SLOTS and TUTTI_IB_EAGER_LIMIT alike on every rank");
      }
      const auto& port = owner_.device_.port();
      ibv_qp_attr attr{};
      attr.qp_state = IBV_QPS_RTR;
      attr.path_mtu = static_cast<ibv_mtu>(std::min(static_cast<int>(port.active_mtu), theirs_.mtu));
      attr.dest_qp_num = info_.qpn;
      attr.rq_psn = info_.psn;
      attr.max_dest_rd_atomic = 1;
      attr.min_rnr_timer = 12;
      attr.ah_attr.port_num = static_cast<std::uint8_t>(port.port);
      if (port.roce) {
        attr.ah_attr.is_global = 1;
        std::memcpy(attr.ah_attr.grh.dgid.raw, theirs_.gid.data(), 16);
        attr.ah_attr.grh.sgid_index = static_cast<std::uint8_t>(port.gid_index);
        attr.ah_attr.grh.hop_limit = 64;
      } else {
        attr.ah_attr.dlid = theirs_.lid;
      }
      // With RoCE the address vector pairs our GID with the peer's: GIDs of
      // different families (an IPv4 one and an IPv6 one) are refused here.
      modify(attr,
             IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                 IBV_QP_MIN_RNR_TIMER,
             "RTR",
             port.roce
                 ? tutti::detail::concat("; rank ", peer(), "'s GID is ", tutti::detail::verbs::format_gid(theirs_.gid),
                                         ": both ends need RoCE v2 GIDs of one network (set TUTTI_IB_GID_INDEX)")
                 : std::string());
      ibv_qp_attr rts{};
      rts.qp_state = IBV_QPS_RTS;
      rts.timeout = owner_.settings_.ack_timeout;
      rts.retry_cnt = owner_.settings_.retry_count;
      rts.rnr_retry = 7;
      rts.sq_psn = mine_.psn;
      rts.max_rd_atomic = 1;
      modify(
          rts,
          IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
          "RTS");
      credits_ = info_.slots;
      owner_.store_->set(key(owner_.rank_, peer(), "ready"), "1");
      state_ = link::waiting_ready;
    }

    void become_connected() {
      state_ = link::connected;
      tutti::detail::log(tutti::detail::log_level::debug, "verbs: rank ", owner_.rank_, " connected to rank ", peer(),
                         " (QP ", qp_->qp_num, " -> ", info_.qpn, ")");
      owner_.mark_busy(*this);
    }

    void fail_connect(errc code, const std::string& why) { fail_with(code, why); }

    enum class link : std::uint8_t { idle, exchanging, waiting_ready, connected };
    [[nodiscard]] link state() const noexcept { return state_; }
    [[nodiscard]] clock::time_point connect_deadline() const noexcept { return connect_deadline_; }

    static std::string key(int from, int to, std::string_view what) {
      return tutti::detail::concat("verbs/", from, "-", to, "/", what);
    }

    [[nodiscard]] bool has_queue_pair() const noexcept { return qp_ != nullptr; }
    [[nodiscard]] std::size_t registered_bytes() const noexcept { return ring_.size() + staging_.size(); }

   protected:
    void enqueue_send(const void* data, std::size_t bytes) override {
      ensure_connecting();
      sends_.push_back({data, bytes, send_state::queued, next_send_id_++ & 0xffffff, {}});
      owner_.mark_busy(*this);
    }

    void enqueue_recv(void* data, std::size_t bytes) override {
      ensure_connecting();
      recvs_.push_back({data, bytes, false, {}});
      owner_.mark_busy(*this);
    }

    void on_abandon() override {
      // The QP in the error state neither executes incoming writes nor
      // reads our buffers again.
      if (qp_ != nullptr) {
        ibv_qp_attr attr{};
        attr.qp_state = IBV_QPS_ERR;
        owner_.f_->modify_qp(qp_, &attr, IBV_QP_STATE);
      }
      release_leases();
    }

   private:
    // queued -> (large: announced -> streaming -> writing) -> done
    enum class send_state : std::uint8_t { queued, announced, streaming, writing, done };
    struct send_op {
      const void* data;
      std::size_t bytes;
      send_state state;
      std::uint32_t id;
      tutti::detail::verbs::registration_cache::lease lease;
      tutti::detail::verbs::control destination{};  // from clear to send
      std::size_t posted = 0;                       // bytes whose writes are posted
    };
    struct recv_op {
      void* data;
      std::size_t bytes;
      bool cleared;  // rendezvous: clear to send went out
      tutti::detail::verbs::registration_cache::lease lease;
    };
    struct arrival {
      std::uint32_t slot;
      std::uint64_t bytes;
      bool ready_to_send;  // a rendezvous announcement rather than eager data
    };

    [[nodiscard]] std::size_t slot_bytes() const noexcept { return owner_.settings_.eager_limit; }
    [[nodiscard]] bool eager(std::size_t bytes) const noexcept { return bytes <= owner_.settings_.eager_limit; }

    void ensure_connecting() {
      if (state_ != link::idle) return;
      begin_connect();
      owner_.connecting_.push_back(this);
    }

    // `hint`: what to check when this transition fails.
    void modify(ibv_qp_attr& attr, int mask, const char* to, std::string_view hint = {}) {
      if (const int rc = owner_.f_->modify_qp(qp_, &attr, mask); rc != 0) {
        tutti::detail::fail(errc::transport, "verbs: moving the QP to rank ", peer(), " to ", to,
                            " failed: ", std::strerror(rc), " (port ", owner_.device_.port().describe(), ")", hint);
      }
    }

    void destroy_qp() noexcept {
      release_leases();
      if (qp_ != nullptr) {
        owner_.qp_owners_.erase(qp_->qp_num);
        owner_.f_->destroy_qp(qp_);
      }
      qp_ = nullptr;
    }

    void release_leases() noexcept {
      for (auto& s : sends_) {
        if (s.lease.mr != nullptr) owner_.registrations_->release(s.lease);
        s.lease = {};
      }
      for (auto& r : recvs_) {
        if (r.lease.mr != nullptr) owner_.registrations_->release(r.lease);
        r.lease = {};
      }
    }

    // Posts one RDMA WRITE (WITH IMMEDIATE when imm is set) on the QP.
    // Posts one RDMA WRITE, WITH IMMEDIATE of type `imm` when set; an
    // immediate carries every credit owed (up to what it can hold) and, for
    // slot messages, the length.
    bool post_write(std::uint64_t id, const void* local, std::size_t bytes, std::uint32_t lkey, std::uint64_t remote,
                    std::uint32_t rkey, std::optional<tutti::detail::verbs::imm_type> imm, bool inline_data) {
      if (in_flight_ >= send_depth || owner_.send_cq_used_ >= cq_depth) return false;
      using tutti::detail::verbs::imm_type;
      tutti::detail::verbs::immediate immediate;
      if (imm) {
        immediate.type = *imm;
        immediate.credits = std::min(credits_owed_, tutti::detail::verbs::max_imm_credits);
        const bool slot_message = *imm == imm_type::data || *imm == imm_type::control;
        immediate.length = slot_message ? static_cast<std::uint32_t>(bytes) : 0;
      }
      ibv_sge sge{};
      sge.addr = reinterpret_cast<std::uintptr_t>(local);
      sge.length = static_cast<std::uint32_t>(bytes);
      sge.lkey = lkey;
      ibv_send_wr wr{};
      wr.wr_id = id;
      wr.sg_list = bytes != 0 ? &sge : nullptr;
      wr.num_sge = bytes != 0 ? 1 : 0;
      wr.opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
      wr.send_flags = inline_data ? IBV_SEND_SIGNALED | IBV_SEND_INLINE : IBV_SEND_SIGNALED;
      if (imm) wr.imm_data = immediate.encode();
      wr.wr.rdma.remote_addr = remote;
      wr.wr.rdma.rkey = rkey;
      ibv_send_wr* bad = nullptr;
      if (const int rc = ibv_post_send(qp_, &wr, &bad); rc != 0) {
        tutti::detail::fail(errc::transport, "verbs: ibv_post_send to rank ", peer(), " failed: ", std::strerror(rc));
      }
      ++in_flight_;
      ++owner_.send_cq_used_;
      credits_owed_ -= immediate.credits;
      return true;
    }

    // A slot message into the peer's next slot: eager data (work::eager) or
    // a control message (work::control, work::reject).
    bool post_slot(work w, const void* data, std::size_t bytes) {
      if (credits_ == 0) return false;
      const auto slot = static_cast<std::uint32_t>(written_total_ % info_.slots);
      const std::uint64_t remote = info_.ring_address + std::uint64_t{slot} * info_.slot_bytes;
      const bool inline_data = bytes <= max_inline_;
      const void* source = data;
      std::uint32_t lkey = 0;
      if (!inline_data) {
        if (staging_busy_[slot]) return false;
        std::byte* staged = staging_.data() + std::size_t{slot} * slot_bytes();
        std::memcpy(staged, data, bytes);
        source = staged;
        lkey = staging_.lkey();
      }
      const auto type =
          w == work::eager ? tutti::detail::verbs::imm_type::data : tutti::detail::verbs::imm_type::control;
      if (!post_write(wr_id(peer(), w, slot), source, bytes, lkey, remote, info_.ring_rkey, type, inline_data)) {
        return false;
      }
      if (!inline_data) staging_busy_[slot] = true;
      --credits_;
      ++written_total_;
      return true;
    }

    // Sends in order: eager ones are posted (and done) at once; a large one
    // announces itself, waits for clear to send, and streams its chunks; the
    // ones behind it wait until its last chunk is posted.
    void start_sends() {
      for (auto& s : sends_) {
        if (s.state == send_state::done || s.state == send_state::writing) continue;
        if (eager(s.bytes)) {
          if (!post_slot(work::eager, s.data, s.bytes)) break;
          s.state = send_state::done;
          continue;
        }
        if (s.state == send_state::queued) {
          tutti::detail::verbs::control c;
          c.kind = tutti::detail::verbs::control::ready_to_send;
          c.bytes = s.bytes;
          if (!post_slot(work::control, &c, sizeof c)) break;
          s.state = send_state::announced;
        }
        if (s.state == send_state::announced) {
          if (clear_to_send_.empty()) break;
          s.destination = clear_to_send_.front();
          clear_to_send_.pop_front();
          if (s.destination.bytes != s.bytes) {
            // The receiver checks the size before clearing: this is a
            // malformed message, and writing would overrun its buffer.
            fail_with(errc::remote_failure,
                      tutti::detail::concat("verbs: rank ", peer(), " cleared ", s.destination.bytes,
                                            " bytes for an announced send of ", s.bytes));
            on_abandon();
            return;
          }
          s.lease = owner_.registrations_->acquire(s.data, s.bytes);
          s.state = send_state::streaming;
        }
        if (!stream(s)) break;
        s.state = send_state::writing;
      }
      retire_sends();
    }

    // Posts the chunks of a large send that fit the send queue, the last
    // WITH IMMEDIATE; true once all are posted.
    bool stream(send_op& s) {
      const std::size_t chunk = owner_.settings_.chunk_bytes;
      while (s.posted < s.bytes) {
        const std::size_t length = std::min(chunk, s.bytes - s.posted);
        const bool last = s.posted + length == s.bytes;
        const auto imm = last ? std::optional(tutti::detail::verbs::imm_type::finish) : std::nullopt;
        if (!post_write(wr_id(peer(), last ? work::finish : work::chunk, s.id),
                        static_cast<const std::byte*>(s.data) + s.posted, length, s.lease.mr->lkey,
                        s.destination.address + s.posted, s.destination.rkey, imm, false)) {
          return false;
        }
        s.posted += length;
      }
      return true;
    }

    void retire_sends() {
      std::uint64_t done = 0;
      while (!sends_.empty() && sends_.front().state == send_state::done) {
        sends_.pop_front();
        ++done;
      }
      if (done != 0) complete_sends(done);
    }

    // Receives in order: an eager one takes the next data slot; a large one
    // takes the next announcement, answers clear to send, and completes on
    // the finishing write.
    void match_receives() {
      std::uint64_t done = 0;
      while (!recvs_.empty()) {
        recv_op& r = recvs_.front();
        if (eager(r.bytes)) {
          if (arrived_.empty()) break;
          const arrival a = arrived_.front();
          if (a.ready_to_send || a.bytes != r.bytes) return mismatch(a, r);
          if (r.bytes != 0) std::memcpy(r.data, ring_.data() + std::size_t{a.slot} * slot_bytes(), r.bytes);
          arrived_.pop_front();
          release_slot(a.slot);
        } else {
          if (!r.cleared) {
            if (arrived_.empty()) break;
            const arrival a = arrived_.front();
            if (!a.ready_to_send || a.bytes != r.bytes) return mismatch(a, r);
            if (r.lease.mr == nullptr) r.lease = owner_.registrations_->acquire(r.data, r.bytes);
            tutti::detail::verbs::control c;
            c.kind = tutti::detail::verbs::control::clear_to_send;
            c.rkey = r.lease.mr->rkey;
            c.address = reinterpret_cast<std::uintptr_t>(r.data);
            c.bytes = r.bytes;
            if (!post_slot(work::control, &c, sizeof c)) break;
            arrived_.pop_front();
            r.cleared = true;
          }
          if (finishes_ == 0) break;
          --finishes_;
          owner_.registrations_->release(r.lease);
          r.lease = {};
        }
        recvs_.pop_front();
        ++done;
      }
      if (done != 0) complete_recvs(done);
    }

    // The next message does not fit the posted receive. A sender announcing
    // a large message would wait for clear to send until its timeout: it is
    // told instead, and the QP stops once that rejection is out.
    void mismatch(const arrival& a, const recv_op& r) {
      fail_with(errc::mismatch, tutti::detail::concat("verbs: rank ", peer(), " sent a message of ", a.bytes,
                                                      " bytes where a receive of ", r.bytes, " bytes was posted"));
      tutti::detail::verbs::control c;
      c.kind = tutti::detail::verbs::control::reject;
      c.bytes = r.bytes;
      if (!a.ready_to_send || !post_slot(work::reject, &c, sizeof c)) on_abandon();
    }

    // The receiver rejected the announced send at the head of the queue.
    void rejected(std::uint64_t posted) {
      const auto announced =
          std::find_if(sends_.begin(), sends_.end(), [](const send_op& s) { return s.state == send_state::announced; });
      const std::uint64_t bytes = announced != sends_.end() ? announced->bytes : 0;
      fail_with(errc::mismatch, tutti::detail::concat("verbs: rank ", peer(), " posted a receive of ", posted,
                                                      " bytes for a send of ", bytes, " bytes"));
      on_abandon();
    }

    // A peer that died leaves a receiver (or a sender waiting for clear to
    // send) with nothing to complete. So while this channel waits on a
    // silent peer, a zero-byte RDMA WRITE goes out every second: the peer's
    // adapter acknowledges it without its process, and a dead peer's missing
    // QP turns it into a retry-exceeded completion error naming the peer.
    void probe_if_silent() {
      if (probe_in_flight_ || (recvs_.empty() && sends_.empty())) return;
      const auto now = clock::now();
      if (now - last_heard_ < probe_interval) return;
      if (post_write(wr_id(peer(), work::probe), nullptr, 0, 0, info_.ring_address, info_.ring_rkey, std::nullopt,
                     false)) {
        probe_in_flight_ = true;
        last_heard_ = now;
        tutti::detail::log(tutti::detail::log_level::debug, "verbs: rank ", owner_.rank_, " probes silent rank ",
                           peer());
      }
    }

    // Slots are freed in order: a credit lets the writer reuse the oldest slot.
    void release_slot(std::uint32_t slot) {
      slot_free_[slot] = true;
      while (slot_free_[released_total_ % info_.slots] && released_total_ < arrived_total_) {
        slot_free_[released_total_ % info_.slots] = false;
        ++released_total_;
        ++credits_owed_;
      }
    }

    // Returns freed slots with a message of their own once enough are owed;
    // until then they ride on the next message to the peer.
    void return_credits() {
      if (credits_owed_ < credit_batch()) return;
      post_write(wr_id(peer(), work::credit), nullptr, 0, 0, info_.ring_address, info_.ring_rkey,
                 tutti::detail::verbs::imm_type::credit, false);
    }
    // Owed credits that go back on their own rather than waiting for a
    // message to ride on. Half the ring: a writer blocked on credits has
    // either had half its slots freed (and gets them) or has more than half
    // still unread, which it must wait for anyway.
    [[nodiscard]] std::uint32_t credit_batch() const noexcept { return std::max<std::uint32_t>(1, info_.slots / 2); }

    verbs_transport& owner_;
    tutti::detail::verbs::port_address theirs_;
    ibv_qp* qp_ = nullptr;
    link state_ = link::idle;
    clock::time_point connect_deadline_{};
    tutti::detail::verbs::qp_info mine_;
    tutti::detail::verbs::qp_info info_;          // the peer's
    tutti::detail::verbs::owned_region ring_;     // the peer writes here
    tutti::detail::verbs::owned_region staging_;  // eager copies we write from
    std::vector<bool> staging_busy_;
    std::vector<bool> slot_free_;
    std::uint32_t max_inline_ = 0;
    std::uint32_t in_flight_ = 0;
    std::uint32_t credits_ = 0;       // free slots in the peer's ring
    std::uint32_t credits_owed_ = 0;  // slots of ours freed and not yet returned
    std::uint64_t written_total_ = 0;
    std::uint64_t arrived_total_ = 0;
    std::uint64_t released_total_ = 0;
    std::uint64_t finishes_ = 0;
    std::uint32_t next_send_id_ = 0;
    clock::time_point last_heard_ = clock::now();
    bool probe_in_flight_ = false;
    std::deque<send_op> sends_;
    std::deque<recv_op> recvs_;
    std::deque<arrival> arrived_;
    std::deque<tutti::detail::verbs::control> clear_to_send_;
  };

  void mark_busy(peer_channel& c) {
    if (std::find(busy_.begin(), busy_.end(), &c) == busy_.end()) busy_.push_back(&c);
  }

  void post_srq_receives(int count) {
    for (int i = 0; i < count; ++i) {
      ibv_recv_wr wr{};
      wr.wr_id = 0;
      wr.num_sge = 0;
      ibv_recv_wr* bad = nullptr;
      if (const int rc = ibv_post_srq_recv(resources_->srq, &wr, &bad); rc != 0) {
        tutti::detail::fail(errc::transport, "verbs: ibv_post_srq_recv failed: ", std::strerror(rc));
      }
    }
  }

  peer_channel* channel_of(std::uint32_t qp_num) {
    const auto found = qp_owners_.find(qp_num);
    return found == qp_owners_.end() ? nullptr : found->second;
  }

  void poll_completions() {
    std::array<ibv_wc, 32> wcs;
    for (;;) {
      const int n = ibv_poll_cq(resources_->recv_cq, static_cast<int>(wcs.size()), wcs.data());
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
      post_srq_receives(n);
    }
    for (;;) {
      const int n = ibv_poll_cq(resources_->send_cq, static_cast<int>(wcs.size()), wcs.data());
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) {
        const ibv_wc& wc = wcs[static_cast<std::size_t>(i)];
        const int peer = static_cast<int>(wc.wr_id >> 32);
        const auto w = static_cast<work>((wc.wr_id >> 24) & 0xff);
        const auto index = static_cast<std::uint32_t>(wc.wr_id & 0xffffff);
        peer_channel* c = peer >= 0 && static_cast<std::size_t>(peer) < channels_.size()
                              ? channels_[static_cast<std::size_t>(peer)].get()
                              : nullptr;
        if (c == nullptr) {
          --send_cq_used_;
          continue;
        }
        if (wc.status != IBV_WC_SUCCESS) {
          --send_cq_used_;
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
    for (auto* c : connecting_) {
      keys.push_back(
          peer_channel::key(c->peer(), rank_, c->state() == peer_channel::link::exchanging ? "qp" : "ready"));
    }
    const auto present = store_->contains(keys);
    for (std::size_t i = 0; i < connecting_.size(); ++i) {
      peer_channel* c = connecting_[i];
      try {
        if (present[i]) {
          if (c->state() == peer_channel::link::exchanging) {
            c->complete_exchange(store_->get(keys[i], timeout_));
          } else {
            c->become_connected();
          }
        } else if (now > c->connect_deadline()) {
          c->fail_connect(errc::timeout,
                          tutti::detail::concat("verbs: rank ", c->peer(), " did not connect to rank ", rank_,
                                                " within the timeout (its queue pair record never appeared)"));
        }
      } catch (const error& e) {
        c->fail_connect(e.code(), e.message());
      }
    }
    std::erase_if(connecting_,
                  [](peer_channel* c) { return c->failed() || c->state() == peer_channel::link::connected; });
  }

  int rank_;
  int size_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<store> store_;
  tutti::detail::verbs::settings settings_;
  tutti::detail::verbs::opened_device device_;
  const tutti::detail::verbs::api* f_;
  std::optional<resources> resources_;
  std::unique_ptr<tutti::detail::verbs::registration_cache> registrations_;
  std::vector<std::unique_ptr<peer_channel>> channels_;
  std::unordered_map<std::uint32_t, peer_channel*> qp_owners_;
  std::vector<peer_channel*> connecting_;
  std::vector<peer_channel*> busy_;
  clock::time_point next_store_poll_{};
  std::size_t send_cq_used_ = 0;
};

}  // namespace tutti::transport
