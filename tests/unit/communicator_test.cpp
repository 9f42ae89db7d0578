// Communicator creation: rendezvous over every store, under every launcher's
// variables, and each way it can fail.
#include <tutti/communicator.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>

#include "../support/ports.hpp"
#include "../support/subprocess.hpp"
#include "../support/thread_world.hpp"

using namespace std::chrono_literals;
using tutti::test::subprocess;
using tutti::tools::process;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tutti-comm-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

std::string read_file(const std::filesystem::path& path) {
  std::ostringstream out;
  if (std::ifstream in(path); in) out << in.rdbuf();
  return out.str();
}

// Runs `size` threads forming a communicator on one memory store.
template <class Check>
void with_thread_world(int size, Check check, std::shared_ptr<tutti::store> shared = nullptr) {
  if (!shared) shared = std::make_shared<tutti::memory_store>();
  const auto failures = tutti::test::run_threads(size, [&](int r) {
    tutti::options config;
    config.timeout = 10s;
    const tutti::communicator comm(shared, r, size, config);
    check(comm);
  });
  for (const auto& f : failures) CHECK(f == std::string{});
}

}  // namespace

TEST_CASE("threads form worlds of 1 to 8 ranks on a memory store", "[communicator]") {
  for (int size = 1; size <= 8; ++size) {
    with_thread_world(size, [size](const tutti::communicator& comm) {
      if (comm.size() != size) throw std::runtime_error("size");
      if (comm.local_size() != size || comm.local_rank() != comm.rank()) throw std::runtime_error("local rank");
      for (int r = 0; r < size; ++r) {
        if (comm.card(r).rank != r || comm.card(r).pid != ::getpid()) throw std::runtime_error("card");
        if (!comm.same_host(r)) throw std::runtime_error("same host");
      }
    });
  }
}

TEST_CASE("successive communicators on one store do not mix", "[communicator]") {
  auto shared = std::make_shared<tutti::memory_store>();
  for (int round = 0; round < 3; ++round) {
    with_thread_world(
        3, [](const tutti::communicator& comm) { (void)comm.card(2); }, shared);
  }
  CHECK(shared->get("tutti/generation/0", 1s) == "3");
}

TEST_CASE("explicit form rejects bad arguments before touching the store", "[communicator]") {
  auto shared = std::make_shared<tutti::memory_store>();
  CHECK_THROWS_WITH(tutti::communicator(shared, 4, 4),
                    "tutti: invalid_argument: communicator: rank 4 is outside [0, 4)");
  CHECK_THROWS_WITH(tutti::communicator(shared, 0, 0),
                    "tutti: invalid_argument: communicator: world size 0 is not positive");
  CHECK_THROWS_WITH(tutti::communicator(nullptr, 0, 1), "tutti: invalid_argument: communicator: the store is null");
  CHECK(shared->contains(std::vector<std::string>{"tutti/generation/0"}) == std::vector<bool>{false});
  const tutti::communicator alone(shared, 0, 1);
  CHECK_THROWS_WITH(alone.card(1), "tutti: invalid_argument: communicator::card: rank 1 is outside [0, 1)");
}

TEST_CASE("a transport name not in the transport list is rejected naming the choices", "[communicator]") {
  tutti::options config;
  config.transport = "carrier_pigeon";
  CHECK_THROWS_WITH(tutti::communicator(std::make_shared<tutti::memory_store>(), 0, 1, config),
                    Catch::Contains("transport 'carrier_pigeon' (TUTTI_TRANSPORT or options) is not one of auto, "
                                    "inproc, shm, tcp, verbs"));
}

