// The slot messages of a peer channel: RDMA WRITEs into the peer's ring,
// paid for with credits, and the slots of our own ring freed in order. A
// part of its own because both protocols ride on it: eager data is a slot
// message, and so are the rendezvous' ready to send and clear to send.
//
// The writer holds one credit per free slot of the peer's ring. A message
// up to max_inline_data goes inline, a longer one from a registered staging
// copy, so the send is done as soon as it is posted. The reader frees slots
// in order and returns the credits in the immediate of its next message to
// the writer, or, once half the ring is owed, in a zero-byte write of their
// own. A ping-pong thus costs one packet (and its acknowledgement) each way,
// as a bare RDMA WRITE does.
#pragma once

#include <infiniband/verbs.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/transport/verbs/connection.hpp>
#include <tutti/transport/verbs/resources.hpp>
#include <tutti/transport/verbs/wire.hpp>

namespace tutti::detail::verbs {

// Work request ids: the peer in the high half, what completed in the low.
enum class work : std::uint32_t { eager = 1, control = 2, credit = 3, chunk = 4, finish = 5, probe = 6, reject = 7 };
inline std::uint64_t wr_id(int peer, work w, std::uint32_t index = 0) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(peer)) << 32) | (static_cast<std::uint64_t>(w) << 24) |
         (index & 0xffffff);
}

class slot_channel : public connection {
 protected:
  using connection::connection;

  [[nodiscard]] std::size_t slot_bytes() const noexcept { return owner_.settings.eager_limit; }

  // Posts one RDMA WRITE, WITH IMMEDIATE of type `imm` when set; an
  // immediate carries every credit owed (up to what it can hold) and, for
  // slot messages, the length.
  bool post_write(std::uint64_t id, const void* local, std::size_t bytes, std::uint32_t lkey, std::uint64_t remote,
                  std::uint32_t rkey, std::optional<imm_type> imm, bool inline_data) {
    if (in_flight_ >= send_depth || owner_.send_cq_used >= cq_depth) return false;
    immediate immediate;
    if (imm) {
      immediate.type = *imm;
      immediate.credits = std::min(credits_owed_, max_imm_credits);
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
      fail(errc::transport, "verbs: ibv_post_send to rank ", peer(), " failed: ", std::strerror(rc));
    }
    ++in_flight_;
    ++owner_.send_cq_used;
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
    const auto type = w == work::eager ? imm_type::data : imm_type::control;
    if (!post_write(wr_id(peer(), w, slot), source, bytes, lkey, remote, info_.ring_rkey, type, inline_data)) {
      return false;
    }
    if (!inline_data) staging_busy_[slot] = true;
    --credits_;
    ++written_total_;
    return true;
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
    post_write(wr_id(peer(), work::credit), nullptr, 0, 0, info_.ring_address, info_.ring_rkey, imm_type::credit,
               false);
  }
  // Owed credits that go back on their own rather than waiting for a
  // message to ride on. Half the ring: a writer blocked on credits has
  // either had half its slots freed (and gets them) or has more than half
  // still unread, which it must wait for anyway.
  [[nodiscard]] std::uint32_t credit_batch() const noexcept { return std::max<std::uint32_t>(1, info_.slots / 2); }

  std::vector<bool> staging_busy_;
  std::vector<bool> slot_free_;
  std::uint32_t in_flight_ = 0;
  std::uint32_t credits_ = 0;       // free slots in the peer's ring
  std::uint32_t credits_owed_ = 0;  // slots of ours freed and not yet returned
  std::uint64_t written_total_ = 0;
  std::uint64_t arrived_total_ = 0;
  std::uint64_t released_total_ = 0;
};

}  // namespace tutti::detail::verbs
