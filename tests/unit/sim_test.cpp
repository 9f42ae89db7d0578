// The simulator: symbolic proofs of every algorithm of every collective,
// hand-broken schedules it must reject with a clear message, and the timing
// model against the textbook formulas.
//
// The sweep of every size from 1 to 64 and the 1024- and 4096-rank proofs
// are the hidden [sim_large] cases, the ctest entry sim_test.large (label
// sim_large): minutes even optimised, and far more under the sanitizers, so
// scripts/test runs them in the release build (the performance test
// preset), not in dev or tsan.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <iomanip>
#include <memory>
#include <memory_resource>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/algorithm/registry.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/sim/symbolic.hpp>
#include <tutti/sim/timing.hpp>
#include <tutti/topology/cluster.hpp>

namespace ta = tutti::algorithm;
namespace ts = tutti::sim;
using ta::buffer;
using ta::collective;

namespace {

std::size_t uz(int v) { return static_cast<std::size_t>(v); }

constexpr collective all_kinds[] = {
    collective::all_reduce,   collective::reduce,         collective::broadcast,        collective::all_gather,
    collective::all_gather_v, collective::reduce_scatter, collective::reduce_scatter_v, collective::gather,
    collective::scatter,      collective::all_to_all,     collective::all_to_all_v,     collective::barrier,
};

// Arguments with uneven blocks, empty ones in the _v forms, a root that is
// not rank 0 and chunks of two elements, so every algorithm's corners run.
ts::detail::args_function args_for(collective kind, int size, std::shared_ptr<const tutti::topology::cluster> c) {
  return [=](int rank) {
    ta::collective_args a;
    a.kind = kind;
    a.rank = rank;
    a.size = size;
    a.element_size = 4;
    a.root = size / 2;
    a.chunk_bytes = 2 * a.element_size;
    a.cluster = c;
    switch (kind) {
      case collective::all_reduce:
      case collective::reduce:
      case collective::broadcast: a.count = 3 * uz(size) + 1; break;
      default: a.count = 3; break;
    }
    if (kind == collective::all_gather_v || kind == collective::reduce_scatter_v) {
      for (int q = 0; q < size; ++q) a.counts.push_back(uz((q * 7 + 1) % 4));
    }
    if (kind == collective::all_to_all_v) {
      // Rank p sends (p + 2 q) % 3 elements to q.
      for (int q = 0; q < size; ++q) a.counts.push_back(uz((rank + 2 * q) % 3));
      for (int p = 0; p < size; ++p) a.recv_counts.push_back(uz((p + 2 * rank) % 3));
    }
    return a;
  };
}

ts::symbolic_report prove(std::string_view algorithm, const ts::detail::args_function& args_of, int size,
                          ts::symbolic_options options = {}) {
  ts::world w = ts::build_world(algorithm, args_of, size);
  return ts::prove(w, args_of, options);
}

// Whether `algorithm` builds different schedules once it knows the cluster.
bool uses_cluster(std::string_view algorithm, const ts::detail::args_function& flat,
                  const ts::detail::args_function& clustered, int size) {
  for (const int rank : {0, size - 1}) {
    const auto a = ta::build(algorithm, flat(rank));
    const auto b = ta::build(algorithm, clustered(rank));
    if (a.steps.size() != b.steps.size() || a.scratch_bytes != b.scratch_bytes) return true;
    for (std::size_t i = 0; i < a.steps.size(); ++i) {
      const auto& x = a.steps[i];
      const auto& y = b.steps[i];
      if (x.kind != y.kind || x.peer != y.peer || x.bytes != y.bytes || x.src != y.src || x.dst != y.dst) return true;
    }
  }
  return false;
}

// A hand-built world: per rank, a builder filled by `fill`.
template <class Fill>
ts::world hand_built(int size, const ta::collective_args& base, Fill fill) {
  std::vector<ta::schedule> schedules;
  for (int r = 0; r < size; ++r) {
    ta::schedule_builder b;
    fill(b, r);
    schedules.push_back(std::move(b).finish());
  }
  return ts::world_of(schedules, base);
}

ta::collective_args base_args(collective kind, int size, std::size_t count, std::size_t element_size = 1) {
  ta::collective_args a;
  a.kind = kind;
  a.size = size;
  a.count = count;
  a.element_size = element_size;
  return a;
}

}  // namespace

