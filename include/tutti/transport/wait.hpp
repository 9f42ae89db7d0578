// Waiting for channel operations: spin briefly, then yield, then sleep in the
// transport. Ranks often outnumber cores (always on a 2-core machine running
// 4-8 ranks), so a waiter must give its core away quickly, yet a message that
// arrives within a microsecond must not pay for a system call.
#pragma once

#include <sched.h>

#include <algorithm>
#include <atomic>
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
// When ranks outnumber CPUs: a short spin, well under a microsecond, which
// catches the answer of a partner running on another core without a trip
// through the scheduler, then yields for a few milliseconds before
// sleeping. Measured on 2 cores with 4 ranks (bench/compare_builds.sh,
// best of 15 interleaved runs): 16 rounds against 32 make all_reduce and
// all_gather of 8 B to 16 KiB 1.15-1.2x faster (8 B all_reduce 2.25 against
// 2.7 us), where every rank waits on another; a 1-4 KiB ping-pong between
// two of the four, while the other two sleep, is 1.3-1.8x slower, its answer
// arriving just after 16 rounds. Crowded hosts run collectives, so 16.
// (Earlier, 8 B all_reduce: no spin 8.5-11.8 us, 8 rounds 3.5-6.3.)
inline constexpr int crowded_spin_rounds = 16;
inline constexpr int crowded_yield_rounds = 4096;
// The longest single sleep: bounds how late a deadline or a dead peer is
// noticed by transports whose wait cannot see every event.
inline constexpr std::chrono::milliseconds longest_sleep{20};

// Whether ranks on this host outnumber the CPUs this process may run on.
// Then the rank a waiter waits for may be the one that needs its core, and
// spinning long only delays it: waiters yield almost from the start (what
// MPI calls yield_when_idle). Set by communicators when they learn their local ranks.
inline std::atomic<bool>& oversubscribed() noexcept {
  static std::atomic<bool> flag{false};
  return flag;
}

inline int usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

}  // namespace detail

// Records that `local_ranks` ranks share this host; once they outnumber its
// CPUs, every waiter in the process spins only briefly before it yields.
inline void note_local_ranks(int local_ranks) noexcept {
  if (local_ranks > detail::usable_cpus()) detail::oversubscribed().store(true, std::memory_order_relaxed);
}

// The light end of waiting, shared by every waiter: spin for the first
// rounds, then yield; pause() returns false once it is time to sleep in a
// transport. reset() after anything moved. Oversubscribed, a waiter spins
// only briefly and yields for longer before it sleeps: a sleeper is woken by
// a system call and the scheduler, far slower than handing over the core.
class backoff {
 public:
  void reset() noexcept { round_ = 0; }
  bool pause() noexcept {
    const bool crowded = detail::oversubscribed().load(std::memory_order_relaxed);
    const int spins = crowded ? detail::crowded_spin_rounds : detail::spin_rounds;
    const int yields = crowded ? detail::crowded_yield_rounds : detail::yield_rounds;
    if (round_ >= spins + yields) return false;  // asleep-ready until reset
    if (round_++ < spins) {
      detail::cpu_relax();
    } else {
      std::this_thread::yield();
    }
    return true;
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
