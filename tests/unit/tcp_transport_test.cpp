// The TCP transport: threads and processes as ranks over loopback, failures
// (wrong sizes, killed peers, peers that never listen, stray connections),
// and two "hosts" made of network namespaces joined by a veth pair. The
// contract every transport keeps is tested over the transport list in
// transport_suite_test.cpp.
#include <tutti/transport/tcp/transport.hpp>
#include <tutti/transport/wait.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>

#include "../support/error_matchers.hpp"
#include "../support/patterns.hpp"
#include "../support/subprocess.hpp"
#include "../support/thread_world.hpp"
#include "../support/transport_world.hpp"

using namespace std::chrono_literals;
using tutti::test::check_all_passed;
using tutti::test::is_error;
using tutti::test::pattern;
using tutti::test::seed_of;
using tutti::transport::tcp_transport;

namespace {

tutti::detail::env_lookup env_with_ifname(std::optional<std::string> ifname) {
  return [ifname](std::string_view name) -> std::optional<std::string> {
    if (name == "TUTTI_SOCKET_IFNAME") return ifname;
    return std::nullopt;
  };
}

tutti::transport::clock::time_point soon(std::chrono::milliseconds in = 20s) {
  return tutti::transport::clock::now() + in;
}

tutti::options config_with_timeout(std::chrono::milliseconds timeout) {
  tutti::options config;
  config.timeout = timeout;
  return config;
}

// Runs body(rank, transport) on `size` threads sharing a memory store;
// returns each rank's failure text (empty when it passed).
std::vector<std::string> run_threads(int size, const std::function<void(int, tcp_transport&)>& body,
                                     std::chrono::milliseconds timeout = 20s) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int r) {
    auto t = tutti::test::open_transport<tcp_transport>(shared, r, size, config_with_timeout(timeout));
    body(r, *t);
  });
}

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

// Catch2's assertions are not for threads: ranks that are threads check
// expected errors with this, and report through run_threads.
template <class Operation>
void require_error(Operation operation, tutti::errc code, std::string_view fragment, int peer) {
  try {
    operation();
  } catch (const tutti::error& e) {
    require(is_error(e, code, fragment) && e.where().peer == peer,
            tutti::detail::concat("expected ", tutti::to_string(code), " containing '", fragment, "' blamed on rank ",
                                  peer, ", got: ", e.what()));
    return;
  }
  throw std::runtime_error(tutti::detail::concat("expected ", tutti::to_string(code), " containing '", fragment, "'"));
}

// Every rank exchanges three rounds of messages (0 B, a few KiB, 256 KiB)
// with every other rank, all posted before any wait; throws on a wrong byte.
void full_mesh(int rank, int size, tutti::transport::transport& t) {
  auto bytes_of = [](int from, int to, std::size_t round) -> std::size_t {
    constexpr std::size_t base[] = {0, 4096, 256 << 10};
    return base[round] + (round == 0 ? 0 : static_cast<std::size_t>(from * 17 + to));
  };
  for (std::size_t round = 0; round < 3; ++round) {
    std::vector<std::vector<std::byte>> out;
    std::vector<std::vector<std::byte>> in;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> index;
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      in.emplace_back(bytes_of(peer, rank, round));
      out.push_back(pattern(bytes_of(rank, peer, round), seed_of(rank, peer, round)));
    }
    for (int peer = 0, i = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      auto& c = t.to(peer);
      const auto slot = static_cast<std::size_t>(i++);
      const auto r = c.post_recv(in[slot].data(), in[slot].size());
      const auto s = c.post_send(out[slot].data(), out[slot].size());
      index.emplace_back(s, r);
    }
    for (int peer = 0, i = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      auto& c = t.to(peer);
      const auto slot = static_cast<std::size_t>(i++);
      tutti::transport::wait_sent(t, c, index[slot].first, soon());
      tutti::transport::wait_received(t, c, index[slot].second, soon());
      const auto bad = tutti::test::pattern_mismatch(in[slot], seed_of(peer, rank, round));
      require(bad.empty(), tutti::detail::concat("rank ", rank, " round ", round, " from rank ", peer, ": ", bad));
    }
  }
}

