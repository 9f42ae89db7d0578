// One peer's channel of the shm transport: the message protocol over the two
// rings of the pair (ours into the peer's segment, the peer's into ours) and
// the single-copy path for large messages. transport.hpp describes the
// protocol; this file implements it, over the state and failure handling of
// channel_state.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <tutti/transport/shm/channel_state.hpp>
#include <tutti/transport/shm/layout.hpp>
#include <tutti/transport/shm/peer_process.hpp>

namespace tutti::detail::shm {

class shm_channel final : public channel_state {
 public:
  shm_channel(const channel_wiring& wiring, const channel_settings& settings) : channel_state(wiring, settings) {}

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
  // the check a rank makes after announcing that it sleeps (see transport.hpp).
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
  // seeing it (see transport.hpp).
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
};

}  // namespace tutti::detail::shm
