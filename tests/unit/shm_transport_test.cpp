// The shared-memory transport: ranks as threads (memory store) and as
// processes (TCP store hosted by the test), both paths for large messages,
// failures (mismatch, closed and killed peers), cleanup of /dev/shm, and
// sleeping waiters.
#include <tutti/transport/shm/transport.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>
#include <tutti/transport/wait.hpp>

#include "../support/patterns.hpp"
#include "../support/subprocess.hpp"
#include "../support/thread_world.hpp"
#include "../support/transport_world.hpp"

// Allocations made by each thread, so a test can show that a warm
// small-message exchange allocates nothing: counted by the sanitizers'
// allocator hook where one is linked in, else by a replaced operator new.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHM_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SHM_TEST_SANITIZED 1
#endif
#endif

namespace {
thread_local std::size_t allocations = 0;
}  // namespace

#ifdef SHM_TEST_SANITIZED
// From <sanitizer/allocator_interface.h>, which g++ does not ship.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*on_malloc)(const volatile void*, std::size_t),
                                                         void (*on_free)(const volatile void*));
namespace {
void count_allocation(const volatile void*, std::size_t) { ++allocations; }
void ignore_free(const volatile void*) {}
const int allocation_hook = __sanitizer_install_malloc_and_free_hooks(count_allocation, ignore_free);
}  // namespace
#else
namespace {
void* counted_alloc(std::size_t bytes) {
  ++allocations;
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
}  // namespace
void* operator new(std::size_t bytes) { return counted_alloc(bytes); }
void* operator new[](std::size_t bytes) { return counted_alloc(bytes); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

using namespace std::chrono_literals;
using steady = tutti::transport::clock;
using tutti::test::seed_of;
using tutti::transport::shm_transport;

namespace {

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

// Sizes around a slot's header (24 bytes) and payload (4072), a cache line,
// the eager limit (32 KiB), the ring (64 slots), single-copy chunking (half
// the message, 64 KiB to 256 KiB), up to 64 MiB.
const std::vector<std::size_t> sizes = {0,      1,      15,     40,     41,     64,      1000,    4071,    4072,
                                        4073,   8144,   8145,   32767,  32768,  32769,   65536,   100000,  131073,
                                        260608, 260609, 524287, 524288, 524289, MiB + 3, 4 * MiB, 64 * MiB};

// A message holding the pattern of a seed (see patterns.hpp).
class message {
 public:
  explicit message(std::size_t bytes) : bytes_(bytes) {}

  [[nodiscard]] std::byte* data() { return bytes_.data(); }
  [[nodiscard]] std::size_t size() const { return bytes_.size(); }

  void fill(std::uint64_t seed) { tutti::test::fill_pattern(bytes_, seed); }

  // Whether the bytes are those fill(seed) writes.
  [[nodiscard]] bool holds(std::uint64_t seed) const { return tutti::test::pattern_mismatch(bytes_, seed).empty(); }

 private:
  std::vector<std::byte> bytes_;
};

steady::time_point in(std::chrono::milliseconds ms) { return steady::now() + ms; }

void send_wait(shm_transport& t, int peer, message& m, std::chrono::milliseconds limit = 20s) {
  auto& c = t.to(peer);
  tutti::transport::wait_sent(t, c, c.post_send(m.data(), m.size()), in(limit));
}

void recv_wait(shm_transport& t, int peer, message& m, std::chrono::milliseconds limit = 20s) {
  auto& c = t.to(peer);
  tutti::transport::wait_received(t, c, c.post_recv(m.data(), m.size()), in(limit));
}

// Every message of `counts` posted at once in both directions between this
// rank and each peer (sizes from `size_of(from, to, index)`), then waited
// for and checked. Returns an empty string or what went wrong.
std::string exchange(shm_transport& t, int rank, const std::vector<int>& peers, int count,
                     const std::function<std::size_t(int, int, int)>& size_of) {
  struct pending {
    int peer;
    int index;
    std::uint64_t ticket;
    std::unique_ptr<message> data;
  };
  std::vector<pending> sends;
  std::vector<pending> recvs;
  for (int i = 0; i < count; ++i) {
    for (const int peer : peers) {
      auto out = std::make_unique<message>(size_of(rank, peer, i));
      out->fill(seed_of(rank, peer, static_cast<std::size_t>(i)));
      auto back = std::make_unique<message>(size_of(peer, rank, i));
      auto& c = t.to(peer);
      const auto r = c.post_recv(back->data(), back->size());
      recvs.push_back({peer, i, r, std::move(back)});
      const auto s = c.post_send(out->data(), out->size());
      sends.push_back({peer, i, s, std::move(out)});
    }
  }
  const auto deadline = in(60s);
  for (auto& r : recvs) {
    tutti::transport::wait_received(t, t.to(r.peer), r.ticket, deadline);
    if (!r.data->holds(seed_of(r.peer, rank, static_cast<std::size_t>(r.index)))) {
      return tutti::detail::concat("rank ", rank, ": message ", r.index, " from rank ", r.peer, " (", r.data->size(),
                                   " bytes) is corrupt");
    }
  }
  for (auto& s : sends) tutti::transport::wait_sent(t, t.to(s.peer), s.ticket, deadline);
  return {};
}

// Rank 0 sends each size and rank 1 answers with its own pattern of the
// same size; both check what they get.
std::string ping_pong(shm_transport& t, int rank, const std::vector<std::size_t>& list) {
  const int peer = 1 - rank;
  for (std::size_t i = 0; i < list.size(); ++i) {
    message out(list[i]);
    out.fill(seed_of(rank, peer, i));
    message back(list[i]);
    if (rank == 0) {
      send_wait(t, peer, out);
      recv_wait(t, peer, back);
    } else {
      recv_wait(t, peer, back);
      send_wait(t, peer, out);
    }
    if (!back.holds(seed_of(peer, rank, i))) {
      return tutti::detail::concat("rank ", rank, ": ping-pong of ", list[i], " bytes delivered corrupt data");
    }
  }
  return {};
}

// Sixteen messages in flight in each direction, small and large mixed.
std::string streaming(shm_transport& t, int rank) {
  return exchange(t, rank, {1 - rank}, 16, [](int from, int, int i) {
    const std::size_t pick = static_cast<std::size_t>(i * 7 + from * 3) % (sizes.size() - 1);
    return sizes[pick];
  });
}

// Runs `body(rank, transport)` on `size` threads that form one world on a
// memory store; returns each rank's failure text (empty when it passed).
std::vector<std::string> thread_world(int size, const std::function<void(int, shm_transport&)>& body,
                                      std::chrono::milliseconds timeout = 10s) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int r) {
    tutti::options config;
    config.timeout = timeout;
    auto t = tutti::test::open_transport<shm_transport>(shared, r, size, config);
    body(r, *t);
  });
}