std::shared_ptr<tutti::store> store_client(const tutti::detail::endpoint& where) {
  return std::make_shared<tutti::tcp_store>(where, "", std::chrono::milliseconds(20000));
}

// The outcome of a worker as its exit status, with the reason on stderr.
template <class Body>
int report(const char* what, Body body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", what, e.what());
    return 1;
  }
}

}  // namespace

// --- endpoint and interface ------------------------------------------------

TEST_CASE("tcp endpoint names the interface address and port and a nonce", "[transport][tcp]") {
  tutti::transport::context ctx;
  const tcp_transport a(ctx, env_with_ifname("lo"));
  const tcp_transport b(ctx, env_with_ifname("lo"));
  CHECK(a.name() == "tcp");
  CHECK(a.interface_name() == "lo");
  const std::string text = a.endpoint();
  INFO(text);
  CHECK(text.starts_with("127.0.0.1:"));
  const auto slash = text.rfind('/');
  REQUIRE(slash != std::string::npos);
  CHECK(text.size() - slash - 1 == 16);
  const auto parsed = tutti::detail::tcp::parse_endpoint(text, 0);
  CHECK(parsed.where.host == "127.0.0.1");
  CHECK(parsed.where.port != 0);
  CHECK(a.endpoint() != b.endpoint());
  CHECK(a.endpoint().substr(slash) != b.endpoint().substr(b.endpoint().rfind('/')));

  // With no variable set, an interface is still chosen (loopback at worst).
  const tcp_transport chosen(ctx, env_with_ifname(std::nullopt));
  CHECK_FALSE(chosen.interface_name().empty());
}

TEST_CASE("tcp missing interface is an invalid_argument listing the interfaces", "[transport][tcp]") {
  tutti::transport::context ctx;
  CHECK_TUTTI_ERROR(tcp_transport(ctx, env_with_ifname("no-such-if0")), tutti::errc::invalid_argument,
                    "TUTTI_SOCKET_IFNAME='no-such-if0': no such interface; interfaces present: ");
  CHECK_TUTTI_ERROR(tcp_transport(ctx, env_with_ifname("no-such-if0")), tutti::errc::invalid_argument, "lo");
  CHECK_TUTTI_ERROR(tutti::detail::tcp::parse_endpoint("127.0.0.1:80", 3), tutti::errc::invalid_argument,
                    "rank 3 published endpoint '127.0.0.1:80'");
  CHECK_TUTTI_ERROR(tutti::detail::tcp::parse_endpoint("localhost:80/00000000000000ab", 3),
                    tutti::errc::invalid_argument, "not numeric");
  const auto v6 = tutti::detail::tcp::parse_endpoint("[::1]:80/00000000000000ab", 3);
  CHECK(v6.where.host == "::1");
  CHECK(v6.nonce == 0xab);
}

// --- data ------------------------------------------------------------------

TEST_CASE("tcp streaming from 0 B to 64 MiB with everything posted at once", "[transport][tcp]") {
  const std::vector<std::size_t> sizes{
      0, 3, 4096, 100'000, std::size_t{1} << 20, (std::size_t{8} << 20) + 1, 0, std::size_t{64} << 20};
  check_all_passed(run_threads(2, [&](int rank, tcp_transport& t) {
    auto& c = t.to(1 - rank);
    std::vector<std::vector<std::byte>> buffers;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      buffers.push_back(rank == 0 ? pattern(sizes[i], seed_of(0, 1, i)) : std::vector<std::byte>(sizes[i]));
    }
    std::uint64_t last = 0;
    for (auto& b : buffers) last = rank == 0 ? c.post_send(b.data(), b.size()) : c.post_recv(b.data(), b.size());
    if (rank == 0) {
      tutti::transport::wait_sent(t, c, last, soon());
      // The receiver confirms, so that closing cannot race the last bytes.
      std::byte ack{};
      tutti::transport::wait_received(t, c, c.post_recv(&ack, 1), soon());
    } else {
      tutti::transport::wait_received(t, c, last, soon());
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        const auto bad = tutti::test::pattern_mismatch(buffers[i], seed_of(0, 1, i));
        require(bad.empty(), tutti::detail::concat("message ", i, ": ", bad));
      }
      const std::byte ack{1};
      tutti::transport::wait_sent(t, c, c.post_send(&ack, 1), soon());
    }
  }));
}

