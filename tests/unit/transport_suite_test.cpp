// The suites every transport of the list runs (transport/registry.hpp):
// what the channel contract of transport/transport.hpp promises, at sizes
// that cross every transport's protocol thresholds (inline, eager slots and
// rings, rendezvous and single copy, chunking), with contents that depend on
// sender, receiver, message and position; and every collective through a
// communicator over the transport. Ranks are threads of this process, which
// every transport reaches. A transport added to the list is tested here with
// no edit of this file; one that cannot open on this machine (verbs without
// an RDMA device) must say why with errc::unavailable, and runs these
// suites where it can (verbs: in the soft-RoCE VM, tests/softroce).
#include <tutti/transport/registry.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/communicator.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/list_text.hpp>
#include <tutti/transport/wait.hpp>

#include "../support/collective_suite.hpp"
#include "../support/patterns.hpp"
#include "../support/thread_world.hpp"
#include "../support/transport_world.hpp"

using namespace std::chrono_literals;
using tutti::test::check_all_passed;
using tutti::test::pattern;
using tutti::test::seed_of;
namespace tt = tutti::transport;

namespace {

tt::clock::time_point soon() { return tt::clock::now() + 30s; }

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

// The transports of the list that open here; TUTTI_TEST_SUITE_TRANSPORTS
// ("verbs,tcp") keeps only those named, so that a slow machine (the
// soft-RoCE VM) runs the suites over the transport it is there for.
std::vector<const tt::descriptor*> usable_transports() {
  const auto only = tutti::detail::process_env("TUTTI_TEST_SUITE_TRANSPORTS");
  std::vector<const tt::descriptor*> out;
  for (const auto& d : tt::descriptors) {
    bool named = !only;
    if (only) tutti::detail::for_each_item(*only, [&](std::string_view name) { named = named || name == d.name; });
    if (named && tt::unavailable_here(d).empty()) out.push_back(&d);
  }
  return out;
}

// Runs body(rank, transport) on `size` threads, each with transport `d`
// attached to all the others.
template <class Body>
std::vector<std::string> run_transport(const tt::descriptor& d, int size, Body body) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int rank) {
    tutti::options config;
    config.timeout = 30s;
    auto t = tutti::test::open_transport(d, shared, rank, size, config);
    body(rank, *t);
  });
}

// 0 B, then each side of the thresholds: tcp's and shm's inline and eager
// sizes, verbs' inline and eager slot, shm's ring and single-copy chunk,
// rendezvous chunks, and a large transfer of many chunks.
const std::vector<std::size_t> crossing_sizes{0,
                                              1,
                                              7,
                                              8,
                                              255,
                                              4095,
                                              8191,
                                              8192,
                                              8193,
                                              32767,
                                              32768,
                                              32769,
                                              262143,
                                              262145,
                                              (std::size_t{1} << 20) + 3,
                                              (std::size_t{4} << 20) + 1,
                                              std::size_t{64} << 20};

}  // namespace

TEST_CASE("every transport of the list opens here or says why it cannot", "[transport_suite]") {
  for (const auto& d : tt::descriptors) {
    INFO(d.name);
    CHECK(tt::find_descriptor(d.name) == &d);
    CHECK(d.open != nullptr);
    CHECK_FALSE(d.summary.empty());
    const std::string why = tt::unavailable_here(d);
    if (!why.empty()) WARN(d.name << " cannot open on this machine: " << why);
  }
  CHECK_FALSE(usable_transports().empty());
}

TEST_CASE("every transport: ping-pong from 0 B to 64 MiB keeps every byte in place", "[transport_suite]") {
  for (const auto* d : usable_transports()) {
    INFO(d->name);
    check_all_passed(run_transport(*d, 2, [](int rank, tt::transport& t) {
      const int peer = 1 - rank;
      auto& c = t.to(peer);
      for (std::size_t round = 0; round < crossing_sizes.size(); ++round) {
        const std::size_t bytes = crossing_sizes[round];
        const auto out = pattern(bytes, seed_of(rank, peer, round));
        std::vector<std::byte> in(bytes);
        if (rank == 0) {
          const auto s = c.post_send(out.data(), bytes);
          tt::wait_received(t, c, c.post_recv(in.data(), bytes), soon());
          tt::wait_sent(t, c, s, soon());
        } else {
          tt::wait_received(t, c, c.post_recv(in.data(), bytes), soon());
          tt::wait_sent(t, c, c.post_send(out.data(), bytes), soon());
        }
        const auto bad = tutti::test::pattern_mismatch(in, seed_of(peer, rank, round));
        require(bad.empty(), tutti::detail::concat(bytes, " bytes: ", bad));
      }
      require(c.idle(), "channel not idle at the end");
    }));
  }
}

