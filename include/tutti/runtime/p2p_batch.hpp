// Runs a batch of point-to-point operations (communicator::exchange, send,
// recv): every operation is posted at once, in the order given, then polled
// to completion. Posting never blocks, so a batch in which two ranks both
// send before they receive completes whatever the order of its entries.
// Like the executor it is started, then polled, so requests can queue it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/p2p.hpp>
#include <tutti/runtime/executor.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/wait.hpp>

namespace tutti::runtime {

// Rejects a batch before any byte moves: peers out of range, null buffers.
inline void validate_batch(std::span<const p2p_op> ops, int size, std::string_view what) {
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const auto& op = ops[i];
    const char* verb = op.kind == p2p_op::direction::send ? "send to" : "receive from";
    if (op.peer < 0 || op.peer >= size) {
      detail::fail(errc::invalid_argument, what, ": operation ", i, " (", verb, " rank ", op.peer, ") names a rank ",
                   "outside [0, ", size, ")");
    }
    if (op.data == nullptr && op.bytes != 0) {
      detail::fail(errc::invalid_argument, what, ": operation ", i, " (", verb, " rank ", op.peer, ") has a null ",
                   "buffer of ", op.bytes, " bytes");
    }
  }
}

class p2p_batch {
 public:
  // Posts every operation. `ops` is copied; the buffers and `routes` must
  // outlive the batch. `what` (a static name) and `rank` are for errors.
  void start(std::span<const p2p_op> ops, std::span<const route> routes, transport::lazy_deadline deadline,
             std::string_view what, int rank) {
    ops_.assign(ops.begin(), ops.end());
    routes_ = routes;
    deadline_ = deadline;
    what_ = what;
    rank_ = rank;
    current_ = none;
    backoff_.reset();
    posted_.resize(ops_.size());
    transports_.clear();
    guarded([&] {
      for (std::size_t i = 0; i < ops_.size(); ++i) {
        current_ = i;
        const auto& op = ops_[i];
        const route& r = routes_[static_cast<std::size_t>(op.peer)];
        posted_[i] = op.kind == p2p_op::direction::send ? r.channel->post_send(op.data, op.bytes)
                                                        : r.channel->post_recv(op.data, op.bytes);
        if (std::find(transports_.begin(), transports_.end(), r.via) == transports_.end()) {
          transports_.push_back(r.via);
        }
      }
      current_ = none;
    });
    remaining_ = ops_.size();
  }

  // One round without blocking; true once every operation is done.
  bool poll() {
    return guarded([&] {
      for (auto* t : transports_) t->progress();
      std::size_t left = 0;
      for (std::size_t i = 0; i < ops_.size(); ++i) {
        current_ = i;
        if (!finished(i)) ++left;
      }
      current_ = none;
      if (left != remaining_) backoff_.reset();
      remaining_ = left;
      return left == 0;
    });
  }

  // Nothing moved: spin, yield, then sleep in a transport, not past `until`.
  // Throws errc::timeout at the batch's deadline, naming what is pending.
  void idle(transport::clock::time_point until) {
    guarded([&] {
      if (backoff_.pause()) return;
      const auto now = transport::clock::now();
      const auto deadline = deadline_.at(now);
      if (now >= deadline) {
        std::string pending;
        for (std::size_t i = 0, shown = 0; i < ops_.size() && shown < 8; ++i) {
          if (finished(i)) continue;
          const auto& op = ops_[i];
          pending +=
              detail::concat(shown++ == 0 ? "" : ", ", op.kind == p2p_op::direction::send ? "send to" : "receive from",
                             " rank ", op.peer, " (", op.bytes, " bytes)");
        }
        detail::fail(errc::timeout, what_, " timed out with ", remaining_, " of ", ops_.size(),
                     " operations pending: ", pending);
      }
      if (now < until && !transports_.empty()) {
        transports_.front()->wait_for_activity(std::min({until, deadline, now + transport::detail::longest_sleep}));
      }
    });
  }

  void abandon(const char* why) {
    for (const auto& op : ops_) {
      auto* c = routes_[static_cast<std::size_t>(op.peer)].channel;
      if (!c->idle()) c->abandon(why);
    }
  }

 private:
  static constexpr std::size_t none = ~std::size_t{0};

  [[nodiscard]] bool finished(std::size_t i) const {
    const auto& op = ops_[i];
    const auto& c = *routes_[static_cast<std::size_t>(op.peer)].channel;
    c.check_usable();
    return (op.kind == p2p_op::direction::send ? c.sends_done() : c.recvs_done()) > posted_[i];
  }

  template <class Body>
  auto guarded(Body&& body) -> decltype(body()) {
    try {
      return body();
    } catch (const error& e) {
      abandon(e.what());
      blame where = e.where();
      where.rank = rank_;
      where.collective = std::string(what_);
      if (where.peer == blame::no_rank && current_ != none) where.peer = ops_[current_].peer;
      current_ = none;
      throw error(e.code(), e.message(), std::move(where));
    }
  }

  std::vector<p2p_op> ops_;
  std::vector<std::uint64_t> posted_;
  std::vector<transport::transport*> transports_;
  std::span<const route> routes_;
  transport::lazy_deadline deadline_;
  std::string_view what_;
  int rank_ = 0;
  std::size_t remaining_ = 0;
  std::size_t current_ = none;
  transport::backoff backoff_;
};

}  // namespace tutti::runtime