TEST_CASE("tcp a large message in progress does not hold up other channels", "[transport][tcp]") {
  // Rank 1 posts its receive of rank 0's 64 MiB only after a token that
  // starts at rank 0 and passes through rank 2: rank 0's small send to rank 2
  // must move while its large send to rank 1 is stuck behind a full socket.
  constexpr std::size_t big = std::size_t{64} << 20;
  check_all_passed(run_threads(3, [](int rank, tcp_transport& t) {
    std::byte token{0x42};
    if (rank == 0) {
      const auto message = pattern(big, 99);
      auto& to1 = t.to(1);
      const auto s = to1.post_send(message.data(), message.size());
      auto& to2 = t.to(2);
      tutti::transport::wait_sent(t, to2, to2.post_send(&token, 1), soon());
      require(to1.sends_done() == 0, "the large send completed before its receive was posted");
      tutti::transport::wait_sent(t, to1, s, soon());
    } else if (rank == 2) {
      auto& from0 = t.to(0);
      tutti::transport::wait_received(t, from0, from0.post_recv(&token, 1), soon());
      auto& to1 = t.to(1);
      tutti::transport::wait_sent(t, to1, to1.post_send(&token, 1), soon());
    } else {
      auto& from2 = t.to(2);
      tutti::transport::wait_received(t, from2, from2.post_recv(&token, 1), soon());
      std::vector<std::byte> in(big);
      auto& from0 = t.to(0);
      tutti::transport::wait_received(t, from0, from0.post_recv(in.data(), in.size()), soon());
      require(tutti::test::pattern_mismatch(in, 99).empty(), "the large message is corrupt");
    }
  }));
}

TUTTI_TEST_WORKER(tcp_mesh) {
  const tutti::detail::endpoint server{"127.0.0.1", static_cast<std::uint16_t>(std::stoi(args.at(0)))};
  const int rank = std::stoi(args.at(1));
  const int size = std::stoi(args.at(2));
  return report("tcp_mesh", [&] {
    auto t = tutti::test::open_transport<tcp_transport>(store_client(server), rank, size, config_with_timeout(20s));
    full_mesh(rank, size, *t);
  });
}

TEST_CASE("tcp full mesh of 4 and 8 processes over loopback", "[transport][tcp]") {
  for (const int size : {4, 8}) {
    INFO(size << " processes");
    tutti::tcp_store_server server({"127.0.0.1", 0});
    std::vector<tutti::tools::process> workers;
    for (int rank = 0; rank < size; ++rank) {
      workers.push_back(tutti::test::subprocess::spawn(
          "tcp_mesh", {std::to_string(server.port()), std::to_string(rank), std::to_string(size)}));
    }
    for (auto& worker : workers) CHECK(worker.wait(60s) == 0);
  }
}

// --- failures --------------------------------------------------------------