namespace {

// Every algorithm of every collective on each of `sizes`: flat, in place
// for all_reduce, and on clusters of 1, 2, 4 and 8 ranks per host where the
// schedule reads the cluster view.
void prove_sizes(const std::vector<int>& sizes) {
  for (const collective kind : all_kinds) {
    for (const auto algorithm : ta::algorithms_for(kind)) {
      for (const int size : sizes) {
        const auto flat = args_for(kind, size, nullptr);
        INFO(ta::to_string(kind) << " " << algorithm << " on " << size << " ranks");
        const auto report = prove(algorithm, flat, size);
        INFO(report.problems);
        REQUIRE(report.proven);
        if (kind == collective::all_reduce) {
          const auto in_place = prove(algorithm, flat, size, {.seed = 7, .in_place = true});
          INFO("in place: " << in_place.problems);
          REQUIRE(in_place.proven);
        }
        for (const int per_host : {1, 2, 4, 8}) {
          auto c = std::make_shared<const tutti::topology::cluster>(tutti::topology::cluster::uniform(size, per_host));
          const auto clustered = args_for(kind, size, c);
          // Hierarchical algorithms need the same number of ranks per host.
          if (size % per_host != 0 || !uses_cluster(algorithm, flat, clustered, size)) continue;
          INFO(per_host << " ranks per host");
          const auto on_hosts = prove(algorithm, clustered, size);
          INFO(on_hosts.problems);
          REQUIRE(on_hosts.proven);
        }
      }
    }
  }
}

std::vector<int> sizes_between(int first, int last) {
  std::vector<int> out;
  for (int size = first; size <= last; ++size) out.push_back(size);
  return out;
}

}  // namespace

// Every size up to 64 is two minutes under the sanitizers: the sanitizer
// builds prove the sizes where schedules change shape (small ones, powers
// of two and their neighbours), the release build all of them.
TEST_CASE("every algorithm of every collective is proven on 1 to 17 ranks and around 32 and 64", "[sim][symbolic]") {
  auto sizes = sizes_between(1, 17);
  for (const int size : {31, 32, 33, 63, 64}) sizes.push_back(size);
  prove_sizes(sizes);
}

TEST_CASE("every algorithm of every collective is proven on 1 to 64 ranks", "[.][sim_large]") {
  prove_sizes(sizes_between(1, 64));
}

TEST_CASE("different seeds prove the same schedules", "[sim][symbolic]") {
  for (const std::uint64_t seed : {0u, 2u, 3u, 99u}) {
    for (const auto algorithm : ta::algorithms_for(collective::all_reduce)) {
      const auto report = prove(algorithm, args_for(collective::all_reduce, 13, nullptr), 13, {.seed = seed});
      INFO(algorithm << " seed " << seed << ": " << report.problems);
      REQUIRE(report.proven);
    }
  }
}

TEST_CASE("several threads prove what one thread proves", "[sim][symbolic]") {
  // Big worlds run on every core (symbolic_options::threads); here small
  // ones are forced onto 2 and 3 threads, so ranks on different threads
  // trade most messages. The broken schedules of the [negative] cases are
  // run on several threads too.
  for (const collective kind : all_kinds) {
    for (const auto algorithm : ta::algorithms_for(kind)) {
      for (const int size : {6, 13}) {
        auto c = std::make_shared<const tutti::topology::cluster>(
            tutti::topology::cluster::uniform(size, size % 2 == 0 ? 2 : 1));
        for (const int threads : {2, 3}) {
          INFO(ta::to_string(kind) << " " << algorithm << " on " << size << " ranks, " << threads << " threads");
          const auto report =
              prove(algorithm, args_for(kind, size, c), size, {.seed = uz(threads), .threads = threads});
          INFO(report.problems);
          REQUIRE(report.proven);
          if (kind != collective::all_reduce) continue;
          const auto in_place =
              prove(algorithm, args_for(kind, size, nullptr), size, {.in_place = true, .threads = threads});
          INFO("in place: " << in_place.problems);
          REQUIRE(in_place.proven);
        }
      }
    }
  }
}

TEST_CASE("buffers are cells while steps touch few of them, segments beyond", "[sim][symbolic]") {
  // 64 ranks, 2 elements of 16 KiB each per rank's block: a ring moves one
  // block (a cell or two) a step, Rabenseifner's first rounds half the vector.
  ta::collective_args base = base_args(collective::all_reduce, 64, 128, std::size_t{16} << 10);
  const auto ring = ts::detail::cells_of(ts::build_world("ring", base));
  const auto halving = ts::detail::cells_of(ts::build_world("rabenseifner", base));
  CHECK(ring.granule == std::size_t{32} << 10);
  CHECK(ring.cells == 64 * (64 + 64 + 4));  // input, output, 4 staging slots
  CHECK(ring.fit({}));
  CHECK_FALSE(ring.fit({.most_cells = ring.cells - 1}));
  CHECK(halving.touched > 8 * halving.steps);
  CHECK_FALSE(halving.fit({.most_cells_per_step = 8}));
  CHECK(halving.fit({.most_cells_per_step = halving.touched / halving.steps + 1}));
}

