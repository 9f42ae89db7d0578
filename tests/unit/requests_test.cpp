// Async requests, exchange (grouped sends and receives), split and dup:
// on thread worlds (inproc) and on shm and tcp processes.
#include <tutti/communicator.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>

#include "../support/ports.hpp"
#include "../support/subprocess.hpp"
#include "../support/thread_world.hpp"

using namespace std::chrono_literals;

namespace {

template <class Body>
std::vector<std::string> thread_world(int size, Body body, bool check = true, std::chrono::milliseconds timeout = 20s) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int r) {
    tutti::options config;
    config.timeout = timeout;
    config.check = check;
    tutti::communicator comm(shared, r, size, config);
    body(comm);
  });
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

// Throws unless `call` throws a tutti::error with `code` whose message
// contains `fragment`; returns the message.
template <class Call>
std::string expect_error(Call&& call, tutti::errc code, const std::string& fragment) {
  try {
    call();
  } catch (const tutti::error& e) {
    expect(e.code() == code && e.message().find(fragment) != std::string::npos,
           "wrong error (wanted '" + fragment + "'): " + e.what());
    return e.what();
  }
  throw std::runtime_error("no error containing '" + fragment + "'");
}

std::int64_t value(int rank, std::size_t i, int salt = 0) {
  return static_cast<std::int64_t>(i % 977) * 13 + rank * 5 + salt * 1000003;
}

std::int64_t sum_over_ranks(int n, std::size_t i, int salt = 0) {
  std::int64_t s = 0;
  for (int r = 0; r < n; ++r) s += value(r, i, salt);
  return s;
}

// Several collectives in flight at once, waited in reverse: each completes
// with its own data, and waiting for one finishes every earlier one.
void overlapping_requests(tutti::communicator& comm) {
  const int n = comm.size();
  const int me = comm.rank();
  const std::size_t counts[] = {1, 1000, 65537, 7, 300000};
  std::vector<std::vector<std::int64_t>> sums;
  for (std::size_t k = 0; k < std::size(counts); ++k) {
    sums.emplace_back(counts[k]);
    for (std::size_t i = 0; i < counts[k]; ++i) sums[k][i] = value(me, i, static_cast<int>(k));
  }
  std::vector<std::int64_t> block(100);
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = value(me, i, 9);
  std::vector<std::int64_t> gathered(block.size() * static_cast<std::size_t>(n));
  std::vector<float> averaged(33, static_cast<float>(me));
  std::vector<std::int64_t> from_root(5000, me == n - 1 ? 42 : -1);

  std::vector<tutti::request> requests;
  for (auto& v : sums) requests.push_back(comm.all_reduce_async(std::span<std::int64_t>(v)));
  requests.push_back(comm.all_gather_async(std::span<const std::int64_t>(block), std::span<std::int64_t>(gathered)));
  requests.push_back(comm.all_reduce_async(std::span<float>(averaged), tutti::avg{}));
  requests.push_back(comm.broadcast_async(std::span<std::int64_t>(from_root), n - 1));
  requests.push_back(comm.barrier_async());
  expect(comm.pending() <= requests.size(), "pending counts queued operations");

  for (std::size_t k = requests.size(); k-- > 0;) {
    requests[k].wait();
    expect(comm.pending() == 0, "waiting for the last request finishes every earlier one");
  }
  for (auto& r : requests) expect(r.test(), "a finished request tests true");

  for (std::size_t k = 0; k < sums.size(); ++k) {
    for (std::size_t i = 0; i < sums[k].size(); ++i) {
      expect(sums[k][i] == sum_over_ranks(n, i, static_cast<int>(k)), "all_reduce_async result");
    }
  }
  for (int r = 0; r < n; ++r) {
    for (std::size_t i = 0; i < block.size(); ++i) {
      expect(gathered[static_cast<std::size_t>(r) * block.size() + i] == value(r, i, 9), "all_gather_async result");
    }
  }
  const float mean = static_cast<float>(n - 1) / 2.0f;
  for (const float x : averaged) expect(x == mean, "avg through a request divides once");
  for (const auto x : from_root) expect(x == 42, "broadcast_async result");
}