TEST_CASE("tcp a receive of the wrong size is a mismatch naming both sizes", "[transport][tcp]") {
  for (const std::size_t posted : {std::size_t{100}, std::size_t{10}}) {
    INFO("posted " << posted);
    // Rank 0 sends 64 bytes to rank 1, which expects `posted`; rank 1 and
    // rank 2 then still talk, and rank 0 sees rank 1 hang up.
    check_all_passed(run_threads(3, [posted](int rank, tcp_transport& t) {
      const auto message = pattern(64, 7);
      std::vector<std::byte> in(posted);
      if (rank == 0) {
        auto& c = t.to(1);
        tutti::transport::wait_sent(t, c, c.post_send(message.data(), message.size()), soon());
        std::byte never{};
        require_error([&] { tutti::transport::wait_received(t, c, c.post_recv(&never, 1), soon()); },
                      tutti::errc::remote_failure, "rank 1", 1);
      } else if (rank == 1) {
        auto& c = t.to(0);
        const auto expected = tutti::detail::concat("posted with ", posted, " bytes but rank 0 sent a message of 64");
        require_error([&] { tutti::transport::wait_received(t, c, c.post_recv(in.data(), posted), soon()); },
                      tutti::errc::mismatch, expected, 0);
        require(c.failed(), "the channel has not failed");
        require_error([&] { c.post_send(message.data(), 1); }, tutti::errc::mismatch, expected, 0);
      }
      if (rank >= 1) {
        auto& c = t.to(3 - rank);
        std::vector<std::byte> got(1000);
        const auto out = pattern(1000, seed_of(rank, 3 - rank, 0));
        const auto s = c.post_send(out.data(), out.size());
        tutti::transport::wait_received(t, c, c.post_recv(got.data(), got.size()), soon());
        tutti::transport::wait_sent(t, c, s, soon());
        require(tutti::test::pattern_mismatch(got, seed_of(3 - rank, rank, 0)).empty(),
                "traffic after a mismatch is corrupt");
      }
    }));
  }
}

TUTTI_TEST_WORKER(tcp_victim_world) {
  const tutti::detail::endpoint server{"127.0.0.1", static_cast<std::uint16_t>(std::stoi(args.at(0)))};
  const int rank = std::stoi(args.at(1));
  const int size = std::stoi(args.at(2));
  const int victim = std::stoi(args.at(3));
  auto store = store_client(server);
  auto t = tutti::test::open_transport<tcp_transport>(store, rank, size, config_with_timeout(15s));
  constexpr std::size_t bytes = std::size_t{4} << 20;
  std::vector<std::byte> out(bytes, std::byte{0x5a});
  std::vector<std::byte> in(bytes);
  if (rank == victim) {
    // Streams to every survivor until the parent kills it.
    for (int round = 0;; ++round) {
      for (int peer = 0; peer < size; ++peer) {
        if (peer == rank) continue;
        auto& c = t->to(peer);
        c.post_send(out.data(), bytes);
        c.post_recv(in.data(), bytes);
      }
      for (int peer = 0; peer < size; ++peer) {
        if (peer == rank) continue;
        auto& c = t->to(peer);
        tutti::transport::wait_received(*t, c, c.recvs_posted() - 1, soon());
      }
      if (round == 2) store->set("victim-streaming", "1");
    }
  }
  // A survivor exchanges with the victim until that fails, then checks the
  // error and that its other channels still carry intact data.
  auto& c = t->to(victim);
  try {
    for (;;) {
      c.post_recv(in.data(), bytes);
      c.post_send(out.data(), bytes);
      tutti::transport::wait_sent(*t, c, c.sends_posted() - 1, soon());
      tutti::transport::wait_received(*t, c, c.recvs_posted() - 1, soon());
    }
  } catch (const tutti::error& e) {
    const bool expected = e.code() == tutti::errc::remote_failure && e.where().peer == victim &&
                          e.message().find(tutti::detail::concat("rank ", victim)) != std::string::npos;
    if (!expected) {
      std::fprintf(stderr, "survivor %d: unexpected error: %s\n", rank, e.what());
      return 2;
    }
    try {
      c.post_send(out.data(), 1);
      std::fprintf(stderr, "survivor %d: a failed channel accepted a send\n", rank);
      return 3;
    } catch (const tutti::error& again) {
      if (again.code() != tutti::errc::remote_failure) return 4;
    }
  }
  return report("survivor", [&] {
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank || peer == victim) continue;
      auto& other = t->to(peer);
      const auto message = pattern(100'000, seed_of(rank, peer, 1));
      std::vector<std::byte> got(100'000);
      const auto s = other.post_send(message.data(), message.size());
      tutti::transport::wait_received(*t, other, other.post_recv(got.data(), got.size()), soon());
      tutti::transport::wait_sent(*t, other, s, soon());
      require(tutti::test::pattern_mismatch(got, seed_of(peer, rank, 1)).empty(), "corrupt data between survivors");
    }
  });
}