TEST_CASE("cells and segments hold what was filled and written", "[sim][symbolic]") {
  const auto pieces_of = [](const auto& buffer, std::uint64_t begin, std::uint64_t length) {
    std::vector<ts::piece> out;
    buffer.read(begin, length, out);
    std::ostringstream text;
    for (const auto& p : out) text << "[" << p.length << " of " << p.set << " from " << p.source << "]";
    return text.str();
  };
  std::pmr::unsynchronized_pool_resource pool;
  ts::segment_map segments(&pool);
  ts::cell_map cells(64, 8);  // 8 cells of 8 bytes
  const auto both = [&](auto change) {
    change(segments);
    change(cells);
  };
  // Nothing yet: undefined, and past the end too.
  CHECK(pieces_of(cells, 0, 72) == "[72 of 0 from 0]");
  // A whole fill, which cells keep as one piece until written.
  both([](auto& b) { b.fill(0, 64, 5, 0); });
  CHECK(pieces_of(cells, 8, 16) == "[16 of 5 from 8]");
  CHECK(pieces_of(cells, 56, 16) == "[8 of 5 from 56][8 of 0 from 0]");
  // A write in the middle: the fill stays around it.
  const std::vector<ts::piece> written{{8, 7, 16}, {8, 0, 0}};
  both([&](auto& b) { b.write(16, written); });
  CHECK(pieces_of(cells, 0, 64) == "[16 of 5 from 0][8 of 7 from 16][8 of 0 from 0][32 of 5 from 32]");
  CHECK(pieces_of(cells, 0, 64) == pieces_of(segments, 0, 64));
  // A fill of part of a buffer is a write.
  both([](auto& b) { b.fill(32, 16, 9, 64); });
  CHECK(pieces_of(cells, 24, 40) == "[8 of 0 from 0][16 of 9 from 64][16 of 5 from 48]");
  CHECK(pieces_of(cells, 0, 64) == pieces_of(segments, 0, 64));
  // Whole cells only.
  CHECK_THROWS_WITH(cells.write(4, written), Catch::Contains("is not whole cells of 8 bytes"));
}

TEST_CASE("a successor far down a long program is kept", "[sim][symbolic]") {
  // Successors are stored as 16-bit distances; one 70001 steps on takes the
  // long form. Each rank copies its block in place, then 70000 copies of
  // its input to scratch, each after the last, then sends the block.
  constexpr std::size_t filler = 70000;
  const auto base = base_args(collective::all_gather, 2, 4);
  auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    const int peer = 1 - r;
    const ta::region scratch = b.allocate_scratch(4);
    b.copy({buffer::output, uz(r) * 4}, {buffer::input, 0}, 4);
    for (std::size_t k = 0; k < filler; ++k) b.copy(scratch, {buffer::input, 0}, 4);
    b.send(peer, {buffer::output, uz(r) * 4}, 4);
    b.recv(peer, {buffer::output, uz(peer) * 4}, 4);
  });
  const ts::program& p = w.ranks[0];
  REQUIRE(p.ops.size() == filler + 3);
  std::vector<std::uint32_t> after_first;
  for (const std::uint32_t next : p.successors(0)) after_first.push_back(next);
  CHECK(after_first == std::vector<std::uint32_t>{filler + 1});
  std::vector<std::uint32_t> after_second;
  for (const std::uint32_t next : p.successors(1)) after_second.push_back(next);
  CHECK(after_second == std::vector<std::uint32_t>{2});
  const auto report = ts::prove(w, base);
  INFO(report.problems);
  CHECK(report.proven);
}

TEST_CASE("segments prove what cells prove", "[sim][symbolic]") {
  // Worlds beyond symbolic_options::most_cells keep their buffers as
  // segments; a budget of 0 forces them here, for every algorithm of every
  // collective, and for a broken schedule.
  const ts::symbolic_options segments{.most_cells = 0};
  for (const collective kind : all_kinds) {
    for (const auto algorithm : ta::algorithms_for(kind)) {
      for (const int size : {5, 8}) {
        auto c = std::make_shared<const tutti::topology::cluster>(
            tutti::topology::cluster::uniform(size, size % 2 == 0 ? 4 : 1));
        const auto args_of = args_for(kind, size, c);
        INFO(ta::to_string(kind) << " " << algorithm << " on " << size << " ranks");
        const auto report = prove(algorithm, args_of, size, segments);
        INFO(report.problems);
        REQUIRE(report.proven);
      }
    }
  }
  const auto base = base_args(collective::all_gather, 2, 3);
  for (const std::uint64_t most_cells : {std::uint64_t{0}, ts::symbolic_options{}.most_cells}) {
    auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
      const int peer = 1 - r;
      b.send(peer, {buffer::input, 0}, 3);
      b.recv(peer, {buffer::output, uz(r) * 3}, 3);
      b.copy({buffer::output, uz(peer) * 3}, {buffer::input, 0}, 3);
    });
    const auto report = ts::prove(w, base, {.most_cells = most_cells});
    INFO("most_cells " << most_cells);
    REQUIRE_FALSE(report.proven);
    CHECK_THAT(report.problems,
               Catch::Contains("wrong result: rank 0 output bytes [0, 3) hold {1} from their byte 0, expected {0}"));
  }
}

