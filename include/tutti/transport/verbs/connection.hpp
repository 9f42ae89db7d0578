// The queue pair to one peer and how it gets connected. A part of its own
// because connecting is a protocol of its own, run once per peer through the
// store rather than over the wire; peer_channel runs the message protocols
// over the connected queue pair.
//
// The first post to a peer registers the ring the peer writes into
// (TUTTI_IB_SLOTS x TUTTI_IB_EAGER_LIMIT bytes, 16 x 8 KiB by default: the
// memory that grows with the peers reached, which laziness bounds to the
// peers the schedules use) and the staging slots eager sends are copied
// into, creates the QP and publishes (qpn, psn, ring address and rkey)
// under a store key. Once the peer's record is there the QP goes to RTR and
// RTS with the smaller path MTU of the two ports, and this end publishes
// that it is ready; sending starts once the peer is ready too, so no packet
// reaches a QP that cannot take it.
#pragma once

#include <infiniband/verbs.h>
#include <sys/random.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/verbs/device.hpp>
#include <tutti/transport/verbs/memory.hpp>
#include <tutti/transport/verbs/transport_state.hpp>
#include <tutti/transport/verbs/wire.hpp>

namespace tutti::detail::verbs {

inline constexpr std::uint32_t send_depth = 128;  // work requests in flight per QP

inline std::uint32_t random_psn() {
  std::uint32_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = 0x5a5a5a;
  return v & 0xffffff;
}

// The queue pair to one peer, the ring it writes into and the staging slots
// we write to it from; derived classes run the protocols over it.
class connection : public transport::channel {
 public:
  using clock = transport::clock;

  enum class link : std::uint8_t { idle, exchanging, waiting_ready, connected };
  [[nodiscard]] link state() const noexcept { return state_; }
  [[nodiscard]] clock::time_point connect_deadline() const noexcept { return connect_deadline_; }

  static std::string key(int from, int to, std::string_view what) { return concat("verbs/", from, "-", to, "/", what); }

  void fail_connect(errc code, const std::string& why) { fail_with(code, why); }

  [[nodiscard]] bool has_queue_pair() const noexcept { return qp_ != nullptr; }
  [[nodiscard]] std::size_t registered_bytes() const noexcept { return ring_.size() + staging_.size(); }

 protected:
  connection(transport_state& owner, int peer, const port_address& theirs)
      : channel(peer), owner_(owner), theirs_(theirs) {}
  ~connection() override {
    if (qp_ != nullptr) owner_.f->destroy_qp(qp_);
  }

  // Registers the ring and the staging slots, creates the QP, moves it to
  // INIT and publishes its record.
  void begin_connect() {
    const auto& f = *owner_.f;
    const auto& s = owner_.settings;
    ring_ = owned_region(f, owner_.resources->pd, std::size_t{s.slots} * s.eager_limit);
    staging_ = owned_region(f, owner_.resources->pd, std::size_t{s.slots} * s.eager_limit);
    ibv_qp_init_attr init{};
    init.send_cq = owner_.resources->send_cq;
    init.recv_cq = owner_.resources->recv_cq;
    init.srq = owner_.resources->srq;
    init.qp_type = IBV_QPT_RC;
    init.cap.max_send_wr = send_depth;
    init.cap.max_send_sge = 1;
    init.cap.max_inline_data = 64;
    qp_ = f.create_qp(owner_.resources->pd, &init);
    if (qp_ == nullptr) {
      fail(errc::transport, "verbs: ibv_create_qp to rank ", peer(), " failed: ", std::strerror(errno));
    }
    max_inline_ = init.cap.max_inline_data;
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_INIT;
    attr.pkey_index = 0;
    attr.port_num = static_cast<std::uint8_t>(owner_.device.port().port);
    attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    modify(attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, "INIT");
    mine_.qpn = qp_->qp_num;
    mine_.psn = random_psn();
    mine_.ring_address = reinterpret_cast<std::uintptr_t>(ring_.data());
    mine_.ring_rkey = ring_.rkey();
    mine_.slots = s.slots;
    mine_.slot_bytes = s.eager_limit;
    owner_.store->set(key(owner_.rank, peer(), "qp"), mine_.encode());
    state_ = link::exchanging;
    connect_deadline_ = clock::now() + owner_.timeout;
  }

  // The peer's record arrived: to RTR and RTS, then tell the peer.
  void connect_queue_pair(const std::string& record) {
    info_ = qp_info::decode(record, peer());
    // Both ends pick eager or rendezvous by the same limit and index the
    // same ring shape: the settings must agree.
    if (info_.slots != mine_.slots || info_.slot_bytes != mine_.slot_bytes) {
      fail(errc::invalid_argument, "verbs: rank ", peer(), " uses ", info_.slots, " slots of ", info_.slot_bytes,
           " bytes and rank ", owner_.rank, " ", mine_.slots, " of ", mine_.slot_bytes,
           ": set TUTTI_IB_SLOTS and TUTTI_IB_EAGER_LIMIT alike on every rank");
    }
    const auto& port = owner_.device.port();
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
           port.roce ? concat("; rank ", peer(), "'s GID is ", format_gid(theirs_.gid),
                              ": both ends need RoCE v2 GIDs of one network (set TUTTI_IB_GID_INDEX)")
                     : std::string());
    ibv_qp_attr rts{};
    rts.qp_state = IBV_QPS_RTS;
    rts.timeout = owner_.settings.ack_timeout;
    rts.retry_cnt = owner_.settings.retry_count;
    rts.rnr_retry = 7;
    rts.sq_psn = mine_.psn;
    rts.max_rd_atomic = 1;
    modify(
        rts,
        IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
        "RTS");
    owner_.store->set(key(owner_.rank, peer(), "ready"), "1");
    state_ = link::waiting_ready;
  }

  void mark_connected() {
    state_ = link::connected;
    log(log_level::debug, "verbs: rank ", owner_.rank, " connected to rank ", peer(), " (QP ", qp_->qp_num, " -> ",
        info_.qpn, ")");
  }

  void stop_queue_pair() {
    // The QP in the error state neither executes incoming writes nor
    // reads our buffers again.
    if (qp_ != nullptr) {
      ibv_qp_attr attr{};
      attr.qp_state = IBV_QPS_ERR;
      owner_.f->modify_qp(qp_, &attr, IBV_QP_STATE);
    }
  }

  transport_state& owner_;
  ibv_qp* qp_ = nullptr;
  qp_info info_;          // the peer's
  owned_region ring_;     // the peer writes here
  owned_region staging_;  // eager copies we write from
  std::uint32_t max_inline_ = 0;

 private:
  // `hint`: what to check when this transition fails.
  void modify(ibv_qp_attr& attr, int mask, const char* to, std::string_view hint = {}) {
    if (const int rc = owner_.f->modify_qp(qp_, &attr, mask); rc != 0) {
      fail(errc::transport, "verbs: moving the QP to rank ", peer(), " to ", to, " failed: ", std::strerror(rc),
           " (port ", owner_.device.port().describe(), ")", hint);
    }
  }

  port_address theirs_;
  link state_ = link::idle;
  clock::time_point connect_deadline_{};
  qp_info mine_;
};

}  // namespace tutti::detail::verbs