TEST_CASE("tcp a peer killed with SIGKILL mid-transfer fails its survivors naming it", "[transport][tcp]") {
  constexpr int size = 3;
  constexpr int victim = 1;
  tutti::tcp_store_server server({"127.0.0.1", 0});
  std::vector<tutti::tools::process> workers;
  for (int rank = 0; rank < size; ++rank) {
    workers.push_back(tutti::test::subprocess::spawn(
        "tcp_victim_world",
        {std::to_string(server.port()), std::to_string(rank), std::to_string(size), std::to_string(victim)}));
  }
  tutti::tcp_store parent(server.address(), "", std::chrono::milliseconds(20000));
  parent.get("victim-streaming", 20s);
  const auto killed_at = std::chrono::steady_clock::now();
  workers[victim].kill(SIGKILL);
  CHECK(workers[victim].wait(10s) == 128 + SIGKILL);
  for (int rank = 0; rank < size; ++rank) {
    if (rank == victim) continue;
    INFO("survivor " << rank);
    CHECK(workers[static_cast<std::size_t>(rank)].wait(20s) == 0);
  }
  CHECK(std::chrono::steady_clock::now() - killed_at < 10s);
}

TEST_CASE("tcp connecting to a peer that never listens fails naming it within the timeout", "[transport][tcp]") {
  // A port that is bound but not listening refuses connections.
  tutti::detail::fd_handle holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(holder.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  const auto port = tutti::detail::bound_port(holder.get());
  const std::string where = tutti::detail::concat("127.0.0.1:", port);

  tutti::transport::context ctx;
  ctx.size = 2;
  ctx.config.timeout = 1s;
  std::vector<tutti::address_card> cards(2);
  for (int r = 0; r < 2; ++r) {
    cards[static_cast<std::size_t>(r)].rank = r;
    cards[static_cast<std::size_t>(r)].world_size = 2;
    cards[static_cast<std::size_t>(r)].endpoints.emplace_back("tcp", where + "/0123456789abcdef");
  }

  SECTION("the higher rank connects and gives up with the peer's rank and address") {
    ctx.rank = 1;
    tcp_transport t(ctx);
    const int peers[] = {0};
    t.attach(cards, peers);
    auto& c = t.to(0);
    const std::byte data[8] = {};
    const auto start = std::chrono::steady_clock::now();
    CHECK_TUTTI_ERROR(tutti::transport::wait_sent(t, c, c.post_send(data, sizeof data), soon(10s)),
                      tutti::errc::timeout, "cannot connect to rank 0 (" + where + ")");
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 900ms);
    CHECK(waited < 2500ms);
    CHECK_TUTTI_ERROR(c.post_recv(nullptr, 0), tutti::errc::timeout, "Connection refused");
  }
  SECTION("the lower rank waits for a connection that never comes until the wait's deadline") {
    ctx.rank = 0;
    tcp_transport t(ctx);
    const int peers[] = {1};
    t.attach(cards, peers);
    auto& c = t.to(1);
    std::byte data[8] = {};
    const auto start = std::chrono::steady_clock::now();
    CHECK_TUTTI_ERROR(tutti::transport::wait_received(t, c, c.post_recv(data, sizeof data), soon(300ms)),
                      tutti::errc::timeout, "receive #0 from rank 1 over tcp timed out");
    CHECK(std::chrono::steady_clock::now() - start < 1s);
  }
}