// Every rank sends to both neighbours before receiving from them, 1 MiB each
// way: posted one by one and waited in order this would deadlock on a
// rendezvous transport; as one exchange it completes.
void ring_exchange(tutti::communicator& comm, bool async) {
  const int n = comm.size();
  const int me = comm.rank();
  const int right = (me + 1) % n;
  const int left = (me + n - 1) % n;
  const std::size_t count = std::size_t{1} << 17;
  std::vector<std::int64_t> out(count), from_left(count), from_right(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = value(me, i);
  const std::span<const std::int64_t> mine(out);
  const tutti::p2p_op ops[] = {tutti::send_op(mine, right), tutti::send_op(mine, left),
                               tutti::recv_op(std::span<std::int64_t>(from_left), left),
                               tutti::recv_op(std::span<std::int64_t>(from_right), right)};
  if (async) {
    auto r = comm.exchange_async(ops);
    r.wait();
  } else {
    comm.exchange(ops);
  }
  for (std::size_t i = 0; i < count; ++i) {
    expect(from_left[i] == value(left, i) && from_right[i] == value(right, i), "exchange delivered");
  }
}

// Evens and odds in reverse rank order (key = -rank); the last rank of an
// odd-sized world opts out.
void split_and_run(tutti::communicator& comm) {
  const int n = comm.size();
  const int me = comm.rank();
  const bool opts_out = n % 2 == 1 && me == n - 1;
  auto half = comm.split(opts_out ? tutti::communicator::no_color : me % 2, -me);
  expect(half.has_value() == !opts_out, "split returns a communicator to members only");
  if (!half) return;
  std::vector<int> members;
  for (int r = 0; r < n; ++r) {
    if (r % 2 == me % 2 && !(n % 2 == 1 && r == n - 1)) members.insert(members.begin(), r);
  }
  expect(half->size() == static_cast<int>(members.size()), "split size");
  expect(members[static_cast<std::size_t>(half->rank())] == me, "split orders by key");
  std::vector<std::int64_t> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = value(me, i);
  for (int round = 0; round < 20; ++round) half->all_reduce(std::span<std::int64_t>(v), tutti::max{});
  for (std::size_t i = 0; i < v.size(); ++i) expect(v[i] == value(members.front(), i), "split all_reduce");
}

// A communicator and its dup, driven at once from two threads of each rank,
// with different data: neither sees the other's traffic.
void dup_concurrently(tutti::communicator& comm) {
  auto twin = comm.dup();
  expect(twin.rank() == comm.rank() && twin.size() == comm.size(), "dup keeps ranks");
  const int n = comm.size();
  auto hammer = [n, me = comm.rank()](tutti::communicator& c, int salt) {
    for (int round = 0; round < 30; ++round) {
      std::vector<std::int64_t> v(257 + static_cast<std::size_t>(round) * 31);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = value(me, i, salt + round);
      c.all_reduce(std::span<std::int64_t>(v));
      for (std::size_t i = 0; i < v.size(); ++i) expect(v[i] == sum_over_ranks(n, i, salt + round), "dup isolation");
    }
  };
  std::string other_failure;
  std::thread other([&] {
    try {
      hammer(twin, 100);
    } catch (const std::exception& e) {
      other_failure = e.what();
    }
  });
  hammer(comm, 0);
  other.join();
  expect(other_failure.empty(), other_failure);
}

void check_passed(const std::vector<std::string>& failures) { tutti::test::check_all_passed(failures); }

}  // namespace

TEST_CASE("async requests complete in issue order with their own results", "[requests]") {
  for (int size : {1, 2, 3, 5}) {
    INFO(size << " ranks");
    check_passed(thread_world(size, overlapping_requests));
  }
}

TEST_CASE("a request reports its operation's error", "[requests]") {
  check_passed(thread_world(3, [](tutti::communicator& comm) {
    std::vector<int> v(comm.rank() == 0 ? 10 : 12, 1);
    // Bad arguments are refused when issued, before anything is queued.
    std::vector<int> wrong(11);
    expect_error([&] { (void)comm.all_reduce_async(std::span<const int>(v), std::span<int>(wrong)); },
                 tutti::errc::invalid_argument, "output has 11 elements");
    expect(comm.pending() == 0, "a refused call queues nothing");
    // A mismatch across ranks fails the request on the ranks that see it.
    auto r = comm.all_reduce_async(std::span<int>(v));
    try {
      r.wait();
      throw std::runtime_error("mismatched counts went unnoticed");
    } catch (const tutti::error& e) {
      expect(e.code() != tutti::errc::invalid_argument, std::string("unexpected: ") + e.what());
    }
    // The error stays with the request.
    try {
      (void)r.test();
      throw std::runtime_error("test() after a failure did not rethrow");
    } catch (const tutti::error&) {
    }
  }));
}

TEST_CASE("wait with a timeout returns false while a peer is late", "[requests]") {
  check_passed(thread_world(2, [](tutti::communicator& comm) {
    std::vector<double> v(4096, 1.0);
    if (comm.rank() == 1) std::this_thread::sleep_for(400ms);
    auto r = comm.all_reduce_async(std::span<double>(v));
    if (comm.rank() == 0) {
      expect(!r.test(), "test() is false while the peer has not called");
      const auto before = std::chrono::steady_clock::now();
      expect(!r.wait(50ms), "wait(50ms) is false while the peer sleeps");
      expect(std::chrono::steady_clock::now() - before < 300ms, "wait(50ms) returns promptly");
    }
    r.wait();
    for (const double x : v) expect(x == 2.0, "result after the late peer");
  }));
}

