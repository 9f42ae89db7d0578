// One peer's channel of the shm transport: the message protocol over the two
// rings of the pair (ours into the peer's segment, the peer's into ours) and
// the single-copy path for large messages. shm.hpp describes the protocol;
// this file implements it.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include <tutti/error.hpp>
#include <tutti/transport/shm/futex.hpp>
#include <tutti/transport/shm/layout.hpp>
#include <tutti/transport/shm/op_queue.hpp>
#include <tutti/transport/shm/peer_process.hpp>
#include <tutti/transport/shm/segment.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail::shm {

// How a channel reaches its peer, set up by the transport's attach.
struct channel_wiring {
  int peer = 0;
  pid_t peer_pid = 0;
  bool same_process = false;    // ranks are threads: copy with memcpy
  bool can_reach_peer = false;  // cross-memory attach into the peer works
  segment_header* peer_header = nullptr;
  ring_control* in = nullptr;  // the peer's messages to us, in our segment
  std::byte* in_slots = nullptr;
  std::uint64_t in_slot_count = 0;  // a power of two
  ring_control* out = nullptr;      // our messages to the peer, in its segment
  std::byte* out_slots = nullptr;
  std::uint64_t out_slot_count = 0;
};

struct channel_settings {
  std::uint64_t eager_limit = 0;  // larger messages take the single-copy path
  std::uint64_t chunk_bytes = 0;  // single-copy transfers move in chunks of at most this size (>= 64 KiB)
  bool single_copy = true;        // false: every message goes through the ring
  std::chrono::milliseconds timeout{0};
};

class shm_channel final : public tutti::transport::channel {
 public:
  shm_channel(const channel_wiring& wiring, const channel_settings& settings)
      : channel(wiring.peer),
        wire_(wiring),
        settings_(settings),
        watch_(wiring.same_process ? pid_t{0} : wiring.peer_pid),
        in_batch_(std::max<std::uint64_t>(wiring.in_slot_count / 4, 1)) {}

  shm_channel(const shm_channel&) = delete;
  shm_channel& operator=(const shm_channel&) = delete;
  ~shm_channel() override = default;

  // After the setup barrier, when the peer has published whether it can
  // read our memory.
  void finish_setup() noexcept {
    use_single_copy_ = settings_.single_copy && wire_.out->single_copy.load(std::memory_order_acquire) != 0;
  }

  [[nodiscard]] bool pending() const noexcept { return !sends_.empty() || !recvs_.empty(); }
  [[nodiscard]] bool single_copy_enabled() const noexcept { return use_single_copy_; }

  // Moves what can be moved now; returns whether anything did.
  bool progress() noexcept {
    if (failed()) return false;
    bool moved = progress_sends();
    if (!failed()) moved = progress_recvs() || moved;
    if (gone_ != gone_reason::none && !failed() && pending()) fail_gone();
    return moved;
  }

  // Whether progress() could move something now. Loads are seq_cst: this is
  // the check a rank makes after announcing that it sleeps (see shm.hpp).
  [[nodiscard]] bool ready() const noexcept {
    if (failed()) return false;
    if (gone_ != gone_reason::none) return pending();
    constexpr auto order = std::memory_order_seq_cst;
    if (!recvs_.empty()) {
      if (active_.on) {
        if ((wire_.in->claim.load(order) & chunk_mask) < active_.chunks) return true;
        if (wire_.in->copied.load(order) >= active_.bytes) return true;
      } else if (stamp(in_slot(in_tail_)).load(order) == in_tail_ + 1) {
        return true;
      }
    }
    if (unwritten_ < sends_.size() && wire_.out->tail.load(order) != out_tail_seen_) return true;
    if (unwritten_ > 0) {
      const send_op& first = sends_.front();
      if (first.single_copy) {
        if (wire_.out->acks.load(order) != acks_seen_) return true;
        if (helpable(first, wire_.out->claim.load(order))) return true;
      }
    }
    return false;
  }

  // Looks for a dead or departed peer and for a failure it published. Called
  // every few milliseconds while operations are pending, and around sleeps.
  void check_peer() noexcept {
    check_shared_state();
    if (failed() || gone_ != gone_reason::none) return;
    if (watch_.exited()) gone_ = gone_reason::exited;
  }

  // The transport is going away: stop the peer from writing into our
  // buffers before they are freed.
  void close() noexcept { abandon_transfer(); }