TEST_CASE("tcp a stray connection is rejected and the transport keeps working", "[transport][tcp]") {
  auto shared = std::make_shared<tutti::memory_store>();
  std::unique_ptr<tcp_transport> transports[2];
  {
    std::vector<std::thread> openers;
    for (int r = 0; r < 2; ++r) {
      openers.emplace_back([&, r] {
        transports[r] = tutti::test::open_transport<tcp_transport>(shared, r, 2, config_with_timeout(1s));
      });
    }
    for (auto& o : openers) o.join();
  }
  REQUIRE(transports[0]);
  REQUIRE(transports[1]);
  const auto rank0 = tutti::detail::tcp::parse_endpoint(transports[0]->endpoint(), 0);

  auto stray = [&](std::span<const std::byte> bytes) {
    auto fd = tutti::detail::connect_to(rank0.where, std::chrono::steady_clock::now() + 5s);
    if (!bytes.empty())
      REQUIRE(::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
    return fd;
  };
  auto hello = [&](std::uint32_t connector, std::uint64_t nonce) {
    return tutti::detail::tcp::encode(
        {tutti::detail::tcp::magic, tutti::detail::tcp::protocol_version, connector, 0, 2, 0, nonce});
  };
  const auto wrong_nonce = hello(1, rank0.nonce ^ 1);
  const auto wrong_rank = hello(0, rank0.nonce);
  std::array<std::byte, 40> garbage{};
  garbage.fill(std::byte{'G'});
  std::vector<tutti::detail::fd_handle> strays;
  strays.push_back(stray(wrong_nonce));
  strays.push_back(stray(wrong_rank));
  strays.push_back(stray(garbage));
  strays.push_back(stray({}));  // silent: closed when the handshake times out (1 s)

  // Rank 0 (which accepts) and rank 1 still exchange intact messages.
  std::string failures[2];
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      try {
        auto& t = *transports[r];
        auto& c = t.to(1 - r);
        for (std::size_t i = 0; i < 5; ++i) {
          const auto out = pattern(1000 * i, seed_of(r, 1 - r, i));
          std::vector<std::byte> in(out.size());
          const auto s = c.post_send(out.data(), out.size());
          tutti::transport::wait_received(t, c, c.post_recv(in.data(), in.size()), soon());
          tutti::transport::wait_sent(t, c, s, soon());
          require(tutti::test::pattern_mismatch(in, seed_of(1 - r, r, i)).empty(), "corrupt message");
        }
      } catch (const std::exception& e) {
        failures[r] = e.what();
      }
    });
  }
  for (auto& r : ranks) r.join();
  CHECK(failures[0].empty());
  CHECK(failures[1].empty());

  // Every stray is closed: rank 0 keeps driving its transport meanwhile.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (std::size_t i = 0; i < strays.size(); ++i) {
    INFO("stray " << i);
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() < deadline) {
      transports[0]->progress();
      transports[0]->wait_for_activity(std::chrono::steady_clock::now() + 20ms);
      std::byte b{};
      const ssize_t n = ::recv(strays[i].get(), &b, 1, MSG_DONTWAIT);
      closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    CHECK(closed);
  }
}

// --- two hosts: network namespaces joined by a veth pair ---------------------

namespace {

int run_command(std::vector<std::string> argv) {
  try {
    auto p = tutti::tools::process::spawn(std::move(argv));
    return p.wait(10s);
  } catch (const std::exception&) {
    return -1;
  }
}

// Two namespaces and their veth pair, removed (with everything in them) on
// destruction, whatever happened in between.
struct namespace_pair {
  std::string a;
  std::string b;
  bool created_a = false;
  bool created_b = false;

