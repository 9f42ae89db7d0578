// What one peer's channel of the shm transport knows, and how it fails: the
// wiring to the peer's rings, the pending operations, the ring positions and
// the single-copy transfer in progress, and the failure path every part of
// the protocol ends in (faults published through the ring's control block,
// a peer that exited or closed its transport). shm_channel (channel.hpp)
// moves the messages on top of it. A base class that adds no virtual
// function: the hot path reaches this state as members of the channel.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

#include <tutti/detail/op_queue.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/shm/futex.hpp>
#include <tutti/transport/shm/layout.hpp>
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

class channel_state : public tutti::transport::channel {
 public:
  channel_state(const channel_wiring& wiring, const channel_settings& settings)
      : channel(wiring.peer),
        wire_(wiring),
        settings_(settings),
        watch_(wiring.same_process ? pid_t{0} : wiring.peer_pid),
        in_batch_(std::max<std::uint64_t>(wiring.in_slot_count / 4, 1)) {}

  channel_state(const channel_state&) = delete;
  channel_state& operator=(const channel_state&) = delete;
  ~channel_state() override = default;

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

  // ---- failures ------------------------------------------------------------

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

  static const char* describe(fault_code code) noexcept {
    switch (code) {
      case fault_code::mismatch: return "a message size mismatch";
      case fault_code::transport: return "a local transport error";
      case fault_code::protocol: return "a corrupt record";
      case fault_code::none: break;
    }
    return "unknown fault";
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