  // Wakes the peer if it announced that it sleeps. Every change the peer may
  // wait for is a seq_cst store or read-modify-write made before this call.
  void notify_peer() const noexcept {
    segment_header& other = *wire_.peer_header;
    if (other.sleeping.load(std::memory_order_seq_cst) != 0) {
      other.doorbell.fetch_add(1, std::memory_order_seq_cst);
      futex_wake_all(other.doorbell);
    }
  }

 protected:
  void enqueue_send(const void* data, std::size_t bytes) override {
    send_op op;
    op.data = static_cast<const std::byte*>(data);
    op.bytes = bytes;
    op.single_copy = use_single_copy_ && bytes > settings_.eager_limit;
    sends_.push_back(op);
  }

  void enqueue_recv(void* data, std::size_t bytes) override {
    recv_op op;
    op.data = static_cast<std::byte*>(data);
    op.bytes = bytes;
    recvs_.push_back(op);
  }

 private:
  // What the peer tells us through shared memory, without a system call: a
  // failure it published, or that it closed its transport.
  void check_shared_state() noexcept {
    if (failed() || gone_ != gone_reason::none) return;
    for (const ring_control* ring : {wire_.in, wire_.out}) {
      const auto code = static_cast<fault_code>(ring->fault.load(std::memory_order_seq_cst));
      if (code == fault_code::none) continue;
      if (code == fault_code::mismatch && ring == wire_.out) {
        fail(errc::mismatch,
             tutti::detail::concat(
                 "rank ", peer(), " rejected a message of ", ring->fault_actual.load(std::memory_order_relaxed),
                 " bytes: its receive was posted for ", ring->fault_expected.load(std::memory_order_relaxed), " bytes"),
             fault_code::none);
      } else {
        fail(errc::remote_failure,
             tutti::detail::concat("rank ", peer(), " (pid ", wire_.peer_pid, ") failed the shm channel (",
                                   describe(code), ")"),
             fault_code::none);
      }
      return;
    }
    if (wire_.peer_header->closed.load(std::memory_order_seq_cst) != 0) gone_ = gone_reason::closed;
  }

  static constexpr std::uint64_t chunk_mask = 0xffffffffULL;
  static constexpr std::uint64_t min_chunk = 65536;
  enum class gone_reason { none, closed, exited };

  struct send_op {
    const std::byte* data = nullptr;
    std::uint64_t bytes = 0;
    std::uint64_t offset = 0;    // bytes already in the ring
    std::uint64_t transfer = 0;  // single copy: the transfer's number on this pair
    bool single_copy = false;
    bool started = false;
  };
  struct recv_op {
    std::byte* data = nullptr;
    std::uint64_t bytes = 0;
    std::uint64_t received = 0;
    bool started = false;
  };
  // The single-copy transfer into the front receive, if any.
  struct active_transfer {
    bool on = false;
    std::uint64_t source = 0;  // the sender's address
    std::uint64_t bytes = 0;
    std::uint64_t chunk = 0;
    std::uint64_t chunks = 0;
  };

  static const char* describe(fault_code code) noexcept {
    switch (code) {
      case fault_code::mismatch: return "a message size mismatch";
      case fault_code::transport: return "a local transport error";
      case fault_code::protocol: return "a corrupt record";
      case fault_code::none: break;
    }
    return "unknown fault";
  }

  // ---- sending -------------------------------------------------------------

