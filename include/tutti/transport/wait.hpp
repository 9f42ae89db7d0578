// Waiting for channel operations: spin briefly, then yield, then sleep in the
// transport. Ranks often outnumber cores (always on a 2-core machine running
// 4-8 ranks), so a waiter must give its core away quickly, yet a message that
// arrives within a microsecond must not pay for a system call.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

#include <tutti/error.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::transport {

namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spin counts tuned for a pause of ~40 cycles on x86: about 10-20 us of
// spinning, then a few hundred yields, before sleeping.
inline constexpr int spin_rounds = 256;
inline constexpr int yield_rounds = 64;
// The longest single sleep: bounds how late a deadline or a dead peer is
// noticed by transports whose wait cannot see every event.
inline constexpr std::chrono::milliseconds longest_sleep{20};

}  // namespace detail

// The light end of waiting, shared by every waiter: spin for the first
// rounds, then yield; pause() returns false once it is time to sleep in a
// transport. reset() after anything moved.
class backoff {
 public:
  void reset() noexcept { round_ = 0; }
  bool pause() noexcept {
    const int round = round_++;
    if (round < detail::spin_rounds) {
      detail::cpu_relax();
      return true;
    }
    if (round < detail::spin_rounds + detail::yield_rounds) {
      std::this_thread::yield();
      return true;
    }
    round_ = detail::spin_rounds + detail::yield_rounds;  // stay asleep-ready without overflowing
    return false;
  }

 private:
  int round_ = 0;
};

// An operation's deadline, fixed when it is first looked at (the first
// time the operation has to wait) as that moment plus the timeout. A clock
// read costs as much as a small collective's bookkeeping on some machines,
// and an operation that completes while spinning never needs one.
class lazy_deadline {
 public:
  lazy_deadline() = default;
  explicit lazy_deadline(std::chrono::milliseconds timeout) noexcept : timeout_(timeout) {}
  clock::time_point at(clock::time_point now) noexcept {
    if (!fixed_) {
      at_ = now + timeout_;
      fixed_ = true;
    }
    return at_;
  }

 private:
  std::chrono::milliseconds timeout_{};
  clock::time_point at_{};
  bool fixed_ = false;
};

// Drives `t` until done() returns true. done() may throw (a failed channel
// rethrows its error). At the deadline, throws errc::timeout with the message
// from describe(), blamed on `peer`.
template <class Done, class Describe>
void wait_until(transport& t, Done&& done, clock::time_point deadline, int peer, Describe&& describe) {
  backoff idle;
  for (;;) {
    t.progress();
    if (done()) return;
    if (!idle.pause()) {
      const auto now = clock::now();
      if (now >= deadline) {
        blame where;
        where.peer = peer;
        throw error(errc::timeout, describe(), std::move(where));
      }
      t.wait_for_activity(std::min(deadline, now + detail::longest_sleep));
    }
  }
}

// Waits until send (or receive) number `index` on `c` is done.
inline void wait_done(transport& t, channel& c, bool send, std::uint64_t index, clock::time_point deadline) {
  wait_until(
      t,
      [&] {
        c.check_usable();
        return (send ? c.sends_done() : c.recvs_done()) > index;
      },
      deadline, c.peer(),
      [&] {
        return tutti::detail::concat(send ? "send #" : "receive #", index, send ? " to rank " : " from rank ", c.peer(),
                                     " over ", t.name(), " timed out");
      });
}

inline void wait_sent(transport& t, channel& c, std::uint64_t index, clock::time_point deadline) {
  wait_done(t, c, true, index, deadline);
}

inline void wait_received(transport& t, channel& c, std::uint64_t index, clock::time_point deadline) {
  wait_done(t, c, false, index, deadline);
}

}  // namespace tutti::transport
