// The in-process transport with threads as ranks: what is its own (self
// channels, naming, sleeping waiters). The contract every transport keeps is
// tested over the transport list in transport_suite_test.cpp.
#include <tutti/transport/inproc/transport.hpp>
#include <tutti/transport/wait.hpp>

#include <catch2/catch.hpp>

#include <time.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>

#include "../support/patterns.hpp"
#include "../support/thread_world.hpp"
#include "../support/transport_world.hpp"

using namespace std::chrono_literals;
using tutti::test::check_all_passed;
using tutti::transport::inproc_transport;

namespace {

// Deterministic content: a message's bytes depend on sender, receiver, index.
std::vector<std::byte> pattern(int from, int to, std::size_t index, std::size_t bytes) {
  return tutti::test::pattern(bytes, tutti::test::seed_of(from, to, index));
}

tutti::transport::clock::time_point soon(std::chrono::milliseconds in = 10s) {
  return tutti::transport::clock::now() + in;
}

// Runs body(rank, transport) on `size` threads sharing one store; returns
// each rank's failure text (empty when it passed).
template <class Body>
std::vector<std::string> run_threads(int size, Body body) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int r) {
    tutti::options config;
    config.timeout = 10s;
    auto t = tutti::test::open_transport<inproc_transport>(shared, r, size, config);
    body(r, *t);
  });
}

}  // namespace

TEST_CASE("inproc full mesh of 8 threads including self channels", "[transport][inproc]") {
  constexpr int size = 8;
  auto shared = std::make_shared<tutti::memory_store>();
  check_all_passed(run_threads(size, [](int rank, inproc_transport& t) {
    std::vector<std::vector<std::byte>> in(size);
    std::vector<std::vector<std::byte>> out(size);
    std::vector<std::uint64_t> sends(size), recvs(size);
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      const auto bytes = static_cast<std::size_t>(100 * (peer + 1) + rank);
      in[static_cast<std::size_t>(peer)].resize(static_cast<std::size_t>(100 * (rank + 1) + peer));
      out[static_cast<std::size_t>(peer)] = pattern(rank, peer, 0, bytes);
      recvs[static_cast<std::size_t>(peer)] =
          t.to(peer).post_recv(in[static_cast<std::size_t>(peer)].data(), in[static_cast<std::size_t>(peer)].size());
      sends[static_cast<std::size_t>(peer)] = t.to(peer).post_send(out[static_cast<std::size_t>(peer)].data(), bytes);
    }
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      tutti::transport::wait_received(t, t.to(peer), recvs[static_cast<std::size_t>(peer)], soon());
      tutti::transport::wait_sent(t, t.to(peer), sends[static_cast<std::size_t>(peer)], soon());
      const auto& got = in[static_cast<std::size_t>(peer)];
      if (got != pattern(peer, rank, 0, got.size())) throw std::runtime_error("corrupt mesh message");
    }
  }));
}

TEST_CASE("inproc self channel", "[transport][inproc]") {
  auto shared = std::make_shared<tutti::memory_store>();
  tutti::transport::context ctx;
  ctx.scoped_store = shared;
  inproc_transport t(ctx);
  tutti::address_card card;
  card.endpoints = {{"inproc", t.endpoint()}};
  const std::vector<tutti::address_card> cards{card};
  t.attach(cards, std::vector<int>{0});
  const std::string message = "to myself";
  std::string got(message.size(), '\0');
  auto& c = t.to(0);
  c.post_send(message.data(), message.size());
  tutti::transport::wait_received(t, c, c.post_recv(got.data(), got.size()), soon());
  tutti::transport::wait_sent(t, c, 0, soon());
  CHECK(got == message);
}

TEST_CASE("inproc failures are named", "[transport][inproc]") {
  SECTION("a receive of the wrong size is a mismatch on both sides") {
    const auto failures = run_threads(2, [](int rank, inproc_transport& t) {
      auto& c = t.to(1 - rank);
      std::vector<std::uint8_t> buffer(rank == 0 ? 100 : 64);
      if (rank == 0) {
        tutti::transport::wait_sent(t, c, c.post_send(buffer.data(), buffer.size()), soon());
      } else {
        tutti::transport::wait_received(t, c, c.post_recv(buffer.data(), buffer.size()), soon());
      }
    });
    for (const auto& f : failures) {
      CHECK_THAT(f, Catch::StartsWith("tutti: mismatch: rank 0 sent 100 bytes but the matching receive is for 64"));
    }
  }
  SECTION("a peer that closes fails the pending receive") {
    const auto failures = run_threads(2, [](int rank, inproc_transport& t) {
      if (rank == 0) return;  // closes right away
      std::uint8_t byte = 0;
      auto& c = t.to(0);
      tutti::transport::wait_received(t, c, c.post_recv(&byte, 1), soon());
    });
    CHECK(failures[0].empty());
    CHECK_THAT(failures[1], Catch::Contains("remote_failure: rank 0 closed its end") && Catch::Contains("[peer 0]"));
  }
  SECTION("a receive nobody answers times out naming the peer") {
    const auto failures = run_threads(2, [](int rank, inproc_transport& t) {
      std::uint8_t byte = 0;
      auto& c = t.to(1 - rank);
      if (rank == 1) {
        const auto start = tutti::transport::clock::now();
        try {
          tutti::transport::wait_received(t, c, c.post_recv(&byte, 1), soon(200ms));
        } catch (const tutti::error& e) {
          if (tutti::transport::clock::now() - start > 400ms) throw std::runtime_error("late timeout");
          throw;
        }
      } else {
        std::this_thread::sleep_for(400ms);
      }
    });
    CHECK_THAT(failures[1], Catch::Equals("tutti: timeout: receive #0 from rank 0 over inproc timed out [peer 0]"));
  }
}

TEST_CASE("an idle inproc waiter sleeps instead of spinning", "[transport][inproc]") {
  check_all_passed(run_threads(2, [](int rank, inproc_transport& t) {
    auto& c = t.to(1 - rank);
    std::uint8_t byte = 7;
    if (rank == 0) {
      std::this_thread::sleep_for(300ms);
      tutti::transport::wait_sent(t, c, c.post_send(&byte, 1), soon());
      return;
    }
    timespec before{}, after{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &before);
    tutti::transport::wait_received(t, c, c.post_recv(&byte, 1), soon());
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &after);
    const double cpu =
        static_cast<double>(after.tv_sec - before.tv_sec) + static_cast<double>(after.tv_nsec - before.tv_nsec) * 1e-9;
    if (cpu > 0.1) throw std::runtime_error("waiting burned " + std::to_string(cpu) + " s of CPU in 0.3 s");
  }));
}
