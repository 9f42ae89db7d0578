// The shared-memory transport: channels between ranks on one host.
//
// Segment layout. Each rank owns one POSIX shared-memory segment, named
// /tutti-<pid>-<rank>-<64 random bits> (shm/layout.hpp):
//   header   line 0: magic, layout version, owner rank and pid, the owner's
//                    address of the mapping, sizes (written once);
//            line 1: the doorbell (a futex word) and the "sleeping" flag;
//            line 2: the "closed" flag, set by the owner's destructor.
//   table    the producer's rank of each ring.
//   rings    one per peer, on their own pages: the ring that carries that
//            peer's messages to the owner (the peer produces, the owner
//            consumes). A control block, each group of words on its own cache
//            line (the consumer's tail and acknowledgement counter; setup and
//            fault words; the single-copy transfer block), then 4 KiB slots,
//            a power of two of them (TUTTI_SHM_RING_BYTES / 4 KiB).
//
// Ring protocol. Slot i of a ring carries sequence numbers i, i + n, i + 2n...
// Its first 24 bytes are a header: stamp (sequence number + 1), kind, payload
// bytes in this slot, and the whole message's size; the payload follows. A
// message takes one slot, or consecutive slots (first, more, more...) when it
// is larger than 4072 bytes. The producer writes a slot's payload and header,
// then stores its stamp; the consumer, which expects sequence number `tail`,
// loads the stamp of slot tail % n and consumes it when it reads tail + 1. It
// then stores tail (slots consumed), which the producer reads, only when its
// cached copy says the ring is full, before reusing a slot. So the head is
// not a separate counter but the stamps themselves: a message up to 40 bytes
// is one cache line, and the consumer's poll, the stamp and the data arrive
// in the same transfer. A separate head line costs a second cache miss per
// message; measured here, 8 B one-way latency went from 0.44 us to ~0.3 us.
// Slots start on cache lines and a slot's first word is only ever a stamp,
// so stale payload can never pass for a stamp; the producer writes only slot
// lines and the consumer only its tail line: no false sharing.
//
// Memory ordering. The stamp store is a release and the consumer's load of it
// an acquire: everything the producer wrote into the slot before the stamp is
// visible once the consumer reads the stamp, so it never reads a slot that is
// not complete (the stamp plays head's role). The consumer copies the payload
// out, then stores tail (release); the producer loads tail (acquire) before
// writing into a freed slot, so it never overwrites a slot still being read.
// Each word has a single writer, so the fast path needs no read-modify-write.
// The stores are in fact seq_cst, because the sleep protocol below needs them
// ordered before the load of the peer's sleeping flag. Stamps are accessed
// through std::atomic_ref, the control words are std::atomic placed in the
// segment by its owner (lock-free, hence address-free across processes).
//
// Large messages (more than the eager limit) are copied once. The sender
// posts a single_copy slot carrying its buffer's address; the receiver, once
// the matching receive is posted, publishes its destination address, a chunk
// size (half the message, 64 KiB to TUTTI_SHM_CHUNK_BYTES) and a claim word
// (transfer number << 32 | next chunk). Both sides then claim chunks by
// compare-exchange on that word and copy them between the two buffers: the
// receiver with process_vm_readv from the sender's address space, the sender
// (while it waits for its send) with process_vm_writev into the receiver's,
// so two cores share the copy and each byte is still copied once. Each
// finished chunk adds its length to `copied`; when it reaches the message
// size the receiver completes the receive and bumps `acks`, the counter the
// sender reads to complete its send. The transfer number keeps a late claim
// from landing in the next transfer. Chunks bound each system call, so
// messages of many GiB work (4 GiB + 12345 B was checked on both paths) and
// one transfer does not hold up the other channels. Whether the kernel lets
// a rank into a peer's memory (ptrace access: Yama, containers, other users)
// is probed once per peer at setup by reading the peer's header through
// process_vm_readv; where it does not, or with TUTTI_SHM_CMA=0, large
// messages go through the ring, slot by slot, the consumer draining while the
// producer fills. Ranks that are threads of one process share one mapping of
// each segment (shm/segment.hpp) and copy with memcpy.
//
// The eager limit (32 KiB) was chosen by measurement on this 2-core VM, two
// processes: single copy halves ping-pong latency from 16 KiB up (64 KiB:
// 4.7 us vs 8.5 us), but streaming many messages in flight, the ring, where
// both cores copy and the slots stay in cache, is faster up to ~128 KiB
// (16 KiB: 11.4 GB/s vs 6.1; 64 KiB: 8.9 vs 7.1). The two penalties balance
// at about 32 KiB, and an eager send completes without waiting for the
// receiver, which matters when ranks outnumber cores.
//
// Waiting. Callers spin and yield (wait.hpp) before wait_for_activity, which
// sleeps on this rank's doorbell: read the doorbell, store sleeping = 1, look
// at every ring once more, then FUTEX_WAIT for the doorbell value read. Every
// change a rank may wait for (a stamp, tail, acks, copied, the claim word, a
// fault, closed) is made with a seq_cst store or read-modify-write and then
// followed by a seq_cst load of the peer's sleeping flag; if it is set, the
// doorbell is bumped and FUTEX_WAKE issued. Since both sides are seq_cst,
// either the sleeper's second look sees the change or the changer sees the
// flag, and a bump between the doorbell read and FUTEX_WAIT makes the wait
// return at once. A producer blocked on a full ring sleeps the same way and
// is woken by the consumer's tail store.
//
// Failure. A peer that exits or is killed is noticed by polling its pidfd
// (kill(pid, 0) where pidfd_open is missing); one that destroys its transport
// sets `closed`. Both are checked at most every 5 ms while operations are
// pending, and around every sleep. Messages wholly in our ring are still
// delivered; every other pending or later operation with that peer fails with
// errc::remote_failure naming its rank and pid. A receive posted with another
// size than the incoming message fails the channel with errc::mismatch, and
// the fault word tells the sender, whose channel fails too. A failed channel
// stops touching its rings and cancels its single-copy transfer (waiting,
// bounded, for the chunk the peer may be writing into our buffer), so it
// cannot corrupt later traffic. No wait is unbounded: store waits take the
// configured timeout, sleeps last at most 5 ms while operations are pending.
//
// Cleanup. attach() creates the segment, publishes "shm/up/<name>" in the
// scoped store, waits for its peers' keys, maps their segments, publishes
// "shm/mapped/<name>" and waits for its peers' again. At that point every
// peer has mapped our segment, so we shm_unlink it: after setup nothing is
// left in /dev/shm, and a rank killed later leaks nothing (the kernel frees
// the memory with the last mapping). A failed setup unlinks our segment, and
// those of peers whose process is gone.
//
// Tunables and their TUTTI_SHM_* environment variables: shm/options.hpp.
// Attach's steps: shm/setup.hpp. The channel protocol: shm/channel.hpp (the
// message paths) over shm/channel_state.hpp (what they share, and failure).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/shm/channel.hpp>
#include <tutti/transport/shm/futex.hpp>
#include <tutti/transport/shm/layout.hpp>
#include <tutti/transport/shm/options.hpp>
#include <tutti/transport/shm/peer_process.hpp>
#include <tutti/transport/shm/segment.hpp>
#include <tutti/transport/shm/setup.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::transport {