namespace {

// `kind` at `size` ranks, `per_host` to a host (0: no cluster view), every
// algorithm, two elements per rank's block and the rings unchunked; returns
// the seconds it took. An all_reduce element is 16 KiB, so that what
// algorithms decide by bytes (slices, split rounds, Rabenseifner's
// doubling window) takes the shape of a vector of 2 x 16 KiB per rank
// rather than of a few bytes; cells (symbolic.hpp) are per element, so
// this costs no memory. Returns the seconds in all, then each
// algorithm's: "9.1 s (ring 4.1, ...)".
std::string prove_every_algorithm(collective kind, int size, int per_host) {
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  const auto start = std::chrono::steady_clock::now();
  std::ostringstream each;
  for (const auto algorithm : ta::algorithms_for(kind)) {
    const auto started = std::chrono::steady_clock::now();
    const bool per_rank = kind != collective::all_reduce && kind != collective::reduce && kind != collective::broadcast;
    ta::collective_args base = base_args(kind, size, per_rank ? 2 : ts::proof_count(std::size_t{1} << 30, size, 2),
                                         kind == collective::all_reduce ? std::size_t{16} << 10 : 1);
    base.chunk_bytes = std::size_t{1} << 20;
    base.root = size / 3;
    if (per_host > 0) {
      base.cluster =
          std::make_shared<const tutti::topology::cluster>(tutti::topology::cluster::uniform(size, per_host));
    }
    if (ta::detail::is_v(kind)) {
      for (int q = 0; q < size; ++q) base.counts.push_back(uz(q % 3));
      if (kind == collective::all_to_all_v) continue;  // per-rank counts: covered up to 64 ranks
    }
    ts::world w = ts::build_world(algorithm, base);
    const auto report = ts::prove(w, base);
    INFO(ta::to_string(kind) << " " << algorithm << " at " << size << " ranks, " << per_host
                             << " per host: " << report.problems);
    REQUIRE(report.proven);
    each << (each.tellp() == 0 ? "" : ", ") << algorithm << " " << std::fixed << std::setprecision(2)
         << seconds_since(started);
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << seconds_since(start) << " s (" << each.str() << ")";
  return out.str();
}

}  // namespace

TEST_CASE("every all_reduce algorithm is proven at 256 ranks", "[sim][symbolic]") {
  WARN("all_reduce, every algorithm, 256 ranks: " << prove_every_algorithm(collective::all_reduce, 256, 8));
}

TEST_CASE("every algorithm of every collective is proven at 1024 ranks", "[.][sim_large]") {
  for (const collective kind : all_kinds) {
    WARN(ta::to_string(kind) << ", every algorithm, 1024 ranks on 128 hosts: " << prove_every_algorithm(kind, 1024, 8));
  }
  WARN("all_reduce, every algorithm, 1024 ranks, no cluster view: " << prove_every_algorithm(collective::all_reduce,
                                                                                             1024, 0));
}

TEST_CASE("every all_reduce algorithm is proven at 4096 ranks", "[.][sim_large]") {
  WARN("all_reduce, every algorithm, 4096 ranks on 512 hosts: " << prove_every_algorithm(collective::all_reduce, 4096,
                                                                                         8));
}

TEST_CASE("long halving and doubling windows go in two messages and are still proven", "[sim][symbolic]") {
  // Windows whose halves reach round_split_bytes go as two messages, the
  // half the receiver passes on first; on 5, 6 and 8 ranks (folds included)
  // every algorithm built on those rounds must still be proven.
  struct kind_and_algorithm {
    collective kind;
    std::string_view algorithm;
  };
  for (const auto& [kind, algorithm] : {kind_and_algorithm{collective::all_reduce, "rabenseifner"},
                                        kind_and_algorithm{collective::reduce_scatter, "recursive_halving"},
                                        kind_and_algorithm{collective::all_gather, "recursive_doubling"}}) {
    for (const int n : {5, 6, 8}) {
      const bool whole_vector = kind == collective::all_reduce;
      // Halves of the first round's window of at least 128 KiB.
      const std::size_t count = whole_vector ? (std::size_t{1} << 17) + 3 : (std::size_t{1} << 16) + 1;
      const ts::detail::args_function args_of = [&](int rank) {
        ta::collective_args a = base_args(kind, n, count, 4);
        a.rank = rank;
        return a;
      };
      INFO(ta::to_string(kind) << " " << algorithm << " on " << n << " ranks");
      const auto report = prove(algorithm, args_of, n);
      INFO(report.problems);
      CHECK(report.proven);
      // Rank n - 1 is never folded away, so it sends once per round
      // (twice for all_reduce) unless rounds are split.
      const int rounds = n == 8 ? 3 : 2;
      const ta::schedule s = ta::build(algorithm, args_of(n - 1));
      const auto sends = std::count_if(s.steps.begin(), s.steps.end(),
                                       [](const ta::step& st) { return st.kind == ta::step_kind::send; });
      const int unsplit = whole_vector ? 2 * rounds : rounds;
      CHECK(sends > unsplit);
    }
  }
}

TEST_CASE("Rabenseifner hands short windows to recursive doubling and is still proven", "[sim][symbolic]") {
  // 8 active ranks (13 folds 5 of them in): vectors whose windows of 2, 4 and
  // 8 blocks average at most doubling_window_bytes stop halving there.
  struct shape {
    std::size_t bytes;
    int window;
  };
  for (const auto& [bytes, window] : {shape{100 << 10, 2}, shape{50 << 10, 4}, shape{20 << 10, 8}, shape{1 << 20, 1}}) {
    REQUIRE(ta::detail::doubling_window(bytes, 8) == window);
    for (const int n : {8, 13}) {
      const ts::detail::args_function args_of = [&](int rank) {
        ta::collective_args a = base_args(collective::all_reduce, n, bytes / 4 + 3, 4);
        a.rank = rank;
        return a;
      };
      INFO(bytes << " bytes on " << n << " ranks, window " << window);
      const auto report = prove("rabenseifner", args_of, n);
      INFO(report.problems);
      CHECK(report.proven);
      const auto in_place = prove("rabenseifner", args_of, n, {.seed = 3, .in_place = true});
      INFO(in_place.problems);
      CHECK(in_place.proven);
      // The last rank is never folded away: log2(8 / window) halving and
      // as many doubling rounds, log2(window) rounds on the whole window.
      const ta::schedule s = ta::build("rabenseifner", args_of(n - 1));
      const auto sends = std::count_if(s.steps.begin(), s.steps.end(),
                                       [](const ta::step& st) { return st.kind == ta::step_kind::send; });
      const int merged = std::countr_zero(static_cast<unsigned>(window));
      const int split = bytes >= (std::size_t{1} << 20) ? 4 : 0;  // 1 MiB: the first two rounds each way split
      CHECK(sends == 2 * (3 - merged) + merged + split);
    }
  }
}

TEST_CASE("a message waiting for a busy receiver leaves its sender's link to others", "[sim][timing]") {
  // Rank 0 keeps rank 2's ingress busy for T; rank 1 sends T to rank 2 and
  // then T to rank 3. Rank 1's message to 3 takes its idle link at once
  // instead of queueing behind the one waiting for rank 2: 2T in all, not 3T.
  const std::size_t bytes = 1 << 20;
  const auto a = base_args(collective::all_reduce, 4, bytes);
  ts::world w = hand_built(4, a, [&](ta::schedule_builder& b, int r) {
    const ta::region in{buffer::input, 0};
    const ta::region out{buffer::output, 0};
    if (r == 0) b.send(2, in, bytes);
    if (r == 1) {
      b.send(2, in, bytes);
      b.send(3, in, bytes);
    }
    if (r == 2) {
      b.recv(0, out, bytes);
      b.recv(1, out, bytes);
    }
    if (r == 3) b.recv(1, out, bytes);
  });
  ts::timing_model model;
  model.nic = {1.0, 1.0};  // 1 GB/s: T = 1048.6 us
  const double transfer = static_cast<double>(bytes) / 1e3;
  const auto t = ts::simulate(w, nullptr, model);
  INFO("time " << t.time_us << " us, one message " << transfer << " us");
  CHECK(t.time_us == Approx(2 * transfer + 1.0));
}

TEST_CASE("a missing dependency is caught", "[sim][negative]") {
  // Two elements go one by one through one staging byte; the second receive
  // must wait for the reduce of the first (write after read). Without that
  // dependency some orders overwrite the staging byte first.
  const auto base = base_args(collective::all_reduce, 2, 2);
  std::vector<ta::schedule> schedules;
  for (int r = 0; r < 2; ++r) {
    ta::schedule_builder b;
    const int peer = 1 - r;
    const ta::region staging = b.allocate_scratch(1);
    for (std::size_t e = 0; e < 2; ++e) {
      b.send(peer, {buffer::input, e}, 1);
      b.recv(peer, staging, 1);
      b.reduce({buffer::output, e}, {buffer::input, e}, staging, 1);
    }
    schedules.push_back(std::move(b).finish());
  }
  {
    auto intact = ts::world_of(schedules, base);
    const auto report = ts::prove(intact, base);
    INFO(report.problems);
    REQUIRE(report.proven);
  }
  // Step 4 is the second receive: drop its dependency on step 2.
  for (auto& s : schedules) {
    REQUIRE(s.steps[4].kind == ta::step_kind::recv);
    std::vector<std::uint32_t> dependencies;
    for (std::size_t i = 0; i < s.steps.size(); ++i) {
      const auto before = s.dependencies_of(s.steps[i]);
      const auto first = static_cast<std::uint32_t>(dependencies.size());
      for (const auto d : before) {
        if (!(i == 4 && d == 2)) dependencies.push_back(d);
      }
      s.steps[i].first_dependency = first;
      s.steps[i].dependency_count = static_cast<std::uint32_t>(dependencies.size()) - first;
    }
    s.dependencies = std::move(dependencies);
  }
  int caught = 0;
  const int threads = GENERATE(1, 2);
  for (std::uint64_t seed = 1; seed <= 32; ++seed) {
    auto w = ts::world_of(schedules, base);
    const auto report = ts::prove(w, base, {.seed = seed, .threads = threads});
    if (report.proven) continue;
    ++caught;
    INFO(report.problems);
    CHECK_THAT(report.problems, Catch::Contains("misplaced operands: rank "));
  }
  CHECK(caught > 0);
}

TEST_CASE("a dependency left out of a hand-built schedule is caught", "[sim][negative]") {
  // Built by hand: the reduce does not wait for the receive that fills its
  // operand, as a builder would make it.
  const auto base = base_args(collective::all_reduce, 2, 4);
  std::vector<ta::schedule> schedules(2);
  for (int r = 0; r < 2; ++r) {
    ta::schedule& s = schedules[uz(r)];
    s.scratch_bytes = 64;
    s.steps.push_back({.kind = ta::step_kind::send, .peer = 1 - r, .src = {buffer::input, 0}, .bytes = 4});
    s.steps.push_back({.kind = ta::step_kind::recv, .peer = 1 - r, .dst = {buffer::scratch, 0}, .bytes = 4});
    s.steps.push_back({.kind = ta::step_kind::reduce,
                       .src = {buffer::scratch, 0},
                       .dst = {buffer::output, 0},
                       .lhs = {buffer::input, 0},
                       .bytes = 4});
  }
  auto w = ts::world_of(schedules, base);
  const auto report = ts::prove(w, base);
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("undefined read: rank 0 step 2 (reduce, 4 bytes) reads its right "
                                              "operand scratch bytes [0, 4)"));
}

