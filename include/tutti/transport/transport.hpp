// The byte-level transport layer: per-peer ordered channels and the
// transports that own them (one folder each under transport/, listed in
// transport/registry.hpp).
//
// A channel moves whole messages to one peer and from it, in order in each
// direction, like an RC queue pair. post_send and post_recv only enqueue;
// progress moves bytes. Because operations complete in the order they were
// posted, a completion is a counter: send i is done when sends_done() > i.
// A receive must be posted with the exact size of the message the peer sends
// (collectives always know it); another size is errc::mismatch and ends the
// channel, since the byte streams would be out of step from then on.
//
// A channel that fails (peer died, connection reset, mismatch) keeps the
// error: every later post or wait on it rethrows it, naming the peer. Other
// channels of the same transport are unaffected.
//
// Threading: a transport and its channels are driven by one thread at a time
// (the communicator serialises its operations); different communicators own
// different transports and may run concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/error.hpp>
#include <tutti/options.hpp>

namespace tutti::transport {

using clock = std::chrono::steady_clock;

class channel {
 public:
  explicit channel(int peer) noexcept : peer_(peer) {}
  virtual ~channel() = default;
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  // Enqueues a message of `bytes` bytes (0 allowed). The buffer must stay
  // valid and unchanged until the send is done. Returns the send's index.
  std::uint64_t post_send(const void* data, std::size_t bytes) {
    check_usable();
    if (data == nullptr && bytes != 0) detail::fail(errc::invalid_argument, "send to rank ", peer_, ": null buffer");
    enqueue_send(data, bytes);
    return sends_posted_++;
  }

  // Enqueues a receive of exactly `bytes` bytes into `data`, which must stay
  // valid until the receive is done. Returns the receive's index.
  std::uint64_t post_recv(void* data, std::size_t bytes) {
    check_usable();
    if (data == nullptr && bytes != 0) {
      detail::fail(errc::invalid_argument, "receive from rank ", peer_, ": null buffer");
    }
    enqueue_recv(data, bytes);
    return recvs_posted_++;
  }

  [[nodiscard]] int peer() const noexcept { return peer_; }
  [[nodiscard]] std::uint64_t sends_posted() const noexcept { return sends_posted_; }
  [[nodiscard]] std::uint64_t recvs_posted() const noexcept { return recvs_posted_; }
  [[nodiscard]] std::uint64_t sends_done() const noexcept { return sends_done_; }
  [[nodiscard]] std::uint64_t recvs_done() const noexcept { return recvs_done_; }
  [[nodiscard]] bool idle() const noexcept { return sends_done_ == sends_posted_ && recvs_done_ == recvs_posted_; }

  [[nodiscard]] bool failed() const noexcept { return failure_ != nullptr; }

  // Gives up every operation in flight, as after an error elsewhere in the
  // same collective: the channel fails with errc::aborted and from here on no
  // byte moves into or out of a buffer posted on it, so the caller may free
  // its buffers. The peer sees its pending operations fail.
  void abandon(const std::string& why) {
    if (failed()) return;
    fail_with(errc::aborted, why);
    on_abandon();
  }
  // Throws the error that ended this channel, if any.
  void check_usable() const {
    if (failure_) std::rethrow_exception(failure_);
  }

 protected:
  virtual void enqueue_send(const void* data, std::size_t bytes) = 0;
  virtual void enqueue_recv(void* data, std::size_t bytes) = 0;
  // Withdraws what abandon() must: queued operations, references to posted
  // buffers. The failure is already recorded when it is called.
  virtual void on_abandon() {}

  void complete_sends(std::uint64_t count = 1) noexcept { sends_done_ += count; }
  void complete_recvs(std::uint64_t count = 1) noexcept { recvs_done_ += count; }

  // Ends the channel with an error blamed on its peer; the first error wins.
  void fail_with(errc code, const std::string& message) noexcept {
    if (failure_) return;
    blame where;
    where.peer = peer_;
    failure_ = std::make_exception_ptr(error(code, message, std::move(where)));
  }

 private:
  int peer_;
  std::uint64_t sends_posted_ = 0;
  std::uint64_t recvs_posted_ = 0;
  std::uint64_t sends_done_ = 0;
  std::uint64_t recvs_done_ = 0;
  std::exception_ptr failure_;
};

// What a transport learns about its world when it is opened.
struct context {
  int rank = 0;
  int size = 1;
  // This rank's index on its host as its launcher tells it, before the
  // ranks have met: what a transport may pick its NIC by. -1: unknown.
  int local_rank_hint = -1;
  options config;
  // The communicator's scoped store, for transports that exchange more than
  // fits an address card.
  std::shared_ptr<store> scoped_store;
};

// What a transport holds for the peers it has reached so far: connections
// are made lazily (tcp, verbs) or per host (shm), so this grows with the
// peers the schedules use, not with the world.
struct footprint {
  int connections = 0;           // peers with a connection (this rank itself not counted)
  std::size_t memory_bytes = 0;  // buffers held for them: rings, slots, socket buffers
};

class transport {
 public:
  virtual ~transport() = default;

  // Its descriptor's name: also the name of its address card entry.
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;

  // This rank's address for the transport, published in its address card
  // before rendezvous.
  [[nodiscard]] virtual std::string endpoint() const = 0;

  // After rendezvous: every rank's card, and the peers this transport serves
  // (chosen by the communicator; never this rank itself). Collective over
  // those peers: a transport may exchange setup messages here. Connections
  // may still be made lazily, on first use.
  virtual void attach(std::span<const address_card> cards, std::span<const int> peers) = 0;

  // The channel to `peer`, which this transport serves.
  virtual channel& to(int peer) = 0;

  // Moves bytes on every channel without blocking. Failures are recorded on
  // the channels they concern, not thrown.
  virtual void progress() = 0;

  // Sleeps until something may have happened on one of this transport's
  // channels, or until `deadline`: called after spinning found nothing to do,
  // so an idle rank does not burn a core (futex, poll, condition variable).
  virtual void wait_for_activity(clock::time_point deadline) = 0;

  [[nodiscard]] virtual footprint held() const = 0;

  // Keeps [data, data + bytes) registered with the transport's device until
  // unregister_memory(data), so that transfers from and into it skip
  // registration on the hot path. A no-op for transports that move bytes
  // without registering memory (the default).
  virtual void register_memory(const void* data, std::size_t bytes) {
    static_cast<void>(data);
    static_cast<void>(bytes);
  }
  virtual void unregister_memory(const void* data) { static_cast<void>(data); }

  // The RDMA device this transport sends through between hosts, as the
  // host's topology names it (the cluster view takes its rail from it);
  // empty for transports without one.
  [[nodiscard]] virtual std::string nic() const { return {}; }
};

}  // namespace tutti::transport