TEST_CASE("register_memory counts registrations and names bad buffers", "[communicator]") {
  tutti::communicator comm(std::make_shared<tutti::memory_store>(), 0, 1);
  std::vector<float> buffer(1000);
  const std::span<const float> all(buffer);
  comm.register_memory(all);
  comm.register_memory(all);
  CHECK_THROWS_WITH(comm.register_memory(all.first(10)), Catch::Contains("registered with 4000 bytes, not 40"));
  comm.unregister_memory(all);
  comm.unregister_memory(all);
  CHECK_THROWS_WITH(comm.unregister_memory(all),
                    Catch::StartsWith("tutti: invalid_argument: unregister_memory: the buffer at") &&
                        Catch::Contains("(4000 bytes) is not registered"));
  CHECK_THROWS_WITH(comm.register_memory(std::span<const float>(static_cast<const float*>(nullptr), 5)),
                    "tutti: invalid_argument: register_memory: null buffer of 20 bytes");
  // Nothing to register: no-ops, as an empty send is.
  comm.register_memory(all.first(0));
  comm.unregister_memory(all.first(0));
}

TEST_CASE("rendezvous rejects a rank running another tutti version", "[communicator]") {
  auto shared = std::make_shared<tutti::memory_store>();
  std::string error_of_rank0;
  std::thread other([&] {
    tutti::address_card forged;
    forged.rank = 1;
    forged.world_size = 2;
    forged.hostname = "elsewhere";
    forged.pid = 4242;
    forged.library = {tutti::version.major, tutti::version.minor + 1, 0};
    tutti::prefix_store scoped(shared, "tutti/1/");
    shared->add("tutti/generation/1", 1);
    try {
      tutti::detail::rendezvous(scoped, forged, 5s);
    } catch (const tutti::error&) {
    }
  });
  try {
    tutti::options config;
    config.timeout = 5s;
    tutti::communicator(shared, 0, 2, config);
  } catch (const tutti::error& e) {
    CHECK(e.code() == tutti::errc::mismatch);
    error_of_rank0 = e.message();
  }
  other.join();
  CHECK_THAT(error_of_rank0,
             Catch::Contains("rank 1 (pid 4242 on elsewhere) runs tutti 0.2.0") && Catch::Contains(") runs 0.1."));
}

// --- processes under each launcher -------------------------------------------

// Forms a world from the environment and checks it against the expected rank
// and size; on a tutti::error writes "<code>|<message>" to args[2].
TUTTI_TEST_WORKER(form_world) {
  const int expected_rank = std::stoi(args.at(0));
  const int expected_size = std::stoi(args.at(1));
  try {
    const auto comm = tutti::communicator::from_env();
    if (comm.rank() != expected_rank || comm.size() != expected_size) return 2;
    if (comm.local_size() != expected_size || comm.local_rank() != expected_rank) return 4;
    for (int r = 0; r < comm.size(); ++r) {
      if (comm.card(r).rank != r) return 5;
    }
    return 0;
  } catch (const tutti::error& e) {
    std::ofstream(args.at(2)) << tutti::to_string(e.code()) << '|' << e.message();
    return 3;
  }
}