TEST_CASE("a double contribution is caught", "[sim][negative]") {
  const auto base = base_args(collective::all_reduce, 1, 4);
  auto w = hand_built(1, base, [](ta::schedule_builder& b, int) {
    b.copy({buffer::output, 0}, {buffer::input, 0}, 4);
    b.reduce({buffer::output, 0}, {buffer::input, 0}, 4);
  });
  const auto report = ts::prove(w, base);
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("double contribution: rank 0 step 1 (reduce, 4 bytes) combines {0}"));
}

TEST_CASE("a block delivered to the wrong place is caught", "[sim][negative]") {
  // all_gather of 2 ranks where each lands the peer's block on its own.
  const auto base = base_args(collective::all_gather, 2, 3);
  auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    const int peer = 1 - r;
    b.send(peer, {buffer::input, 0}, 3);
    b.recv(peer, {buffer::output, uz(r) * 3}, 3);
    b.copy({buffer::output, uz(peer) * 3}, {buffer::input, 0}, 3);
  });
  const auto report = ts::prove(w, base, {.threads = GENERATE(1, 2)});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems,
             Catch::Contains("wrong result: rank 0 output bytes [0, 3) hold {1} from their byte 0, expected {0}"));
}

TEST_CASE("a block from the wrong source offset is caught", "[sim][negative]") {
  // The elements of a 2-element all_reduce combined crosswise: the right
  // ranks, but element 0 of one with element 1 of the other.
  const auto base = base_args(collective::all_reduce, 2, 2);
  auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    const int peer = 1 - r;
    const ta::region staging = b.allocate_scratch(2);
    b.send(peer, {buffer::input, uz(r)}, 1);
    b.send(peer, {buffer::input, uz(1 - r)}, 1);
    b.recv(peer, staging, 2);
  });
  (void)w;
  // Sizes differ there (two sends of 1 against a receive of 2): a size
  // mismatch, reported with both ends.
  const int threads = GENERATE(1, 2);
  const auto report = ts::prove(w, base, {.threads = threads});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("size mismatch: rank ") && Catch::Contains("step 2 (recv from ") &&
                                  Catch::Contains(", 2 bytes) matched rank ") && Catch::Contains("step 0 (send to "));
  auto crossed = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    const int peer = 1 - r;
    const ta::region staging = b.allocate_scratch(2);
    b.send(peer, {buffer::input, 0}, 2);
    b.recv(peer, staging, 2);
    b.reduce({buffer::output, 0}, {buffer::input, 1}, staging, 1);
    b.reduce({buffer::output, 1}, {buffer::input, 0}, ta::region{buffer::scratch, 1}, 1);
  });
  const auto misplaced = ts::prove(crossed, base, {.threads = threads});
  REQUIRE_FALSE(misplaced.proven);
  CHECK_THAT(misplaced.problems, Catch::Contains("misplaced operands"));
}