TEST_CASE("every transport: messages posted all at once arrive in order on every channel of a full mesh",
          "[transport_suite]") {
  constexpr int ranks = 4;
  // Sizes differ by sender, receiver and position, so a message delivered
  // to the wrong receive is caught by its size or its contents.
  auto bytes_of = [](int from, int to, std::size_t i) {
    return crossing_sizes[(i + static_cast<std::size_t>(from * 3 + to)) % (crossing_sizes.size() - 1)] +
           static_cast<std::size_t>(from + 5 * to) * (i % 3);
  };
  constexpr std::size_t depth = 16;
  for (const auto* d : usable_transports()) {
    INFO(d->name);
    check_all_passed(run_transport(*d, ranks, [&](int rank, tt::transport& t) {
      std::vector<std::vector<std::byte>> in, out;
      for (int peer = 0; peer < ranks; ++peer) {
        if (peer == rank) continue;
        for (std::size_t i = 0; i < depth; ++i) {
          in.emplace_back(bytes_of(peer, rank, i));
          out.push_back(pattern(bytes_of(rank, peer, i), seed_of(rank, peer, i)));
        }
      }
      std::size_t slot = 0;
      for (int peer = 0; peer < ranks; ++peer) {
        if (peer == rank) continue;
        auto& c = t.to(peer);
        // Sends first to some peers, receives first from the others: both
        // orders meet on every transport.
        const bool sends_first = (peer + rank) % 2 == 0;
        for (std::size_t i = 0; i < depth; ++i, ++slot) {
          if (sends_first) c.post_send(out[slot].data(), out[slot].size());
          c.post_recv(in[slot].data(), in[slot].size());
          if (!sends_first) c.post_send(out[slot].data(), out[slot].size());
        }
      }
      slot = 0;
      for (int peer = 0; peer < ranks; ++peer) {
        if (peer == rank) continue;
        auto& c = t.to(peer);
        tt::wait_received(t, c, depth - 1, soon());
        tt::wait_sent(t, c, depth - 1, soon());
        for (std::size_t i = 0; i < depth; ++i, ++slot) {
          const auto bad = tutti::test::pattern_mismatch(in[slot], seed_of(peer, rank, i));
          require(bad.empty(), tutti::detail::concat("message ", i, " from rank ", peer, ": ", bad));
        }
      }
      // Every rank has all it expects before any closes.
      for (int peer = 0; peer < ranks; ++peer) {
        if (peer == rank) continue;
        std::byte done{1}, theirs{};
        auto& c = t.to(peer);
        const auto s = c.post_send(&done, 1);
        tt::wait_received(t, c, c.post_recv(&theirs, 1), soon());
        tt::wait_sent(t, c, s, soon());
      }
    }));
  }
}

TEST_CASE("every transport: a receive of the wrong size fails with mismatch naming both sizes, without a hang",
          "[transport_suite]") {
  for (const auto* d : usable_transports()) {
    for (const std::size_t sent : {std::size_t{100}, std::size_t{1} << 20}) {
      const std::size_t posted = sent / 2 + 1;
      INFO(d->name << ": " << sent << " bytes sent, a receive of " << posted);
      const auto started = tt::clock::now();
      const auto failures = run_transport(*d, 2, [&](int rank, tt::transport& t) {
        auto& c = t.to(1 - rank);
        if (rank == 0) {
          const auto out = pattern(sent, seed_of(0, 1, 0));
          const auto s = c.post_send(out.data(), sent);
          // Done or failed, either is fine; waiting forever is not.
          tt::wait_until(
              t, [&] { return c.failed() || c.sends_done() > s; }, soon(), 1, [] { return "the send never ended"; });
          return;
        }
        std::vector<std::byte> in(posted);
        try {
          tt::wait_received(t, c, c.post_recv(in.data(), posted), soon());
        } catch (const tutti::error& e) {
          const std::string text = e.message();
          require(e.code() == tutti::errc::mismatch && e.where().peer == 0 &&
                      text.find(std::to_string(sent)) != std::string::npos &&
                      text.find(std::to_string(posted)) != std::string::npos,
                  tutti::detail::concat("expected a mismatch naming ", sent, " and ", posted, ", got: ", e.what()));
          return;
        }
        throw std::runtime_error("the receive of the wrong size succeeded");
      });
      check_all_passed(failures);
      CHECK(tt::clock::now() - started < 20s);
    }
  }
}

TEST_CASE("every transport: every collective through a communicator of 4 threads", "[transport_suite]") {
  for (const auto* d : usable_transports()) {
    INFO(d->name);
    auto shared = std::make_shared<tutti::memory_store>();
    check_all_passed(tutti::test::run_threads(4, [&](int rank) {
      tutti::options config;
      config.timeout = 60s;
      config.transport = std::string(d->name);
      tutti::communicator comm(shared, rank, 4, config);
      require(comm.link_class() == d->name, "the cost model is priced on the forced transport's links");
      for (const std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{100003}}) {
        tutti::test::exercise(comm, count);
      }
      // Registered buffers (a no-op where the transport registers nothing)
      // carry a large all_reduce in place, before and after unregistering.
      std::vector<std::int64_t> kept(std::size_t{1} << 18, rank + 1);
      for (const bool registered : {true, false}) {
        if (registered) comm.register_memory(std::span<const std::int64_t>(kept));
        comm.all_reduce(std::span<std::int64_t>(kept));
        if (registered) comm.unregister_memory(std::span<const std::int64_t>(kept));
      }
      // 1 + 2 + 3 + 4, then four times that.
      for (const auto x : kept) require(x == 40, "all_reduce over registered memory");
    }));
  }
}