  static std::atomic_ref<std::uint64_t> stamp(std::byte* slot) noexcept {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(slot));
  }
  [[nodiscard]] std::byte* out_slot(std::uint64_t sequence) const noexcept {
    return wire_.out_slots + (sequence & (wire_.out_slot_count - 1)) * slot_bytes;
  }
  [[nodiscard]] std::byte* in_slot(std::uint64_t sequence) const noexcept {
    return wire_.in_slots + (sequence & (wire_.in_slot_count - 1)) * slot_bytes;
  }

  // Whether the next slot is free, reading the consumer's tail only when the
  // cached one says it is not.
  bool reserve() noexcept {
    if (out_next_ - out_tail_seen_ < wire_.out_slot_count) return true;
    out_tail_seen_ = wire_.out->tail.load(std::memory_order_acquire);
    return out_next_ - out_tail_seen_ < wire_.out_slot_count;
  }

  // Fills the next slot and publishes it. The stamp is stored last: a
  // release (the consumer's acquire load of it makes the slot's bytes
  // visible), and seq_cst, so that the peer cannot fall asleep without
  // seeing it (see shm.hpp).
  void write_slot(record_kind kind, std::uint64_t message_bytes, const void* payload, std::uint64_t bytes) noexcept {
    std::byte* slot = out_slot(out_next_);
    slot_header header;
    header.kind = static_cast<std::uint32_t>(kind);
    header.payload_bytes = static_cast<std::uint32_t>(bytes);
    header.message_bytes = message_bytes;
    constexpr std::size_t after_stamp = sizeof header.stamp;
    std::memcpy(slot + after_stamp, reinterpret_cast<const std::byte*>(&header) + after_stamp,
                sizeof header - after_stamp);
    if (bytes != 0) std::memcpy(slot + sizeof header, payload, bytes);
    ++out_next_;
    stamp(slot).store(out_next_, std::memory_order_seq_cst);
  }

  bool progress_sends() noexcept {
    bool moved = false;
    bool wrote = false;
    while (unwritten_ < sends_.size()) {
      send_op& op = sends_[unwritten_];
      if (op.single_copy) {
        if (!reserve()) break;
        const auto source = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(op.data));
        write_slot(record_kind::single_copy, op.bytes, &source, sizeof source);
        op.transfer = transfers_posted_++;
      } else {
        // Slot by slot: the consumer drains the ring while we fill it.
        do {
          if (!reserve()) break;
          const std::uint64_t piece = std::min(op.bytes - op.offset, slot_payload);
          write_slot(op.started ? record_kind::more : record_kind::first, op.bytes, op.data + op.offset, piece);
          op.offset += piece;
          op.started = true;
          wrote = true;
        } while (op.offset < op.bytes);
        if (!op.started || op.offset < op.bytes) break;
      }
      wrote = true;
      ++unwritten_;
    }
    if (wrote) {
      notify_peer();
      moved = true;
    }
    return retire_sends() || moved;
  }

  // Completes written sends in order; a single-copy send completes when the
  // consumer's acknowledgement counter passes it.
  bool retire_sends() noexcept {
    bool moved = false;
    std::uint64_t count = 0;
    while (unwritten_ > 0) {
      const send_op& first = sends_.front();
      if (first.single_copy && acks_seen_ <= first.transfer) {
        acks_seen_ = wire_.out->acks.load(std::memory_order_acquire);
        if (acks_seen_ <= first.transfer) {
          moved = help(first);
          break;
        }
      }
      sends_.pop_front();
      --unwritten_;
      ++count;
    }
    if (count > 0) complete_sends(count);
    return moved || count > 0;
  }

  // Whether we may copy a chunk of `op` now: its transfer is the one the
  // consumer set up, and chunks are left. A message of one chunk is left to
  // the consumer (copying into our own cache is faster than racing it).
  [[nodiscard]] bool helpable(const send_op& op, std::uint64_t claim) const noexcept {
    if (!wire_.can_reach_peer || (claim >> 32U) != ((op.transfer + 1) & chunk_mask)) return false;
    const std::uint64_t chunk = wire_.out->chunk_bytes.load(std::memory_order_relaxed);
    if (chunk == 0) return false;
    const std::uint64_t chunks = (op.bytes + chunk - 1) / chunk;
    return chunks > 1 && (claim & chunk_mask) < chunks;
  }

  // While the consumer copies a message of ours, we copy chunks of it too:
  // two cores move it, each chunk still copied once.
  bool help(const send_op& op) noexcept {
    ring_control& ring = *wire_.out;
    std::uint64_t claim = ring.claim.load(std::memory_order_acquire);
    if (!helpable(op, claim)) return false;
    if (!ring.claim.compare_exchange_strong(claim, claim + 1, std::memory_order_acq_rel)) return true;
    const std::uint64_t chunk = ring.chunk_bytes.load(std::memory_order_relaxed);
    const std::uint64_t offset = (claim & chunk_mask) * chunk;
    const std::uint64_t length = std::min(chunk, op.bytes - offset);
    const std::uint64_t target = ring.target.load(std::memory_order_relaxed) + offset;
    int code = 0;
    if (wire_.same_process) {
      std::memcpy(reinterpret_cast<void*>(static_cast<std::uintptr_t>(target)), op.data + offset, length);
    } else {
      code = write_process(wire_.peer_pid, target, op.data + offset, length);
    }
    if (code != 0) {
      // The chunk still counts as finished, so the consumer's accounting
      // completes and it finds the fault instead of waiting for the chunk.
      publish_fault(fault_code::transport);
      ring.copied.fetch_add(length, std::memory_order_seq_cst);
      notify_peer();
      fail_copy("process_vm_writev to", code);
      return true;
    }
    ring.copied.fetch_add(length, std::memory_order_seq_cst);
    notify_peer();
    return true;
  }

  // ---- receiving -----------------------------------------------------------

  // Frees consumed slots: a release (the producer's acquire load of tail
  // orders its next writes after our reads), seq_cst for the sleep protocol.
  void publish_tail() noexcept {
    if (in_tail_ == in_published_) return;
    wire_.in->tail.store(in_tail_, std::memory_order_seq_cst);
    in_published_ = in_tail_;
    notify_peer();
  }

  bool progress_recvs() noexcept {
    bool moved = false;
    if (active_.on) {
      moved = drive_transfer();
      if (active_.on || failed()) return moved;
    }
    while (!recvs_.empty()) {
      std::byte* slot = in_slot(in_tail_);
      if (stamp(slot).load(std::memory_order_acquire) != in_tail_ + 1) break;
      slot_header header;
      std::memcpy(&header, slot, sizeof header);
      recv_op& op = recvs_.front();
      const auto kind = static_cast<record_kind>(header.kind);
      if (kind == record_kind::first || kind == record_kind::single_copy) {
        if (op.started) {
          corrupt(header);
          return moved;
        }
        if (header.message_bytes != op.bytes) {
          mismatch(op.bytes, header.message_bytes);
          return moved;
        }
      }
      if (kind == record_kind::single_copy) {
        if (header.payload_bytes != sizeof(std::uint64_t)) {
          corrupt(header);
          return moved;
        }
        std::uint64_t source = 0;
        std::memcpy(&source, slot + sizeof header, sizeof source);
        ++in_tail_;
        publish_tail();
        start_transfer(op, source);
        drive_transfer();
        return true;
      }
      if ((kind != record_kind::first && kind != record_kind::more) || (kind == record_kind::more && !op.started) ||
          header.message_bytes != op.bytes || header.payload_bytes > slot_payload ||
          header.payload_bytes > op.bytes - op.received) {
        corrupt(header);
        return moved;
      }
      if (header.payload_bytes != 0) std::memcpy(op.data + op.received, slot + sizeof header, header.payload_bytes);
      op.received += header.payload_bytes;
      op.started = true;
      ++in_tail_;
      moved = true;
      if (op.received == op.bytes) {
        recvs_.pop_front();
        complete_recvs();
      }
      if (in_tail_ - in_published_ >= in_batch_) publish_tail();
    }
    publish_tail();
    return moved;
  }

  void start_transfer(recv_op& op, std::uint64_t source) noexcept {
    ring_control& ring = *wire_.in;
    active_.on = true;
    active_.source = source;
    active_.bytes = op.bytes;
    // At least two chunks, so that the sender can copy one while we copy the
    // other; at most chunk_bytes, so that each system call stays short.
    active_.chunk = std::clamp(align_up(op.bytes / 2, page_bytes), min_chunk, settings_.chunk_bytes);
    active_.chunks = (op.bytes + active_.chunk - 1) / active_.chunk;
    op.started = true;
    ring.target.store(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(op.data)), std::memory_order_relaxed);
    ring.chunk_bytes.store(active_.chunk, std::memory_order_relaxed);
    ring.message_bytes.store(op.bytes, std::memory_order_relaxed);
    ring.copied.store(0, std::memory_order_relaxed);
    // Publishing the claim word publishes the fields above (release).
    ring.claim.store(((++transfers_started_) & chunk_mask) << 32U, std::memory_order_seq_cst);
    notify_peer();
  }

  bool drive_transfer() noexcept {
    ring_control& ring = *wire_.in;
    recv_op& op = recvs_.front();
    bool moved = false;
    std::uint64_t claim = ring.claim.load(std::memory_order_acquire);
    if ((claim & chunk_mask) < active_.chunks &&
        ring.claim.compare_exchange_strong(claim, claim + 1, std::memory_order_acq_rel)) {
      const std::uint64_t offset = (claim & chunk_mask) * active_.chunk;
      const std::uint64_t length = std::min(active_.chunk, active_.bytes - offset);
      int code = 0;
      if (wire_.same_process) {
        std::memcpy(op.data + offset,
                    reinterpret_cast<const void*>(static_cast<std::uintptr_t>(active_.source + offset)), length);
      } else {
        code = read_process(wire_.peer_pid, op.data + offset, active_.source + offset, length);
      }
      ring.copied.fetch_add(length, std::memory_order_seq_cst);
      if (code != 0) {
        publish_fault(fault_code::transport);
        fail_copy("process_vm_readv from", code);
        return true;
      }
      moved = true;
    }
    if (ring.copied.load(std::memory_order_acquire) < active_.bytes) return moved;
    // Every chunk is in. If the sender closed or failed meanwhile, its buffer
    // may have been freed under our reads: the data cannot be trusted. (One
    // that was killed cannot have freed it: what we read is what it sent.)
    check_shared_state();
    if (failed()) return true;
    if (gone_ == gone_reason::closed) {
      fail_gone();
      return true;
    }
    active_.on = false;
    ring.acks.fetch_add(1, std::memory_order_seq_cst);
    notify_peer();
    recvs_.pop_front();
    complete_recvs();
    return true;
  }

  // Stops the peer from claiming more chunks of our active transfer and
  // waits (bounded) for the chunks it is copying into our buffer.
  void abandon_transfer() noexcept {
    if (!active_.on) return;
    active_.on = false;
    ring_control& ring = *wire_.in;
    std::uint64_t claim = ring.claim.load(std::memory_order_acquire);
    while (!ring.claim.compare_exchange_weak(claim, claim | chunk_mask, std::memory_order_acq_rel)) {
    }
    const std::uint64_t claimed = std::min(claim & chunk_mask, active_.chunks);
    const std::uint64_t owed = std::min(claimed * active_.chunk, active_.bytes);
    const auto deadline = tutti::transport::clock::now() + settings_.timeout;
    for (int round = 0; ring.copied.load(std::memory_order_acquire) < owed; ++round) {
      if (watch_.exited() || tutti::transport::clock::now() >= deadline) return;
      if (round < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }

  // ---- failures ------------------------------------------------------------

  void publish_fault(fault_code code) noexcept {
    std::uint32_t none = 0;
    wire_.in->fault.compare_exchange_strong(none, static_cast<std::uint32_t>(code), std::memory_order_seq_cst);
    notify_peer();
  }

  // Ends the channel: the first error wins and stays. `shared` tells the
  // peer, unless the failure came from it.
  void fail(errc code, const std::string& message, fault_code shared) noexcept {
    if (failed()) return;
    abandon_transfer();
    if (shared != fault_code::none) publish_fault(shared);
    fail_with(code, message);
  }

  void mismatch(std::uint64_t posted, std::uint64_t incoming) noexcept {
    wire_.in->fault_expected.store(posted, std::memory_order_relaxed);
    wire_.in->fault_actual.store(incoming, std::memory_order_relaxed);
    fail(errc::mismatch,
         tutti::detail::concat("receive #", recvs_done(), " from rank ", peer(), " was posted for ", posted,
                               " bytes but the message has ", incoming, " bytes"),
         fault_code::mismatch);
  }

  void corrupt(const slot_header& header) noexcept {
    fail(errc::transport,
         tutti::detail::concat("shm: corrupt record from rank ", peer(), " (kind ", header.kind, ", ",
                               header.payload_bytes, " of ", header.message_bytes, " bytes)"),
         fault_code::protocol);
  }

  void fail_copy(const char* what, int code) noexcept {
    if (code == ESRCH || watch_.exited()) {
      gone_ = gone_reason::exited;
      fail_gone();
    } else if (wire_.peer_header->closed.load(std::memory_order_seq_cst) != 0) {
      gone_ = gone_reason::closed;
      fail_gone();
    } else {
      fail(errc::transport,
           tutti::detail::concat("shm: ", what, " rank ", peer(), " (pid ", wire_.peer_pid,
                                 ") failed: ", errno_message(code)),
           fault_code::transport);
    }
  }

  void fail_gone() noexcept {
    const char* what = gone_ == gone_reason::exited ? " exited" : " closed its transport";
    fail(errc::remote_failure,
         tutti::detail::concat("rank ", peer(), " (pid ", wire_.peer_pid, ")", what, " with ", sends_.size(),
                               " sends and ", recvs_.size(), " receives pending"),
         fault_code::none);
  }

  channel_wiring wire_;
  channel_settings settings_;
  process_watch watch_;
  std::uint64_t in_batch_;  // publish tail after this many slots
  bool use_single_copy_ = false;
  gone_reason gone_ = gone_reason::none;

  op_queue<send_op> sends_;
  std::size_t unwritten_ = 0;   // sends_[0, unwritten_) are wholly in the ring
  std::uint64_t out_next_ = 0;  // slots written
  std::uint64_t out_tail_seen_ = 0;
  std::uint64_t transfers_posted_ = 0;
  std::uint64_t acks_seen_ = 0;

  op_queue<recv_op> recvs_;
  std::uint64_t in_tail_ = 0;  // slots consumed
  std::uint64_t in_published_ = 0;
  std::uint64_t transfers_started_ = 0;
  active_transfer active_;
};

}  // namespace tutti::detail::shm