TEST_CASE("a deadlock is caught and explained", "[sim][negative]") {
  const auto base = base_args(collective::barrier, 2, 0);
  auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    b.recv(1 - r, {buffer::scratch, 0}, 0);
    b.fence();
    b.send(1 - r, {buffer::scratch, 0}, 0);
  });
  const auto report = ts::prove(w, base, {.threads = GENERATE(1, 2)});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("deadlock"));
  CHECK_THAT(report.problems,
             Catch::Contains("rank 0 step 0 (recv from 1, 0 bytes) waits for a message from rank 1 that never came"));
  CHECK_THAT(report.problems, Catch::Contains("rank 1 step 1 (send to 0, 0 bytes) waits for 1 unfinished"));
  CHECK_THROWS_WITH(ts::simulate(w, nullptr), Catch::Contains("deadlocks"));
}

TEST_CASE("an unreceived message is caught", "[sim][negative]") {
  const auto base = base_args(collective::all_reduce, 2, 4);
  auto w = hand_built(2, base, [](ta::schedule_builder& b, int r) {
    if (r == 0) b.send(1, {buffer::input, 0}, 4);
    b.copy({buffer::output, 0}, {buffer::input, 0}, 4);
  });
  const auto report = ts::prove(w, base, {.threads = GENERATE(1, 2)});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("unreceived message: rank 0 step 0 (send to 1, 4 bytes)"));
}