TEST_CASE("an operation that stalls fails its request with a timeout naming the peer", "[requests]") {
  check_passed(thread_world(
      2,
      [](tutti::communicator& comm) {
        std::vector<int> v(16, 1);
        if (comm.rank() == 1) {
          std::this_thread::sleep_for(1500ms);  // past rank 0's timeout
          return;
        }
        auto r = comm.all_reduce_async(std::span<int>(v));
        const auto what = expect_error([&] { r.wait(); }, tutti::errc::timeout, "timed out");
        expect(what.find("from rank 1") != std::string::npos, "names the peer: " + what);
      },
      false, 500ms));
}

TEST_CASE("destroying a communicator fails its pending requests", "[requests]") {
  check_passed(thread_world(2, [](tutti::communicator& parent) {
    auto comm = std::make_unique<tutti::communicator>(parent.dup());
    std::vector<float> v(std::size_t{1} << 20, 1.0f);
    auto r = comm->all_reduce_async(std::span<float>(v));
    parent.barrier();  // both issued before either destroys
    comm.reset();
    expect_error([&] { r.wait(); }, tutti::errc::aborted, "destroyed");
    parent.barrier();
  }));
}

TEST_CASE("exchange posts every send and receive at once", "[requests]") {
  for (int size : {1, 2, 3, 4}) {
    INFO(size << " ranks");
    check_passed(thread_world(size, [](tutti::communicator& comm) {
      ring_exchange(comm, false);
      ring_exchange(comm, true);
    }));
  }
}

TEST_CASE("exchange rejects bad peers and null buffers before any byte moves", "[requests]") {
  check_passed(thread_world(2, [](tutti::communicator& comm) {
    std::vector<int> a(4);
    const auto peer = 1 - comm.rank();
    expect_error(
        [&] {
          comm.exchange({tutti::send_op(std::span<const int>(a), peer), tutti::recv_op(std::span<int>(a), 2)});
        },
        tutti::errc::invalid_argument, "operation 1 (receive from rank 2) names a rank outside [0, 2)");
    expect_error(
        [&] {
          comm.exchange({tutti::p2p_op{tutti::p2p_op::direction::send, peer, nullptr, 8}});
        },
        tutti::errc::invalid_argument, "operation 0 (send to rank " + std::to_string(peer) + ") has a null");
    expect_error([&] { (void)comm.exchange_async({tutti::recv_op(std::span<int>(a), -1)}); },
                 tutti::errc::invalid_argument, "names a rank outside");
    // Nothing moved: the pair still exchanges cleanly.
    std::vector<int> got(4);
    comm.exchange({tutti::send_op(std::span<const int>(a), peer), tutti::recv_op(std::span<int>(got), peer)});
  }));
}

TEST_CASE("split makes independent communicators that run at once", "[requests][split]") {
  for (int size : {1, 2, 5, 6}) {
    INFO(size << " ranks");
    check_passed(thread_world(size, split_and_run));
  }
}

TEST_CASE("split rejects a negative color on every rank", "[requests][split]") {
  const auto failures = thread_world(3, [](tutti::communicator& comm) {
    expect_error([&] { (void)comm.split(comm.rank() == 2 ? -7 : 0, 0); }, tutti::errc::invalid_argument,
                 "split: rank 2 passed color -7");
    comm.barrier();
  });
  check_passed(failures);
}

TEST_CASE("a communicator and its dup run concurrently from two threads", "[requests][split]") {
  check_passed(thread_world(3, dup_concurrently));
}

// --- processes over shm and tcp ---------------------------------------------

TUTTI_TEST_WORKER(requests_round) {
  try {
    auto comm = tutti::communicator::from_env();
    overlapping_requests(comm);
    ring_exchange(comm, true);
    split_and_run(comm);
    dup_concurrently(comm);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return 3;
  }
}

TEST_CASE("requests exchange split and dup over shm and tcp processes", "[requests][processes]") {
  for (const std::string transport : {"shm", "tcp"}) {
    INFO(transport);
    const auto store = tutti::test::free_store_address();
    std::vector<tutti::tools::process> ranks;
    for (int r = 0; r < 3; ++r) {
      ranks.push_back(tutti::test::subprocess::spawn("requests_round", {},
                                                     {{"TUTTI_RANK", std::to_string(r)},
                                                      {"TUTTI_WORLD_SIZE", "3"},
                                                      {"TUTTI_STORE", store},
                                                      {"TUTTI_TIMEOUT", "30"},
                                                      {"TUTTI_TRANSPORT", transport}}));
    }
    for (auto& r : ranks) CHECK(r.wait(90s) == 0);
  }
}