void check_passed(const std::vector<std::string>& failures) {
  for (std::size_t r = 0; r < failures.size(); ++r) {
    INFO("rank " << r);
    CHECK(failures[r].empty());
    if (!failures[r].empty()) WARN(failures[r]);
  }
}

// Sets an environment variable for one scope (tests run one at a time).
class env_override {
 public:
  env_override(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~env_override() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  env_override(const env_override&) = delete;
  env_override& operator=(const env_override&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Entries of /dev/shm that belong to process `pid`'s tutti segments.
std::vector<std::string> segments_of(pid_t pid) {
  std::vector<std::string> found;
  const std::string prefix = tutti::detail::concat("tutti-", pid, '-');
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    const auto name = entry.path().filename().string();
    if (name.starts_with(prefix)) found.push_back(name);
  }
  return found;
}

bool segment_exists(const std::string& name) { return std::filesystem::exists("/dev/shm" + name); }

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

bool has_error(const tutti::error& e, tutti::errc code, std::initializer_list<std::string> fragments) {
  if (e.code() != code) return false;
  return std::all_of(fragments.begin(), fragments.end(),
                     [&](const std::string& f) { return e.message().find(f) != std::string::npos; });
}

// ---- workers: ranks as processes ------------------------------------------

struct worker_setup {
  std::shared_ptr<tutti::store> store;
  std::unique_ptr<shm_transport> transport;
};

// args: port rank size
worker_setup join_world(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 20s) {
  const auto port = static_cast<std::uint16_t>(std::stoi(args.at(0)));
  const int rank = std::stoi(args.at(1));
  const int size = std::stoi(args.at(2));
  worker_setup out;
  out.store = std::make_shared<tutti::tcp_store>(tutti::detail::endpoint{"127.0.0.1", port}, "", timeout);
  tutti::options config;
  config.timeout = timeout;
  out.transport = tutti::test::open_transport<shm_transport>(out.store, rank, size, config);
  return out;
}

int report(int rank, const std::string& failure) {
  if (failure.empty()) return 0;
  std::fprintf(stderr, "rank %d: %s\n", rank, failure.c_str());
  return 1;
}

struct process_world {
  tutti::tcp_store_server server{{"127.0.0.1", 0}};
  std::vector<tutti::tools::process> ranks;

  void start(const std::string& worker, int size, const std::vector<std::string>& extra = {},
             const tutti::tools::environment& env = {}) {
    for (int r = 0; r < size; ++r) {
      std::vector<std::string> args{std::to_string(server.port()), std::to_string(r), std::to_string(size)};
      args.insert(args.end(), extra.begin(), extra.end());
      ranks.push_back(tutti::test::subprocess::spawn(worker, args, env));
    }
  }
  std::shared_ptr<tutti::store> client() {
    return std::make_shared<tutti::tcp_store>(server.address(), "", std::chrono::milliseconds(20000));
  }
};

}  // namespace

// args: port rank size expect_single_copy
TUTTI_TEST_WORKER(shm_pair) {
  try {
    auto world = join_world(args);
    const int rank = std::stoi(args.at(1));
    const bool single_copy = args.at(3) == "1";
    if (world.transport->single_copy_to(1 - rank) != single_copy) {
      return report(rank, single_copy ? "single copy unexpectedly off" : "single copy unexpectedly on");
    }
    if (segment_exists(world.transport->segment_name())) return report(rank, "segment still in /dev/shm");
    if (auto failure = ping_pong(*world.transport, rank, sizes); !failure.empty()) return report(rank, failure);
    return report(rank, streaming(*world.transport, rank));
  } catch (const std::exception& e) {
    return report(-1, e.what());
  }
}

// args: port rank size; everyone exchanges with everyone at once.
TUTTI_TEST_WORKER(shm_mesh) {
  try {
    auto world = join_world(args);
    const int rank = std::stoi(args.at(1));
    const int size = std::stoi(args.at(2));
    std::vector<int> peers;
    for (int r = 0; r < size; ++r) {
      if (r != rank) peers.push_back(r);
    }
    const std::vector<std::size_t> mesh_sizes = {0, 1, 1000, 16385, 200000, MiB + 13};
    return report(rank, exchange(*world.transport, rank, peers, 3, [&](int from, int to, int i) {
                    return mesh_sizes[static_cast<std::size_t>(i + from * 3 + to * 5) % mesh_sizes.size()];
                  }));
  } catch (const std::exception& e) {
    return report(-1, e.what());
  }
}

// args: port rank size(3). Rank 2 is killed by the test while all three
// stream large messages to each other; ranks 0 and 1 must see it fail.
TUTTI_TEST_WORKER(shm_victim) {
  const int rank = std::stoi(args.at(1));
  try {
    auto world = join_world(args, 20s);
    auto& t = *world.transport;
    const std::vector<int> peers = rank == 2 ? std::vector<int>{0, 1} : std::vector<int>{1 - rank, 2};
    if (auto failure = exchange(t, rank, peers, 1, [](int, int, int) { return 300000; }); !failure.empty()) {
      return report(rank, failure);
    }
    world.store->add(tutti::detail::concat("victim/warm/", rank), 1);
    message out(8 * MiB);
    message back(8 * MiB);
    const auto started = steady::now();
    while (steady::now() - started < 15s) {
      if (rank == 2) {
        // Keeps transfers to both survivors in flight until it is killed.
        for (const int peer : peers) {
          t.to(peer).post_send(out.data(), out.size());
          t.to(peer).post_recv(back.data(), back.size());
        }
        for (const int peer : peers) {
          auto& c = t.to(peer);
          tutti::transport::wait_sent(t, c, c.sends_posted() - 1, in(20s));
          tutti::transport::wait_received(t, c, c.recvs_posted() - 1, in(20s));
        }
        continue;
      }
      try {
        auto& c = t.to(2);
        c.post_send(out.data(), out.size());
        const auto r = c.post_recv(back.data(), back.size());
        tutti::transport::wait_received(t, c, r, in(20s));
        tutti::transport::wait_sent(t, c, c.sends_posted() - 1, in(20s));
      } catch (const tutti::error& e) {
        world.store->set(tutti::detail::concat("victim/error/", rank),
                         tutti::detail::concat(static_cast<int>(e.code()), ' ', e.message()));
        if (e.code() != tutti::errc::remote_failure) return report(rank, e.what());
        // Later operations with the dead peer fail the same way, at once.
        try {
          t.to(2).post_recv(back.data(), back.size());
          return report(rank, "a receive from the dead rank was accepted");
        } catch (const tutti::error& again) {
          if (again.code() != tutti::errc::remote_failure) return report(rank, again.what());
        }
        // The channel between the survivors still works.
        return report(rank, exchange(t, rank, {1 - rank}, 2, [](int, int, int i) { return i == 0 ? 100 : 300000; }));
      }
    }
    return report(rank, "the transfers never failed");
  } catch (const std::exception& e) {
    return report(rank, e.what());
  }
}

TEST_CASE("shm options come from TUTTI_SHM variables and are checked", "[shm]") {
  using tutti::transport::shm_options;
  std::map<std::string, std::string> vars{{"TUTTI_SHM_EAGER_LIMIT", "4096"},
                                          {"TUTTI_SHM_RING_BYTES", "65536"},
                                          {"TUTTI_SHM_CHUNK_BYTES", "1048576"},
                                          {"TUTTI_SHM_CMA", "0"}};
  auto lookup = [&](std::string_view name) -> std::optional<std::string> {
    const auto found = vars.find(std::string(name));
    return found == vars.end() ? std::nullopt : std::optional<std::string>(found->second);
  };
  const auto read = shm_options::from_env(lookup);
  CHECK(read.eager_limit == 4096);
  CHECK(read.ring_bytes == 65536);
  CHECK(read.chunk_bytes == MiB);
  CHECK_FALSE(read.single_copy);
  vars["TUTTI_SHM_RING_BYTES"] = "100000";
  CHECK_THROWS_AS(shm_options::from_env(lookup), tutti::error);
  vars["TUTTI_SHM_RING_BYTES"] = "65536";
  vars["TUTTI_SHM_CMA"] = "yes";
  CHECK_THROWS_AS(shm_options::from_env(lookup), tutti::error);
}

TEST_CASE("shm setup failures are reported and leave no segment behind", "[shm]") {
  auto shared = std::make_shared<tutti::memory_store>();
  tutti::transport::context ctx;
  ctx.rank = 0;
  ctx.size = 2;
  ctx.config.timeout = 300ms;
  ctx.scoped_store = shared;
  auto card_for = [](int rank, std::string endpoint) {
    tutti::address_card card;
    card.rank = rank;
    card.world_size = 2;
    card.host_id = "this-host";
    card.hostname = "this-host";
    card.pid = ::getpid();
    card.endpoints.emplace_back("shm", std::move(endpoint));
    return card;
  };
  const std::vector<int> peers = {1};

  SECTION("a peer that never creates its segment times out, named") {
    shm_transport t(ctx);
    const std::vector<tutti::address_card> cards = {
        card_for(0, t.endpoint()), card_for(1, tutti::detail::concat("/tutti-1-1-00000000deadbeef ", ::getpid()))};
    const auto started = steady::now();
    try {
      t.attach(cards, peers);
      FAIL("attach succeeded without its peer");
    } catch (const tutti::error& e) {
      CHECK(has_error(e, tutti::errc::timeout, {"rank 1", "create its segment"}));
    }
    CHECK(steady::now() - started < 5s);
    CHECK_FALSE(segment_exists(t.segment_name()));
    CHECK_THROWS_AS(t.to(1), tutti::error);
  }
  SECTION("a malformed endpoint is rejected before anything is created") {
    shm_transport t(ctx);
    const std::vector<tutti::address_card> cards = {card_for(0, t.endpoint()), card_for(1, "../../etc/passwd 1")};
    try {
      t.attach(cards, peers);
      FAIL("attach accepted a malformed endpoint");
    } catch (const tutti::error& e) {
      CHECK(has_error(e, tutti::errc::invalid_argument, {"rank 1", "malformed"}));
    }
    CHECK_FALSE(segment_exists(t.segment_name()));
  }
  SECTION("a rank the transport does not serve is refused") {
    shm_transport t(ctx);
    const std::vector<tutti::address_card> cards = {card_for(0, t.endpoint()), card_for(1, "x")};
    t.attach(cards, {});
    CHECK_THROWS_AS(t.to(1), tutti::error);
    CHECK_THROWS_AS(t.to(7), tutti::error);
  }
}

TEST_CASE("shm ping-pong and streaming between two threads from 0 B to 64 MiB", "[shm]") {
  const bool ring_only = GENERATE(false, true);
  INFO((ring_only ? "large messages through the ring" : "large messages copied once"));
  std::optional<env_override> force;
  if (ring_only) force.emplace("TUTTI_SHM_CMA", "0");
  check_passed(thread_world(2, [&](int rank, shm_transport& t) {
    if (t.single_copy_to(1 - rank) == ring_only) throw std::runtime_error("wrong large-message path");
    if (segment_exists(t.segment_name())) throw std::runtime_error("segment still in /dev/shm after setup");
    if (auto failure = ping_pong(t, rank, sizes); !failure.empty()) throw std::runtime_error(failure);
    if (auto failure = streaming(t, rank); !failure.empty()) throw std::runtime_error(failure);
  }));
}

TEST_CASE("shm ping-pong and streaming between two processes with and without single copy", "[shm][process]") {
  const bool single_copy = GENERATE(true, false);
  INFO((single_copy ? "process_vm_readv/writev" : "TUTTI_SHM_CMA=0: pipelined through the ring"));
  process_world world;
  world.start("shm_pair", 2, {single_copy ? "1" : "0"}, {{"TUTTI_SHM_CMA", single_copy ? "1" : "0"}});
  for (auto& p : world.ranks) CHECK(p.wait(60s) == 0);
}

TEST_CASE("shm full mesh of 4 and 8 processes exchanging with everyone at once", "[shm][process]") {
  const int size = GENERATE(4, 8);
  INFO(size << " processes");
  process_world world;
  world.start("shm_mesh", size);
  std::vector<pid_t> pids;
  for (auto& p : world.ranks) pids.push_back(p.pid());
  for (auto& p : world.ranks) CHECK(p.wait(60s) == 0);
  for (const pid_t pid : pids) CHECK(segments_of(pid).empty());
}

TEST_CASE("shm small messages allocate nothing once warm", "[shm]") {
  check_passed(thread_world(2, [&](int rank, shm_transport& t) {
    message m(8);
    auto round_trip = [&] {
      if (rank == 0) {
        send_wait(t, 1, m);
        recv_wait(t, 1, m);
      } else {
        recv_wait(t, 0, m);
        send_wait(t, 0, m);
      }
    };
    for (int i = 0; i < 100; ++i) round_trip();
#ifdef SHM_TEST_SANITIZED
    if (allocation_hook == 0) throw std::runtime_error("the sanitizer's allocation hook is not installed");
#endif
    const std::size_t before = allocations;
    for (int i = 0; i < 2000; ++i) round_trip();
    if (allocations != before) {
      throw std::runtime_error(tutti::detail::concat(allocations - before, " allocations in 2000 round trips"));
    }
  }));
}

TEST_CASE("shm receive of the wrong size fails the channel with mismatch", "[shm]") {
  const std::size_t sent = GENERATE(as<std::size_t>{}, 100, 3 * MiB);
  INFO(sent << " bytes sent");
  check_passed(thread_world(2, [&](int rank, shm_transport& t) {
    auto& c = t.to(1 - rank);
    message m(sent);
    m.fill(1);
    if (rank == 0) {
      const auto ticket = c.post_send(m.data(), m.size());
      // The receiver's fault reaches the sender: its send fails too, unless
      // it was complete before (a message that fit in the ring).
      try {
        tutti::transport::wait_sent(t, c, ticket, in(10s));
        if (sent > t.options().eager_limit) throw std::runtime_error("the rejected single-copy send completed");
      } catch (const tutti::error& e) {
        if (e.code() != tutti::errc::mismatch) throw;
      }
      return;
    }
    message wrong(sent / 2);
    try {
      recv_wait(t, 0, wrong, 10s);
      throw std::runtime_error("a receive of the wrong size succeeded");
    } catch (const tutti::error& e) {
      if (!has_error(e, tutti::errc::mismatch, {std::to_string(sent), std::to_string(sent / 2), "rank 0"})) throw;
      if (e.where().peer != 0) throw std::runtime_error("the mismatch does not blame rank 0");
    }
    // The channel stays failed.
    try {
      c.post_recv(m.data(), m.size());
      throw std::runtime_error("a failed channel accepted a receive");
    } catch (const tutti::error& e) {
      if (e.code() != tutti::errc::mismatch) throw;
    }
  }));
}

TEST_CASE("shm messages in the ring survive their sender closing and later ones fail", "[shm]") {
  check_passed(thread_world(2, [&](int rank, shm_transport& t) {
    if (rank == 1) {
      message last(1000);
      last.fill(7);
      send_wait(t, 0, last);
      return;  // destroys the transport: the peer sees "closed"
    }
    std::this_thread::sleep_for(100ms);
    message got(1000);
    recv_wait(t, 1, got);
    if (!got.holds(7)) throw std::runtime_error("the last message was corrupt");
    const auto started = steady::now();
    try {
      recv_wait(t, 1, got, 5s);
      throw std::runtime_error("a receive from a closed peer succeeded");
    } catch (const tutti::error& e) {
      if (!has_error(e, tutti::errc::remote_failure, {"rank 1", "closed"})) throw;
    }
    if (steady::now() - started > 1s) throw std::runtime_error("the closed peer was noticed late");
  }));
}

TEST_CASE("shm idle waiter sleeps instead of spinning", "[shm]") {
  check_passed(thread_world(2, [&](int rank, shm_transport& t) {
    message m(64);
    if (rank == 0) {
      std::this_thread::sleep_for(400ms);
      m.fill(3);
      send_wait(t, 1, m);
      return;
    }
    const double cpu_before = thread_cpu_seconds();
    const auto started = steady::now();
    recv_wait(t, 0, m);
    const double waited = std::chrono::duration<double>(steady::now() - started).count();
    const double cpu = thread_cpu_seconds() - cpu_before;
    if (!m.holds(3)) throw std::runtime_error("corrupt message");
    if (waited < 0.3) throw std::runtime_error("the message came too early to measure");
    if (cpu > 0.1) throw std::runtime_error(tutti::detail::concat("waiting ", waited, " s used ", cpu, " s of CPU"));
  }));
}

TEST_CASE("shm peer killed mid-transfer fails its survivors promptly and leaves nothing in /dev/shm",
          "[shm][process]") {
  process_world world;
  world.start("shm_victim", 3);
  auto store = world.client();
  const std::vector<std::string> warm = {"victim/warm/0", "victim/warm/1", "victim/warm/2"};
  store->wait(warm, 30s);
  std::this_thread::sleep_for(200ms);
  const pid_t victim = world.ranks[2].pid();
  std::vector<pid_t> pids;
  for (auto& p : world.ranks) pids.push_back(p.pid());
  for (const pid_t pid : pids) CHECK(segments_of(pid).empty());

  world.ranks[2].kill(SIGKILL);
  const auto killed = steady::now();
  CHECK(world.ranks[2].wait(5s) == 128 + SIGKILL);
  CHECK(world.ranks[0].wait(10s) == 0);
  CHECK(world.ranks[1].wait(10s) == 0);
  const double seconds = std::chrono::duration<double>(steady::now() - killed).count();
  INFO("survivors finished " << seconds << " s after the kill");
  CHECK(seconds < 5.0);  // the timeout is 20 s: detection did not wait for it
  for (const int rank : {0, 1}) {
    const auto text = store->get(tutti::detail::concat("victim/error/", rank), 1s);
    INFO(text);
    CHECK(text.starts_with(std::to_string(static_cast<int>(tutti::errc::remote_failure)) + ' '));
    CHECK(text.find(tutti::detail::concat("rank 2 (pid ", victim, ")")) != std::string::npos);
  }
  for (const pid_t pid : pids) CHECK(segments_of(pid).empty());
}