TEST_CASE("an incomplete result names rank and offset", "[sim][negative]") {
  // Each rank only copies its input: no rank has the others' contributions.
  const auto base = base_args(collective::all_reduce, 3, 6);
  auto w = hand_built(3, base, [](ta::schedule_builder& b, int) {
    b.copy({buffer::output, 0}, {buffer::input, 0}, 6);
  });
  const auto report = ts::prove(w, base, {.threads = GENERATE(1, 3)});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems,
             Catch::Contains("wrong result: rank 0 output bytes [0, 6) hold {0} from their byte 0, expected {0-2}"));
}

TEST_CASE("a barrier must hear from every rank", "[sim][negative]") {
  // A ring of one round: each rank hears only from its left neighbour.
  const auto base = base_args(collective::barrier, 4, 0);
  auto w = hand_built(4, base, [](ta::schedule_builder& b, int r) {
    b.send((r + 1) % 4, {buffer::scratch, 0}, 0);
    b.recv((r + 3) % 4, {buffer::scratch, 0}, 0);
  });
  const auto report = ts::prove(w, base, {.threads = GENERATE(1, 3)});
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("barrier incomplete: rank 0 finishes having heard only from {0,3}"));
}

TEST_CASE("schedules reaching outside their buffers are caught", "[sim][negative]") {
  const auto base = base_args(collective::all_reduce, 1, 4);
  auto w = hand_built(1, base, [](ta::schedule_builder& b, int) {
    b.copy({buffer::output, 2}, {buffer::input, 0}, 4);
  });
  const auto report = ts::prove(w, base);
  REQUIRE_FALSE(report.proven);
  CHECK_THAT(report.problems, Catch::Contains("output bytes [2, 6) outside its 4 bytes"));
}

namespace {

struct flat_costs {
  double alpha = 5.0;         // us
  double beta = 1.0 / 10e3;   // us per byte: 10 GB/s
  double gamma = 1.0 / 20e3;  // us per byte: 20 GB/s
};

ts::timing_model flat_model(const flat_costs& c) {
  ts::timing_model m;
  m.nic = {c.alpha, 1.0 / (c.beta * 1e3)};
  m.intra = m.nic;
  m.reduce_gbps = 1.0 / (c.gamma * 1e3);
  m.copy_gbps = 1e9;  // free: the formulas have no copies
  return m;
}

double simulated(std::string_view algorithm, int n, std::size_t bytes, const flat_costs& c) {
  ta::collective_args a = base_args(collective::all_reduce, n, bytes / 4, 4);
  a.chunk_bytes = bytes;  // one chunk per block: the textbook form
  const ts::world w = ts::build_world(algorithm, a);
  return ts::simulate(w, nullptr, flat_model(c)).time_us;
}

double textbook(std::string_view algorithm, int n, double m, const flat_costs& c) {
  const double nn = n;
  const double lg = std::log2(nn);
  if (algorithm == "ring") return 2 * (nn - 1) * (c.alpha + m / nn * c.beta) + (nn - 1) * (m / nn) * c.gamma;
  if (algorithm == "recursive_doubling") return lg * (c.alpha + m * c.beta + m * c.gamma);
  return 2 * lg * c.alpha + 2 * (nn - 1) / nn * m * c.beta + (nn - 1) / nn * m * c.gamma;
}

}  // namespace