namespace {

using environment = subprocess::environment;

environment operator+(environment a, const environment& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The variables each launcher would set for `rank` of `size`.
environment launcher_env(const std::string& launcher, int rank, int size, std::uint16_t port,
                         const std::string& store_dir) {
  const auto r = std::to_string(rank);
  const auto n = std::to_string(size);
  const auto store = "tcp://127.0.0.1:" + std::to_string(port);
  // Quiet unrelated launchers' variables possibly inherited from the test's own environment.
  environment env{{"TUTTI_TIMEOUT", "20"}};
  if (launcher == "tutti") return env + environment{{"TUTTI_RANK", r}, {"TUTTI_WORLD_SIZE", n}, {"TUTTI_STORE", store}};
  if (launcher == "file") {
    return env + environment{{"TUTTI_RANK", r}, {"TUTTI_WORLD_SIZE", n}, {"TUTTI_STORE", "file://" + store_dir}};
  }
  if (launcher == "torchrun") {
    return env + environment{{"RANK", r},
                             {"WORLD_SIZE", n},
                             {"LOCAL_RANK", r},
                             {"MASTER_ADDR", "127.0.0.1"},
                             {"MASTER_PORT", std::to_string(port - 1)}};
  }
  if (launcher == "slurm") {
    return env + environment{{"SLURM_PROCID", r}, {"SLURM_NTASKS", n}, {"SLURM_LOCALID", r}, {"TUTTI_STORE", store}};
  }
  if (launcher == "openmpi") {
    return env + environment{{"OMPI_COMM_WORLD_RANK", r},
                             {"OMPI_COMM_WORLD_SIZE", n},
                             {"OMPI_COMM_WORLD_LOCAL_RANK", r},
                             {"TUTTI_STORE", store}};
  }
  return env + environment{{"PMI_RANK", r}, {"PMI_SIZE", n}, {"MPI_LOCALRANKID", r}, {"TUTTI_STORE", store}};
}

}  // namespace

TEST_CASE("8 processes rendezvous under each launcher's variables", "[communicator][processes]") {
  for (const std::string launcher : {"tutti", "file", "torchrun", "slurm", "openmpi", "mpich"}) {
    INFO("launcher " << launcher);
    temp_dir dir;
    const auto port = tutti::test::free_port();
    std::vector<process> ranks;
    for (int r = 0; r < 8; ++r) {
      ranks.push_back(subprocess::spawn("form_world",
                                        {std::to_string(r), "8", (dir.path / ("error" + std::to_string(r))).string()},
                                        launcher_env(launcher, r, 8, port, (dir.path / "store").string())));
    }
    for (int r = 0; r < 8; ++r) {
      const int status = ranks[static_cast<std::size_t>(r)].wait(60s);
      INFO("rank " << r << ": " << read_file(dir.path / ("error" + std::to_string(r))));
      CHECK(status == 0);
    }
  }
}

namespace {

struct failure_run {
  std::vector<int> status;
  std::vector<std::string> errors;
  std::chrono::steady_clock::duration elapsed{};
};

// Starts one process per entry of `ranks_and_sizes` with explicit TUTTI_*
// variables and the given timeout, and collects exit statuses and errors.
failure_run run_explicit(const std::vector<std::pair<int, int>>& ranks_and_sizes, const std::string& timeout) {
  temp_dir dir;
  const auto store = "tcp://127.0.0.1:" + std::to_string(tutti::test::free_port());
  failure_run run;
  const auto start = std::chrono::steady_clock::now();
  std::vector<process> procs;
  for (std::size_t i = 0; i < ranks_and_sizes.size(); ++i) {
    const auto [rank, size] = ranks_and_sizes[i];
    procs.push_back(subprocess::spawn(
        "form_world", {std::to_string(rank), std::to_string(size), (dir.path / std::to_string(i)).string()},
        {{"TUTTI_RANK", std::to_string(rank)},
         {"TUTTI_WORLD_SIZE", std::to_string(size)},
         {"TUTTI_STORE", store},
         {"TUTTI_TIMEOUT", timeout}}));
  }
  for (std::size_t i = 0; i < procs.size(); ++i) {
    run.status.push_back(procs[i].wait(30s));
    run.errors.push_back(read_file(dir.path / std::to_string(i)));
  }
  run.elapsed = std::chrono::steady_clock::now() - start;
  return run;
}

}  // namespace

TEST_CASE("a missing rank is named after the timeout", "[communicator][processes]") {
  const auto run = run_explicit({{0, 4}, {1, 4}, {3, 4}}, "1.5");
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(run.status[i] == 3);
    CHECK_THAT(run.errors[i], Catch::StartsWith("timeout|") && Catch::Contains("1 of 4 ranks never arrived") &&
                                  Catch::Contains("rank 2"));
  }
  CHECK(run.elapsed < std::chrono::milliseconds(2250));  // 1.5 x the timeout
}

TEST_CASE("a duplicate rank is named by every process", "[communicator][processes]") {
  const auto run = run_explicit({{0, 4}, {1, 4}, {1, 4}, {3, 4}}, "3");
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(run.status[i] == 3);
    CHECK_THAT(run.errors[i],
               Catch::StartsWith("invalid_argument|") && Catch::Contains("rank 1 was given to two processes"));
  }
  CHECK(run.elapsed < std::chrono::milliseconds(4500));
}

TEST_CASE("disagreeing world sizes are named", "[communicator][processes]") {
  const auto run = run_explicit({{0, 3}, {1, 3}, {2, 4}}, "2");
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(run.status[i] == 3);
    CHECK_THAT(run.errors[i],
               Catch::StartsWith("mismatch|") && Catch::Contains("world size") && Catch::Contains("rank 2"));
  }
  CHECK(run.elapsed < std::chrono::milliseconds(3000));
}

