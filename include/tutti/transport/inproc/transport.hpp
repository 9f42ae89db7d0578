// The in-process transport: ranks that are threads of one process (and every
// rank's channel to itself). A message is copied once, straight from the
// sender's buffer into the receiver's, by the receiver when both sides have
// posted, so neither side buffers anything.
//
// Each directed pair of ranks shares a lane: the sender appends descriptors of
// its posted sends, the receiver consumes them in order and counts them, and
// the sender's completions are that count. Lanes and doorbells (a counter and
// condition variable per transport, rung on every event a waiter may care
// about) are found through a process-wide registry keyed by each transport's
// endpoint, and shared by both sides, so either may be destroyed first: the
// survivor sees the lane closed and fails the channel with remote_failure.
#pragma once

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::transport {
namespace detail {

// The count moves under the mutex, so a waiter that read it (without the
// lock: progress() reads it on every round) and then waits cannot miss a
// ring in between.
struct doorbell {
  std::mutex mutex;
  std::condition_variable rung;
  std::atomic<std::uint64_t> count{0};

  void ring() {
    {
      const std::scoped_lock lock(mutex);
      count.fetch_add(1, std::memory_order_release);
    }
    rung.notify_all();
  }
  // Sleeps until the count moves past `seen` or the deadline.
  void wait(std::uint64_t seen, clock::time_point deadline) {
    std::unique_lock lock(mutex);
    rung.wait_until(lock, deadline, [&] { return count.load(std::memory_order_relaxed) != seen; });
  }
  [[nodiscard]] std::uint64_t current() const { return count.load(std::memory_order_acquire); }
};

struct lane {
  struct pending_send {
    const void* data;
    std::size_t bytes;
  };
  std::mutex mutex;
  std::deque<pending_send> queue;
  std::uint64_t consumed = 0;
  bool closed = false;  // either side went away
  std::string broken;   // a size mismatch, reported to both sides
  std::shared_ptr<doorbell> sender_bell;
  std::shared_ptr<doorbell> receiver_bell;
};

// Process-wide: endpoint -> doorbell of a live transport, and (from, to) -> lane.
struct registry {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<doorbell>> bells;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<lane>> lanes;

  static registry& instance() {
    static registry r;
    return r;
  }

  std::shared_ptr<lane> lane_between(const std::string& from, const std::string& to) {
    const std::scoped_lock lock(mutex);
    auto& slot = lanes[{from, to}];
    auto found = slot.lock();
    if (!found) {
      found = std::make_shared<lane>();
      found->sender_bell = bells[from].lock();
      found->receiver_bell = bells[to].lock();
      // A side that is already gone (a rank that made and dropped its
      // communicator quickly) leaves a closed lane: using it fails cleanly.
      for (auto* bell : {&found->sender_bell, &found->receiver_bell}) {
        if (!*bell) {
          *bell = std::make_shared<doorbell>();
          found->closed = true;
        }
      }
      slot = found;
    }
    std::erase_if(lanes, [](const auto& entry) { return entry.second.expired(); });
    std::erase_if(bells, [](const auto& entry) { return entry.second.expired(); });
    return found;
  }
};

class inproc_channel final : public channel {
 public:
  inproc_channel(int peer, std::shared_ptr<lane> outgoing, std::shared_ptr<lane> incoming)
      : channel(peer), out_(std::move(outgoing)), in_(std::move(incoming)) {}

  ~inproc_channel() override { close_lanes(); }

  void progress() {
    // An idle channel (a rank's channel to itself, most of the time) costs
    // no lock: what the locks guard matters only to posted operations.
    if (failed() || idle()) return;
    if (!recvs_.empty()) receive_available();
    if (sends_done() == sends_posted()) return;
    const std::scoped_lock lock(out_->mutex);
    if (!out_->broken.empty()) return fail_with(errc::mismatch, out_->broken);
    if (out_->consumed > sends_done()) complete_sends(out_->consumed - sends_done());
    if (out_->closed && sends_done() < sends_posted()) {
      fail_with(errc::remote_failure, tutti::detail::concat("rank ", peer(), " closed its end of the channel"));
    }
  }

 protected:
  void enqueue_send(const void* data, std::size_t bytes) override {
    {
      const std::scoped_lock lock(out_->mutex);
      out_->queue.push_back({data, bytes});
    }
    out_->receiver_bell->ring();
  }

  void enqueue_recv(void* data, std::size_t bytes) override { recvs_.push_back({data, bytes}); }

  void on_abandon() override {
    recvs_.clear();
    close_lanes();
  }

 private:
  struct pending_recv {
    void* data;
    std::size_t bytes;
  };

  // Withdraws the sends the peer has not consumed (their buffers may be freed
  // once we return) and tells the peer this end is gone.
  void close_lanes() {
    for (const auto& l : {out_, in_}) {
      {
        const std::scoped_lock lock(l->mutex);
        if (l == out_) l->queue.clear();
        l->closed = true;
      }
      l->sender_bell->ring();
      l->receiver_bell->ring();
    }
  }

  void receive_available() {
    bool consumed_any = false;
    {
      const std::scoped_lock lock(in_->mutex);
      while (!recvs_.empty() && !in_->queue.empty()) {
        const auto send = in_->queue.front();
        const auto recv = recvs_.front();
        if (send.bytes != recv.bytes) {
          in_->broken = tutti::detail::concat("rank ", peer(), " sent ", send.bytes,
                                              " bytes but the matching receive is for ", recv.bytes);
          fail_with(errc::mismatch, in_->broken);
          break;
        }
        if (recv.bytes != 0) std::memcpy(recv.data, send.data, recv.bytes);
        in_->queue.pop_front();
        recvs_.pop_front();
        ++in_->consumed;
        complete_recvs();
        consumed_any = true;
      }
      if (!failed() && in_->closed && !recvs_.empty() && in_->queue.empty()) {
        fail_with(errc::remote_failure, tutti::detail::concat("rank ", peer(), " closed its end of the channel"));
      }
    }
    if (consumed_any || failed()) in_->sender_bell->ring();
  }

  std::shared_ptr<lane> out_;
  std::shared_ptr<lane> in_;
  std::deque<pending_recv> recvs_;
};

}  // namespace detail

class inproc_transport final : public transport {
 public:
  explicit inproc_transport(const context& ctx)
      : rank_(ctx.rank),
        endpoint_(tutti::detail::concat(::getpid(), '/', next_id().fetch_add(1), '/', ctx.rank)),
        bell_(std::make_shared<detail::doorbell>()) {
    auto& r = detail::registry::instance();
    const std::scoped_lock lock(r.mutex);
    r.bells[endpoint_] = bell_;
  }

  ~inproc_transport() override {
    channels_.clear();
    auto& r = detail::registry::instance();
    const std::scoped_lock lock(r.mutex);
    r.bells.erase(endpoint_);
  }

  [[nodiscard]] std::string_view name() const noexcept override { return "inproc"; }
  [[nodiscard]] std::string endpoint() const override { return endpoint_; }

  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    channels_.resize(cards.size());
    const std::string my_pid = tutti::detail::concat(::getpid(), '/');
    for (const int peer : peers) {
      const auto& card = cards[static_cast<std::size_t>(peer)];
      const std::string* published = card.endpoint_of("inproc");
      const std::string theirs = published != nullptr ? *published : std::string();
      if (!theirs.starts_with(my_pid)) {
        tutti::detail::fail(errc::unavailable, "inproc: rank ", peer, " (", card.describe(),
                            ") is not a thread of this process");
      }
      auto& r = detail::registry::instance();
      auto out = r.lane_between(endpoint_, theirs);
      auto in = r.lane_between(theirs, endpoint_);
      channels_[static_cast<std::size_t>(peer)] =
          std::make_unique<detail::inproc_channel>(peer, std::move(out), std::move(in));
    }
  }

  channel& to(int peer) override {
    if (peer < 0 || static_cast<std::size_t>(peer) >= channels_.size() || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::internal, "inproc: rank ", rank_, " has no channel to rank ", peer);
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  void progress() override {
    seen_ = bell_->current();
    for (auto& c : channels_) {
      if (c) c->progress();
    }
  }

  void wait_for_activity(clock::time_point deadline) override { bell_->wait(seen_, deadline); }

  // Threads of one process hand buffers over directly: nothing is held.
  [[nodiscard]] footprint held() const override {
    footprint out;
    for (std::size_t peer = 0; peer < channels_.size(); ++peer) {
      if (channels_[peer] && static_cast<int>(peer) != rank_) ++out.connections;
    }
    return out;
  }

 private:
  static std::atomic<std::uint64_t>& next_id() {
    static std::atomic<std::uint64_t> id{0};
    return id;
  }

  int rank_;
  std::string endpoint_;
  std::shared_ptr<detail::doorbell> bell_;
  std::vector<std::unique_ptr<detail::inproc_channel>> channels_;
  std::uint64_t seen_ = 0;
};

}  // namespace tutti::transport