TEST_CASE("predicted all_reduce times match the textbook formulas", "[sim][timing]") {
  const flat_costs c;
  for (const int n : {2, 8, 32}) {
    for (const std::size_t bytes : {std::size_t{4} << 10, std::size_t{1} << 20, std::size_t{16} << 20}) {
      for (const std::string_view algorithm : {"ring", "recursive_doubling", "rabenseifner"}) {
        const double sim = simulated(algorithm, n, bytes, c);
        const double formula = textbook(algorithm, n, static_cast<double>(bytes), c);
        INFO(algorithm << " n=" << n << " bytes=" << bytes << ": sim " << sim << " us, formula " << formula << " us");
        // Rabenseifner hands windows below doubling_window_bytes to
        // recursive doubling, so a vector that short is recursive doubling
        // outright. It sends a window whose halves reach round_split_bytes
        // as two messages, so its next round overlaps the rest of this one:
        // then it beats the textbook's rounds one after another, but never
        // the time its bytes take on the link.
        const bool doubling = algorithm == "rabenseifner" && ta::detail::doubling_window(bytes, n) == n;
        const bool split = algorithm == "rabenseifner" && bytes / 4 >= ta::detail::round_split_bytes;
        if (doubling) {
          const double rd = textbook("recursive_doubling", n, static_cast<double>(bytes), c);
          INFO("recursive doubling formula " << rd << " us");
          CHECK(std::abs(sim - rd) <= 0.1 * rd);
        } else if (split) {
          const double nn = n;
          CHECK(sim <= 1.1 * formula);
          CHECK(sim >= 2 * (nn - 1) / nn * static_cast<double>(bytes) * c.beta);
        } else {
          CHECK(std::abs(sim - formula) <= 0.1 * formula);
        }
      }
    }
  }
}

TEST_CASE("the ring overtakes recursive doubling where the formulas say", "[sim][timing]") {
  const flat_costs c;
  const int n = 16;
  auto crossover = [&](auto time_of) {
    for (std::size_t bytes = 256; bytes <= (std::size_t{64} << 20); bytes = bytes * 5 / 4 / 64 * 64 + 64) {
      if (time_of("ring", bytes) < time_of("recursive_doubling", bytes)) return static_cast<double>(bytes);
    }
    return 0.0;
  };
  const double sim = crossover([&](std::string_view a, std::size_t b) { return simulated(a, n, b, c); });
  const double formula =
      crossover([&](std::string_view a, std::size_t b) { return textbook(a, n, static_cast<double>(b), c); });
  INFO("crossover: sim " << sim << " bytes, formula " << formula << " bytes");
  REQUIRE(sim > 0);
  REQUIRE(formula > 0);
  CHECK(sim <= 1.5 * formula);
  CHECK(formula <= 1.5 * sim);
}

TEST_CASE("ranks sharing a NIC are predicted slower across hosts", "[sim][timing]") {
  // Recursive doubling on 2 hosts of 8: its last round sends every rank's
  // whole vector to the other host at once.
  const int n = 16;
  ta::collective_args a = base_args(collective::all_reduce, n, (std::size_t{4} << 20) / 4, 4);
  a.cluster = std::make_shared<const tutti::topology::cluster>(tutti::topology::cluster::uniform(n, 8));
  const ts::world w = ts::build_world("recursive_doubling", a);
  ts::timing_model model;
  model.nics_per_host = 8;
  const auto own_nics = ts::simulate(w, a.cluster.get(), model);
  model.nics_per_host = 1;
  const auto shared_nic = ts::simulate(w, a.cluster.get(), model);
  INFO("8 NICs: " << own_nics.time_us << " us, 1 NIC: " << shared_nic.time_us << " us");
  CHECK(shared_nic.time_us > 3 * own_nics.time_us);
  CHECK(own_nics.nic_messages == uz(n));
}

TEST_CASE("the timing report counts messages and connections", "[sim][timing]") {
  ta::collective_args a = base_args(collective::all_reduce, 8, 1024, 4);
  a.chunk_bytes = 1 << 20;
  const ts::world ring = ts::build_world("ring", a);
  const auto r = ts::simulate(ring, nullptr);
  CHECK(r.messages == 8u * 2 * 7);
  CHECK(r.peak_connections == 2);
  CHECK(r.peak_transport_bytes == 2 * ts::timing_model{}.connection_bytes);
  const ts::world rd = ts::build_world("recursive_doubling", a);
  CHECK(ts::simulate(rd, nullptr).peak_connections == 3);
  CHECK(ts::bus_factor(collective::all_reduce, 8) == Approx(1.75));
  CHECK(ts::nccl_bytes(a) == 4096);
}