  explicit namespace_pair(const std::string& stem) : a(stem + "-a"), b(stem + "-b") {}
  namespace_pair(const namespace_pair&) = delete;
  namespace_pair& operator=(const namespace_pair&) = delete;
  ~namespace_pair() {
    if (created_a) run_command({"ip", "netns", "del", a});
    if (created_b) run_command({"ip", "netns", "del", b});
  }
};

std::string own_executable() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

}  // namespace

TUTTI_TEST_WORKER(tcp_netns_rank) {
  const int rank = std::stoi(args.at(0));
  const int size = std::stoi(args.at(1));
  const auto port = static_cast<std::uint16_t>(std::stoi(args.at(2)));
  return report("tcp_netns_rank", [&] {
    const tutti::detail::endpoint where{"10.213.0.1", port};
    std::unique_ptr<tutti::tcp_store_server> server;
    if (rank == 0) server = std::make_unique<tutti::tcp_store_server>(where);
    {
      auto t = tutti::test::open_transport<tcp_transport>(store_client(where), rank, size, config_with_timeout(20s));
      const std::string mine = rank < size / 2 ? "10.213.0.1:" : "10.213.0.2:";
      require(t->endpoint().starts_with(mine), "rank " + std::to_string(rank) + " listens on " + t->endpoint());
      full_mesh(rank, size, *t);
    }
    if (server) server->linger(20s);
  });
}

TEST_CASE("tcp two hosts made of network namespaces joined by a veth pair", "[transport][tcp][netns]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: creating network namespaces needs root");
    return;
  }
  const auto pid = std::to_string(::getpid());
  namespace_pair spaces("tutti-" + pid);
  if (run_command({"ip", "netns", "add", spaces.a}) != 0) {
    WARN("SKIPPED: `ip netns add` failed (no iproute2, or no permission to create network namespaces)");
    return;
  }
  spaces.created_a = true;
  REQUIRE(run_command({"ip", "netns", "add", spaces.b}) == 0);
  spaces.created_b = true;
  const std::string veth_a = "tt" + pid + "a";
  const std::string veth_b = "tt" + pid + "b";
  REQUIRE(run_command({"ip", "link", "add", veth_a, "netns", spaces.a, "type", "veth", "peer", "name", veth_b, "netns",
                       spaces.b}) == 0);
  REQUIRE(run_command({"ip", "-n", spaces.a, "addr", "add", "10.213.0.1/24", "dev", veth_a}) == 0);
  REQUIRE(run_command({"ip", "-n", spaces.b, "addr", "add", "10.213.0.2/24", "dev", veth_b}) == 0);
  for (const auto& [space, veth] : {std::pair{spaces.a, veth_a}, std::pair{spaces.b, veth_b}}) {
    REQUIRE(run_command({"ip", "-n", space, "link", "set", "lo", "up"}) == 0);
    REQUIRE(run_command({"ip", "-n", space, "link", "set", veth, "up"}) == 0);
  }

  // Two ranks per namespace, each listening on its namespace's veth; rank 0
  // hosts the store at 10.213.0.1 (a fresh namespace: the port is free).
  constexpr int size = 4;
  const std::string store_port = "29417";
  const std::string self = own_executable();
  std::vector<tutti::tools::process> workers;
  for (int rank = 0; rank < size; ++rank) {
    const bool in_a = rank < size / 2;
    workers.push_back(
        tutti::tools::process::spawn({"ip", "netns", "exec", in_a ? spaces.a : spaces.b, self, tutti::test::worker_flag,
                                      "tcp_netns_rank", std::to_string(rank), std::to_string(size), store_port},
                                     {{"TUTTI_SOCKET_IFNAME", in_a ? veth_a : veth_b}}));
  }
  for (int rank = 0; rank < size; ++rank) {
    INFO("rank " << rank);
    CHECK(workers[static_cast<std::size_t>(rank)].wait(60s) == 0);
  }
}
