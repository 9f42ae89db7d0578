// The channel to one peer: sends and receives matched in order, by the
// eager protocol or the rendezvous, over the slot messages of
// verbs/slot_channel.hpp. A class of its own, apart from the transport,
// which routes completions to it and pumps it while it has work; it reaches
// the transport's state through transport_state, with no virtual call on
// the way.
//
// Eager (messages up to TUTTI_IB_EAGER_LIMIT): the message is a slot
// message, and the receiver copies the slot into the posted receive.
//
// Rendezvous (larger messages): the sender announces the size in a ready to
// send slot message; the receiver, once its receive is posted and the size
// matches, registers the destination and answers clear to send with its
// address and rkey (or, when the size differs, rejects it, so both ends fail
// with the mismatch rather than the sender timing out); the sender registers
// its source and RDMA WRITEs straight into the destination in chunks
// (TUTTI_IB_CHUNK_BYTES, several in flight), the last one WITH IMMEDIATE,
// which tells the receiver the data is in place (RC delivers in order).
// Later sends on the channel wait until that last write is posted, so
// messages match receives in order. Registrations come from
// verbs/memory.hpp's cache.
#pragma once

#include <infiniband/verbs.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>

#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/verbs/connection.hpp>
#include <tutti/transport/verbs/memory.hpp>
#include <tutti/transport/verbs/slot_channel.hpp>
#include <tutti/transport/verbs/transport_state.hpp>
#include <tutti/transport/verbs/wire.hpp>

namespace tutti::detail::verbs {

inline constexpr std::chrono::seconds probe_interval{1};

class peer_channel final : public slot_channel {
 public:
  peer_channel(transport_state& owner, int peer, const port_address& theirs) : slot_channel(owner, peer, theirs) {}
  ~peer_channel() override {
    release_leases();
    if (qp_ != nullptr) owner_.qp_owners.erase(qp_->qp_num);
  }

  // Whether progress() must visit this channel.
  [[nodiscard]] bool busy() const noexcept {
    return state() == link::connected && (!sends_.empty() || !recvs_.empty() || credits_owed_ >= credit_batch());
  }

  void pump() {
    if (state() != link::connected || failed()) return;
    match_receives();
    start_sends();
    return_credits();
    probe_if_silent();
  }

  // --- completions, routed by the transport ----------------------------------