class shm_transport final : public transport {
 public:
  explicit shm_transport(const context& ctx) : shm_transport(ctx, shm_options::from_env()) {}

  shm_transport(const context& ctx, shm_options options)
      : ctx_(ctx), options_(options), name_(tutti::detail::shm::unique_segment_name(ctx.rank)) {
    options_.validate();
    if (!ctx_.scoped_store) tutti::detail::fail(errc::invalid_argument, "shm: the transport context has no store");
  }

  ~shm_transport() override {
    for (auto& c : channels_) c->close();
    if (header_ != nullptr) {
      header_->closed.store(1, std::memory_order_seq_cst);
      for (auto& c : channels_) c->notify_peer();
    }
    if (segment_ && !unlinked_) tutti::detail::shm::unlink_segment(name_);
  }

  shm_transport(const shm_transport&) = delete;
  shm_transport& operator=(const shm_transport&) = delete;

  [[nodiscard]] std::string_view name() const noexcept override { return "shm"; }

  // "<segment name> <pid>".
  [[nodiscard]] std::string endpoint() const override { return tutti::detail::concat(name_, ' ', ::getpid()); }

  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    if (attached_) tutti::detail::fail(errc::invalid_argument, "shm: attach called twice");
    const auto deadline = clock::now() + ctx_.config.timeout;
    auto infos = tutti::detail::shm::describe_peers(ctx_, cards, peers);
    index_.assign(static_cast<std::size_t>(ctx_.size), -1);
    attached_ = true;
    if (infos.empty()) return;
    try {
      create(infos);
      tutti::detail::shm::barrier(ctx_, name_, "up", "create its segment", infos, deadline);
      for (std::size_t i = 0; i < infos.size(); ++i) connect(infos[i], static_cast<std::uint32_t>(i));
      tutti::detail::shm::barrier(ctx_, name_, "mapped", "map its peers' segments", infos, deadline);
      tutti::detail::shm::unlink_segment(name_);
      unlinked_ = true;
      for (auto& c : channels_) c->finish_setup();
    } catch (...) {
      // Only a name we created is ours to remove (O_EXCL may have failed).
      if (segment_) tutti::detail::shm::unlink_segment(name_);
      unlinked_ = true;
      for (const auto& info : infos) {
        if (tutti::detail::shm::process_watch(static_cast<pid_t>(info.pid)).exited()) {
          tutti::detail::shm::unlink_segment(info.segment);
        }
      }
      channels_.clear();
      index_.assign(static_cast<std::size_t>(ctx_.size), -1);
      throw;
    }
    tutti::detail::log(tutti::detail::log_level::debug, "shm: rank ", ctx_.rank, " attached to ", channels_.size(),
                       " peers through ", name_);
  }

  // Every peer on the host is attached at once (one ring per pair in this
  // rank's segment): the host bounds them, not the world.
  [[nodiscard]] footprint held() const override {
    return {static_cast<int>(channels_.size()),
            channels_.empty() ? 0 : static_cast<std::size_t>(geometry_.total_bytes())};
  }

  channel& to(int peer) override {
    if (peer < 0 || peer >= static_cast<int>(index_.size()) || index_[static_cast<std::size_t>(peer)] < 0) {
      tutti::detail::fail(errc::invalid_argument, "shm: rank ", peer, " is not served by rank ", ctx_.rank,
                          "'s shm transport");
    }
    return *channels_[static_cast<std::size_t>(index_[static_cast<std::size_t>(peer)])];
  }

  void progress() override {
    bool pending = false;
    for (auto& c : channels_) {
      c->progress();
      pending = pending || c->pending();
    }
    // The clock is read every few dozen calls only, and the peers checked at
    // most every liveness_interval: no system call on the fast path.
    if (pending && --countdown_ == 0) {
      countdown_ = check_every;
      check_peers(clock::now());
    }
  }

  void wait_for_activity(clock::time_point deadline) override {
    const auto now = clock::now();
    if (header_ == nullptr) {
      std::this_thread::sleep_until(std::min(deadline, now + liveness_interval));
      return;
    }
    check_peers(now);
    bool pending = false;
    for (auto& c : channels_) {
      if (c->ready()) return;
      pending = pending || c->pending();
    }
    // Sleep protocol (see the top of this file): read the doorbell, announce
    // the sleep, look once more, sleep unless the doorbell moved.
    tutti::detail::shm::segment_header& me = *header_;
    const std::uint32_t seen = me.doorbell.load(std::memory_order_seq_cst);
    me.sleeping.store(1, std::memory_order_seq_cst);
    bool ready = false;
    for (auto& c : channels_) ready = ready || c->ready();
    if (!ready) {
      const auto until = pending ? std::min(deadline, now + liveness_interval) : deadline;
      tutti::detail::shm::futex_wait(me.doorbell, seen, until - clock::now());
    }
    me.sleeping.store(0, std::memory_order_seq_cst);
  }

  [[nodiscard]] const shm_options& options() const noexcept { return options_; }
  // The segment's name (for tests: it must be gone from /dev/shm after attach).
  [[nodiscard]] const std::string& segment_name() const noexcept { return name_; }
  // Whether sends to `peer` larger than the eager limit are copied once.
  [[nodiscard]] bool single_copy_to(int peer) { return channel_of(peer).single_copy_enabled(); }

 private:
  static constexpr std::chrono::milliseconds liveness_interval{5};
  static constexpr int check_every = 64;

  tutti::detail::shm::shm_channel& channel_of(int peer) {
    return static_cast<tutti::detail::shm::shm_channel&>(to(peer));
  }

  void create(const std::vector<tutti::detail::shm::peer_info>& infos) {
    namespace shm = tutti::detail::shm;
    geometry_ = shm::geometry{options_.ring_bytes, static_cast<std::uint32_t>(infos.size())};
    segment_ = shm::create_segment(name_, static_cast<std::size_t>(geometry_.total_bytes()));
    header_ = shm::format_segment(segment_->base(), ctx_.rank, geometry_, infos);
  }

  // Maps peer `info`'s segment, checks it, and opens the channel to it;
  // `index` is the peer's ring in our segment.
  void connect(const tutti::detail::shm::peer_info& info, std::uint32_t index) {
    namespace shm = tutti::detail::shm;
    shm::peer_segment theirs = shm::open_peer_segment(info, ctx_.rank);
    shm::channel_wiring wiring;
    wiring.peer = info.rank;
    wiring.peer_pid = static_cast<pid_t>(info.pid);
    // One process: the registry handed us the owner's own mapping.
    wiring.same_process = info.pid == ::getpid() &&
                          theirs.header->owner_address == reinterpret_cast<std::uintptr_t>(theirs.mapped->base());
    wiring.can_reach_peer = wiring.same_process || shm::probe(info, *theirs.header);
    wiring.peer_header = theirs.header;
    std::byte* in_ring = segment_->base() + geometry_.ring_offset(index);
    wiring.in = reinterpret_cast<shm::ring_control*>(in_ring);
    wiring.in_slots = in_ring + sizeof(shm::ring_control);
    wiring.in_slot_count = geometry_.slot_count();
    std::byte* out_ring = theirs.mapped->base() + theirs.layout.ring_offset(theirs.ring);
    wiring.out = reinterpret_cast<shm::ring_control*>(out_ring);
    wiring.out_slots = out_ring + sizeof(shm::ring_control);
    wiring.out_slot_count = theirs.layout.slot_count();
    // The peer reads this after the "mapped" barrier to choose its path.
    wiring.in->single_copy.store(options_.single_copy && wiring.can_reach_peer ? 1 : 0, std::memory_order_release);

    shm::channel_settings settings;
    settings.eager_limit = options_.eager_limit;
    settings.chunk_bytes = options_.chunk_bytes;
    settings.single_copy = options_.single_copy;
    settings.timeout = ctx_.config.timeout;
    peer_segments_.push_back(std::move(theirs.mapped));
    index_[static_cast<std::size_t>(info.rank)] = static_cast<int>(channels_.size());
    channels_.push_back(std::make_unique<shm::shm_channel>(wiring, settings));
  }

  void check_peers(clock::time_point now) {
    if (now < next_check_) return;
    next_check_ = now + liveness_interval;
    for (auto& c : channels_) c->check_peer();
  }

  context ctx_;
  shm_options options_;
  std::string name_;
  bool attached_ = false;
  bool unlinked_ = false;
  tutti::detail::shm::geometry geometry_;
  std::shared_ptr<tutti::detail::shm::mapping> segment_;
  tutti::detail::shm::segment_header* header_ = nullptr;
  std::vector<std::shared_ptr<tutti::detail::shm::mapping>> peer_segments_;
  // Declared after the mappings they point into, so they go first.
  std::vector<std::unique_ptr<tutti::detail::shm::shm_channel>> channels_;
  std::vector<int> index_;
  int countdown_ = check_every;
  clock::time_point next_check_{};
};

}  // namespace tutti::transport
