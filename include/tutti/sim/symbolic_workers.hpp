// The threads of a symbolic proof (symbolic_run.hpp): what each keeps to
// itself, and where they meet to hand over messages for each other's ranks.
// A part of its own because it is all a run knows of threads: a rank's
// state is only ever touched by its thread, so the exchange is the one
// place that takes a lock.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory_resource>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include <tutti/sim/rank_sets.hpp>
#include <tutti/sim/segments.hpp>
#include <tutti/sim/symbolic_channels.hpp>

namespace tutti::sim::detail {

// A message for a rank another thread runs.
struct symbolic_delivery {
  int to;
  std::uint32_t channel;
  symbolic_message m;  // m.first_piece: into the mailbox's pieces
};
struct symbolic_mailbox {
  std::vector<symbolic_delivery> deliveries;
  std::vector<piece> pieces;
};

// What one thread of the run keeps to itself.
struct alignas(64) symbolic_worker {  // a line of its own: its counters change every step
  symbolic_worker(int number, int threads, std::uint64_t seed)
      : index(number),
        rng((seed * std::uint64_t{0x9e3779b97f4a7c15} + 1) ^
            (static_cast<std::uint64_t>(number) * std::uint64_t{0xbf58476d1ce4e5b9})),
        outbox(static_cast<std::size_t>(threads)) {
    if (rng == 0) rng = 1;
  }
  int index;
  std::uint64_t rng;
  // Its ranks' segment maps and channels. Blocks up to 1 MiB stay in the
  // pool when freed, for the next channel that grows: freed to malloc,
  // they went back to the system and came back as new page faults.
  std::pmr::unsynchronized_pool_resource pool{std::pmr::pool_options{0, std::size_t{1} << 20}};
  std::vector<int> turn;
  std::vector<int> next_turn;
  int running = -1;  // the rank whose turn it is: its new ready steps run in this turn
  std::vector<piece> operand[3];
  std::vector<symbolic_mailbox> outbox;  // by thread: sent to its ranks, not yet posted
  symbolic_mailbox mail;                 // taken from its inbox, being delivered
  std::ostringstream problems;
  std::vector<std::pair<int, set_id>> final_knowledge;  // barrier: per executed step
  std::size_t executed = 0;
  std::size_t messages = 0;
};

// Where the threads of a run meet, under one mutex: each posts there what
// it sent to other threads' ranks, and rests there with nothing to run.
class symbolic_exchange {
 public:
  void open(int threads) {
    inbox_.resize(ix(threads));
    sleeping_.assign(ix(threads), 0);
  }

  // Hands what `me` sent to other threads' ranks to their inboxes, waking
  // those that rest.
  void post_mail(symbolic_worker& me) {
    if (std::all_of(me.outbox.begin(), me.outbox.end(), [](const symbolic_mailbox& m) { return m.deliveries.empty(); }))
      return;
    const std::lock_guard lock(mutex_);
    bool woken = false;
    for (std::size_t u = 0; u < me.outbox.size(); ++u) {
      symbolic_mailbox& out = me.outbox[u];
      if (out.deliveries.empty()) continue;
      symbolic_mailbox& in = inbox_[u];
      const auto shift = static_cast<std::uint32_t>(in.pieces.size());
      for (symbolic_delivery d : out.deliveries) {
        d.m.first_piece += shift;
        in.deliveries.push_back(d);
      }
      in.pieces.insert(in.pieces.end(), out.pieces.begin(), out.pieces.end());
      out.deliveries.clear();
      out.pieces.clear();
      if (sleeping_[u] != 0) {
        sleeping_[u] = 0;
        --asleep_;
        woken = true;
      }
    }
    if (woken) wake_.notify_all();
  }

  // Takes what other threads sent to `me`'s ranks into me.mail.
  void collect(symbolic_worker& me) {
    const std::lock_guard lock(mutex_);
    std::swap(me.mail, inbox_[ix(me.index)]);
  }

  // Waits, with nothing to run, for mail; false once every thread rests
  // with none (the run is over) or the run failed.
  bool rest(int t) {
    std::unique_lock lock(mutex_);
    if (!inbox_[ix(t)].deliveries.empty()) return true;
    if (finished_) return false;
    sleeping_[ix(t)] = 1;
    if (++asleep_ == static_cast<int>(inbox_.size())) {
      finished_ = true;
      wake_.notify_all();
      return false;
    }
    wake_.wait(lock, [&] { return sleeping_[ix(t)] == 0 || finished_; });
    return !finished_;
  }

  // Ends the run for every thread: it failed.
  void finish() {
    const std::lock_guard lock(mutex_);
    finished_ = true;
    wake_.notify_all();
  }

  // Keeps the first exception a thread threw, for the run to throw again
  // once every thread is done.
  void keep_error(std::exception_ptr e) {
    const std::lock_guard lock(mutex_);
    if (!error_) error_ = std::move(e);
  }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

 private:
  static std::size_t ix(int t) noexcept { return static_cast<std::size_t>(t); }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<symbolic_mailbox> inbox_;  // by thread: messages for its ranks
  std::vector<char> sleeping_;           // by thread: resting until mail comes
  int asleep_ = 0;
  bool finished_ = false;  // every thread rests with no mail, or the run failed
  std::exception_ptr error_;
};

}  // namespace tutti::sim::detail