// --- routing peers to transports ---------------------------------------------

// Forms a world whose hosts come from TUTTI_HOST_ID, checks each peer's
// transport against args[1] (one letter per rank: i, s, t), then exchanges a
// message with every rank (itself included) at once.
TUTTI_TEST_WORKER(routed_mesh) {
  const std::string expected = args.at(0);
  try {
    auto comm = tutti::communicator::from_env();
    const int me = comm.rank();
    for (int peer = 0; peer < comm.size(); ++peer) {
      const auto name = comm.transport_to(peer).name();
      if (name.front() != expected.at(static_cast<std::size_t>(peer))) return 10 + peer;
    }
    const auto deadline = tutti::transport::clock::now() + 20s;
    std::vector<std::vector<int>> in(static_cast<std::size_t>(comm.size()), std::vector<int>(1000));
    std::vector<std::vector<int>> out(static_cast<std::size_t>(comm.size()));
    // Start-up (calibration) may have used the channels: wait for these posts' own indices.
    std::vector<std::uint64_t> received(out.size()), sent(out.size());
    for (int peer = 0; peer < comm.size(); ++peer) {
      const auto p = static_cast<std::size_t>(peer);
      for (int i = 0; i < 1000; ++i) out[p].push_back(me * 1'000'000 + peer * 1000 + i);
      received[p] = comm.channel_to(peer).post_recv(in[p].data(), 1000 * sizeof(int));
      sent[p] = comm.channel_to(peer).post_send(out[p].data(), 1000 * sizeof(int));
    }
    for (int peer = 0; peer < comm.size(); ++peer) {
      auto& c = comm.channel_to(peer);
      tutti::transport::wait_received(comm.transport_to(peer), c, received[static_cast<std::size_t>(peer)], deadline);
      tutti::transport::wait_sent(comm.transport_to(peer), c, sent[static_cast<std::size_t>(peer)], deadline);
      for (int i = 0; i < 1000; ++i) {
        if (in[static_cast<std::size_t>(peer)][static_cast<std::size_t>(i)] != peer * 1'000'000 + me * 1000 + i) {
          return 30;
        }
      }
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return e.code() == tutti::errc::unavailable ? 4 : 3;
  }
}

TEST_CASE("peers are routed to inproc shm or tcp by host and overrides", "[communicator][processes][transport]") {
  struct scenario {
    std::string transport;
    std::vector<std::string> expected;  // per rank: the letter of each peer's transport
    int status;
  };
  // Ranks 0 and 1 pose as host A, ranks 2 and 3 as host B.
  const std::vector<scenario> scenarios{
      {"auto", {"istt", "sitt", "ttis", "ttsi"}, 0},
      {"tcp", {"ittt", "titt", "ttit", "ttti"}, 0},
      {"shm", {"", "", "", ""}, 4},  // host B is out of shm's reach
  };
  for (const auto& s : scenarios) {
    INFO("TUTTI_TRANSPORT=" << s.transport);
    const auto store = "tcp://127.0.0.1:" + std::to_string(tutti::test::free_port());
    std::vector<process> ranks;
    for (int r = 0; r < 4; ++r) {
      ranks.push_back(subprocess::spawn("routed_mesh", {s.expected[static_cast<std::size_t>(r)]},
                                        {{"TUTTI_RANK", std::to_string(r)},
                                         {"TUTTI_WORLD_SIZE", "4"},
                                         {"TUTTI_STORE", store},
                                         {"TUTTI_TIMEOUT", "20"},
                                         {"TUTTI_TRANSPORT", s.transport},
                                         {"TUTTI_HOST_ID", r < 2 ? "host-a" : "host-b"}}));
    }
    for (int r = 0; r < 4; ++r) {
      INFO("rank " << r);
      CHECK(ranks[static_cast<std::size_t>(r)].wait(60s) == s.status);
    }
  }
}

// --- hierarchical collectives across hosts ----------------------------------

// Checks the cluster view (3 hosts of 2 ranks, hosts taking ranks round
// robin, so a host's ranks are not consecutive), then runs every
// hierarchical collective (TUTTI_ALGO forces them) on integers, at sizes
// that split unevenly, and checks every element.
TUTTI_TEST_WORKER(hierarchical_world) {
  try {
    auto comm = tutti::communicator::from_env();
    const int n = comm.size();
    const int me = comm.rank();
    const auto& cluster = comm.cluster();
    if (cluster.host_count() != 3 || cluster.ranks_per_host() != 2) return 10;
    if (comm.local_rank() != me / 3 || comm.local_size() != 2) return 11;
    if (cluster.host_of(me) != me % 3) return 12;
    auto value = [](int rank, std::size_t i) {
      return static_cast<std::int64_t>(rank) * 1'000'003 + static_cast<std::int64_t>(i);
    };
    for (const std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{100'003}}) {
      std::vector<std::int64_t> in(count), out(count);
      for (std::size_t i = 0; i < count; ++i) in[i] = value(me, i);
      comm.all_reduce(std::span<const std::int64_t>(in), std::span<std::int64_t>(out));
      for (std::size_t i = 0; i < count; ++i) {
        std::int64_t want = 0;
        for (int r = 0; r < n; ++r) want += value(r, i);
        if (out[i] != want) return 20;
      }
      std::vector<std::int64_t> gathered(count * static_cast<std::size_t>(n));
      comm.all_gather(std::span<const std::int64_t>(in), std::span<std::int64_t>(gathered));
      for (int r = 0; r < n; ++r) {
        for (std::size_t i = 0; i < count; ++i) {
          if (gathered[static_cast<std::size_t>(r) * count + i] != value(r, i)) return 21;
        }
      }
      // reduce_scatter of the gathered vectors: block me is n times rank me's input.
      std::vector<std::int64_t> mine(count);
      comm.reduce_scatter(std::span<const std::int64_t>(gathered), std::span<std::int64_t>(mine));
      for (std::size_t i = 0; i < count; ++i) {
        if (mine[i] != n * value(me, i)) return 22;
      }
      for (const int root : {0, 4}) {
        std::vector<std::int64_t> shared(count);
        if (me == root) shared = in;
        comm.broadcast(std::span<std::int64_t>(shared), root);
        for (std::size_t i = 0; i < count; ++i) {
          if (shared[i] != value(root, i)) return 23;
        }
      }
    }
    // Connections are made on first use: the other rank of this host and
    // this rank's rail neighbours, never the whole world (check mode adds
    // the ring neighbours its call headers travel to).
    const auto held = comm.transport_footprint();
    const int most = 3 + (comm.config().check ? 2 : 0);
    if (held.connections < 3 || held.connections > most || held.memory_bytes == 0) {
      std::fprintf(stderr, "rank %d: %d connections, %zu bytes\n", me, held.connections, held.memory_bytes);
      return 24;
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return 3;
  }
}

TEST_CASE("hierarchical collectives across hosts posed by TUTTI_HOST_ID", "[communicator][processes]") {
  // shm inside each host, tcp between them.
  const auto store = "tcp://127.0.0.1:" + std::to_string(tutti::test::free_port());
  std::vector<process> ranks;
  for (int r = 0; r < 6; ++r) {
    ranks.push_back(subprocess::spawn("hierarchical_world", {},
                                      {{"TUTTI_RANK", std::to_string(r)},
                                       {"TUTTI_WORLD_SIZE", "6"},
                                       {"TUTTI_STORE", store},
                                       {"TUTTI_TIMEOUT", "30"},
                                       {"TUTTI_HOST_ID", "host-" + std::to_string(r % 3)},
                                       {"TUTTI_ALGO",
                                        "all_reduce=hierarchical,all_gather=hierarchical,reduce_scatter=hierarchical,"
                                        "broadcast=hierarchical"}}));
  }
  for (int r = 0; r < 6; ++r) {
    INFO("rank " << r);
    CHECK(ranks[static_cast<std::size_t>(r)].wait(90s) == 0);
  }
}