  void on_arrival(std::uint32_t imm, std::uint32_t bytes) {
    const auto [type, credits, value] = immediate::decode(imm);
    last_heard_ = clock::now();
    credits_ += credits;
    switch (type) {
      case imm_type::credit: break;
      case imm_type::finish: ++finishes_; break;
      case imm_type::data:
      case imm_type::control: {
        const auto slot = static_cast<std::uint32_t>(arrived_total_++ % info_.slots);
        if (bytes != value || bytes > slot_bytes()) {
          fail_with(errc::remote_failure,
                    concat("verbs: rank ", peer(), " wrote ", bytes, " bytes into a slot announced as ", value));
          return;
        }
        if (type == imm_type::control) {
          control c;
          std::memcpy(&c, ring_.data() + std::size_t{slot} * slot_bytes(), sizeof c);
          release_slot(slot);
          if (c.kind == control::clear_to_send) {
            clear_to_send_.push_back(c);
          } else if (c.kind == control::reject) {
            rejected(c.bytes);
          } else if (c.kind == control::ready_to_send) {
            arrived_.push_back({slot, c.bytes, true});
          } else {
            fail_with(errc::remote_failure,
                      concat("verbs: rank ", peer(), " sent an unknown control message ", c.kind));
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
    --owner_.send_cq_used;
    last_heard_ = clock::now();
    if (w == work::probe) probe_in_flight_ = false;
    if (w == work::eager || w == work::control || w == work::reject) staging_busy_[index] = false;
    if (w == work::reject) on_abandon();  // the rejection is out: now stop the QP
    if (w == work::finish) {
      // The large send whose last chunk this was is complete.
      for (auto& s : sends_) {
        if (s.state == send_state::writing && s.id == index) {
          s.state = send_state::done;
          owner_.registrations->release(s.lease);
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
    const auto& f = *owner_.f;
    const bool retry = wc.status == IBV_WC_RETRY_EXC_ERR;
    const auto& port = owner_.device.port();
    fail_with(retry ? errc::remote_failure : errc::transport,
              concat("verbs: completion error on QP ", qp_ != nullptr ? qp_->qp_num : 0, " to rank ", peer(), ": ",
                     f.wc_status_str(wc.status), " (status ", static_cast<int>(wc.status), ", vendor error 0x",
                     std::hex, wc.vendor_err, std::dec, ")",
                     retry ? concat("; the peer did not answer: it died, or it is unreachable from ", port.describe(),
                                    port.roce ? " (if it is alive, this GID may be wrong: set TUTTI_IB_GID_INDEX)" : "")
                           : std::string()));
    owner_.mark_busy(*this);
  }

  // --- connection, driven by the transport ------------------------------------

  // The peer's record arrived: connect the queue pair; the peer's ring is
  // ours to write, one credit per slot.
  void complete_exchange(const std::string& record) {
    connect_queue_pair(record);
    credits_ = info_.slots;
  }

  void become_connected() {
    mark_connected();
    owner_.mark_busy(*this);
  }

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
    stop_queue_pair();
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
    registration_cache::lease lease;
    control destination{};   // from clear to send
    std::size_t posted = 0;  // bytes whose writes are posted
  };
  struct recv_op {
    void* data;
    std::size_t bytes;
    bool cleared;  // rendezvous: clear to send went out
    registration_cache::lease lease;
  };
  struct arrival {
    std::uint32_t slot;
    std::uint64_t bytes;
    bool ready_to_send;  // a rendezvous announcement rather than eager data
  };

  [[nodiscard]] bool eager(std::size_t bytes) const noexcept { return bytes <= owner_.settings.eager_limit; }

  void ensure_connecting() {
    if (state() != link::idle) return;
    begin_connect();
    staging_busy_.assign(owner_.settings.slots, false);
    slot_free_.assign(owner_.settings.slots, false);
    owner_.qp_owners[qp_->qp_num] = this;
    owner_.connecting.push_back(this);
  }

  void release_leases() noexcept {
    for (auto& s : sends_) {
      if (s.lease.mr != nullptr) owner_.registrations->release(s.lease);
      s.lease = {};
    }
    for (auto& r : recvs_) {
      if (r.lease.mr != nullptr) owner_.registrations->release(r.lease);
      r.lease = {};
    }
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
        control c;
        c.kind = control::ready_to_send;
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
          fail_with(errc::remote_failure, concat("verbs: rank ", peer(), " cleared ", s.destination.bytes,
                                                 " bytes for an announced send of ", s.bytes));
          on_abandon();
          return;
        }
        s.lease = owner_.registrations->acquire(s.data, s.bytes);
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
    const std::size_t chunk = owner_.settings.chunk_bytes;
    while (s.posted < s.bytes) {
      const std::size_t length = std::min(chunk, s.bytes - s.posted);
      const bool last = s.posted + length == s.bytes;
      const auto imm = last ? std::optional(imm_type::finish) : std::nullopt;
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
          if (r.lease.mr == nullptr) r.lease = owner_.registrations->acquire(r.data, r.bytes);
          control c;
          c.kind = control::clear_to_send;
          c.rkey = r.lease.mr->rkey;
          c.address = reinterpret_cast<std::uintptr_t>(r.data);
          c.bytes = r.bytes;
          if (!post_slot(work::control, &c, sizeof c)) break;
          arrived_.pop_front();
          r.cleared = true;
        }
        if (finishes_ == 0) break;
        --finishes_;
        owner_.registrations->release(r.lease);
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
    fail_with(errc::mismatch, concat("verbs: rank ", peer(), " sent a message of ", a.bytes,
                                     " bytes where a receive of ", r.bytes, " bytes was posted"));
    control c;
    c.kind = control::reject;
    c.bytes = r.bytes;
    if (!a.ready_to_send || !post_slot(work::reject, &c, sizeof c)) on_abandon();
  }

  // The receiver rejected the announced send at the head of the queue.
  void rejected(std::uint64_t posted) {
    const auto announced =
        std::find_if(sends_.begin(), sends_.end(), [](const send_op& s) { return s.state == send_state::announced; });
    const std::uint64_t bytes = announced != sends_.end() ? announced->bytes : 0;
    fail_with(errc::mismatch, concat("verbs: rank ", peer(), " posted a receive of ", posted, " bytes for a send of ",
                                     bytes, " bytes"));
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
      log(log_level::debug, "verbs: rank ", owner_.rank, " probes silent rank ", peer());
    }
  }

  std::uint64_t finishes_ = 0;
  std::uint32_t next_send_id_ = 0;
  clock::time_point last_heard_ = clock::now();
  bool probe_in_flight_ = false;
  std::deque<send_op> sends_;
  std::deque<recv_op> recvs_;
  std::deque<arrival> arrived_;
  std::deque<control> clear_to_send_;
};

}  // namespace tutti::detail::verbs
