// Algorithms: every schedule of every algorithm, run for whole worlds by the
// schedule interpreter on random integer data, against a serial reference.
// Integer sums wrap exactly, so any correct combination order gives the same
// bytes and a byte comparison is exact.
#include <tutti/algorithm/registry.hpp>
#include <tutti/topology/cluster.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../support/schedule_interpreter.hpp"

namespace ta = tutti::algorithm;
using ta::collective;
using bytes = std::vector<std::byte>;

namespace {

const tutti::sum add{};

tutti::detail::reduction reduction_for(std::size_t element_size) {
  switch (element_size) {
    case 1: return tutti::detail::reduction::make<std::int8_t>(add);
    case 4: return tutti::detail::reduction::make<std::int32_t>(add);
    default: return tutti::detail::reduction::make<std::int64_t>(add);
  }
}

std::size_t uz(int v) { return static_cast<std::size_t>(v); }

struct world_case {
  collective kind = collective::all_reduce;
  std::string_view algorithm;
  int size = 1;
  std::size_t count = 0;
  std::size_t element_size = 4;
  int root = 0;
  std::size_t chunk_bytes = 0;
  bool in_place = false;
  // Hosts: 0 none (no cluster view); k > 0 hosts of k consecutive ranks;
  // -h: h hosts taking ranks round robin (a host's ranks not consecutive).
  int layout = 0;
  // all_gather_v, reduce_scatter_v: per rank. all_to_all_v: size x size,
  // row r being what rank r sends to each peer.
  std::vector<std::size_t> counts;
  std::uint64_t seed = 1;

  [[nodiscard]] std::string describe() const {
    std::ostringstream out;
    out << ta::to_string(kind) << " " << algorithm << " size " << size << " count " << count << " element_size "
        << element_size << " root " << root << " chunk_bytes " << chunk_bytes << (in_place ? " in place" : "")
        << " layout " << layout << " seed " << seed << (seed % 2 == 0 ? " eager" : " rendezvous");
    return std::move(out).str();
  }
};

std::shared_ptr<const tutti::topology::cluster> cluster_for(int size, int layout) {
  if (layout > 0) return std::make_shared<tutti::topology::cluster>(tutti::topology::cluster::uniform(size, layout));
  if (layout == 0) return nullptr;
  std::vector<tutti::topology::rank_location> where;
  for (int r = 0; r < size; ++r) where.push_back({"host" + std::to_string(r % -layout)});
  return std::make_shared<tutti::topology::cluster>(where);
}

ta::collective_args args_for(const world_case& c, int r) {
  ta::collective_args a;
  a.cluster = cluster_for(c.size, c.layout);
  a.kind = c.kind;
  a.rank = r;
  a.size = c.size;
  a.count = c.count;
  a.element_size = c.element_size;
  a.root = c.root;
  a.chunk_bytes = c.chunk_bytes;
  if (c.kind == collective::all_gather_v || c.kind == collective::reduce_scatter_v) a.counts = c.counts;
  if (c.kind == collective::all_to_all_v) {
    for (int p = 0; p < c.size; ++p) {
      a.counts.push_back(c.counts[uz(r * c.size + p)]);
      a.recv_counts.push_back(c.counts[uz(p * c.size + r)]);
    }
  }
  return a;
}

bytes random_bytes(std::size_t n, std::mt19937_64& rng) {
  bytes out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

bytes slice(const bytes& from, std::size_t offset, std::size_t n) {
  return bytes(from.begin() + static_cast<std::ptrdiff_t>(offset),
               from.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

// What each rank's output must hold, computed directly from the inputs.
std::vector<bytes> reference(const world_case& c, const std::vector<ta::collective_args>& args,
                             const std::vector<bytes>& inputs, const std::vector<bytes>& initial_outputs) {
  const auto red = reduction_for(c.element_size);
  const std::size_t es = c.element_size;
  const int n = c.size;
  std::vector<bytes> expected(uz(n));
  auto total = [&] {
    bytes sum = inputs[0];
    for (int r = 1; r < n; ++r) red(sum.data(), inputs[uz(r)].data(), sum.size());
    return sum;
  };
  auto concatenation = [&] {
    bytes all;
    for (const auto& in : inputs) all.insert(all.end(), in.begin(), in.end());
    return all;
  };
  switch (c.kind) {
    case collective::all_reduce:
      for (auto& e : expected) e = total();
      break;
    case collective::reduce: expected[uz(c.root)] = total(); break;
    case collective::broadcast:
      for (auto& e : expected) e = initial_outputs[uz(c.root)];
      break;
    case collective::all_gather:
    case collective::all_gather_v:
    case collective::gather: {
      const bytes all = concatenation();
      for (int r = 0; r < n; ++r) {
        if (c.kind != collective::gather || r == c.root) expected[uz(r)] = all;
      }
      break;
    }
    case collective::reduce_scatter:
    case collective::reduce_scatter_v: {
      const bytes sum = total();
      std::size_t offset = 0;
      for (int r = 0; r < n; ++r) {
        const std::size_t length = ta::output_bytes(args[uz(r)]);
        expected[uz(r)] = slice(sum, offset, length);
        offset += length;
      }
      break;
    }
    case collective::scatter:
      for (int r = 0; r < n; ++r) expected[uz(r)] = slice(inputs[uz(c.root)], uz(r) * c.count * es, c.count * es);
      break;
    case collective::all_to_all:
    case collective::all_to_all_v:
      for (int r = 0; r < n; ++r) {
        for (int p = 0; p < n; ++p) {
          // Peer p's block for r starts after what p sends to ranks below r.
          const auto& sends = args[uz(p)].counts;
          const bool v = c.kind == collective::all_to_all_v;
          std::size_t offset = 0;
          for (int q = 0; q < r; ++q) offset += v ? sends[uz(q)] : c.count;
          const std::size_t length = v ? sends[uz(r)] : c.count;
          const bytes part = slice(inputs[uz(p)], offset * es, length * es);
          expected[uz(r)].insert(expected[uz(r)].end(), part.begin(), part.end());
        }
      }
      break;
    case collective::barrier: break;
  }
  return expected;
}

// Builds every rank's schedule, runs the world, and returns what went wrong
// (empty when nothing did).
std::string run_world(const world_case& c) {
  std::mt19937_64 rng(c.seed);
  std::vector<ta::collective_args> args;
  std::vector<tutti::test::interpreter_rank> ranks;
  std::vector<bytes> inputs;
  std::vector<bytes> initial_outputs;
  std::ostringstream problems;
  for (int r = 0; r < c.size; ++r) {
    args.push_back(args_for(c, r));
    tutti::test::interpreter_rank rank;
    rank.plan = ta::build(c.algorithm, args.back());
    for (std::size_t i = 0; i < rank.plan.steps.size(); ++i) {
      const ta::step& s = rank.plan.steps[i];
      if (s.bytes % c.element_size != 0 || s.src.offset % c.element_size != 0 || s.dst.offset % c.element_size != 0) {
        problems << "rank " << r << " step " << i << " splits an element\n";
      }
    }
    rank.input = random_bytes(ta::input_bytes(args.back()), rng);
    const std::size_t out = ta::output_bytes(args.back());
    rank.output = c.kind == collective::broadcast && r == c.root ? random_bytes(out, rng) : bytes(out, std::byte{0xcd});
    inputs.push_back(rank.input);
    initial_outputs.push_back(rank.output);
    ranks.push_back(std::move(rank));
  }
  const auto expected = reference(c, args, inputs, initial_outputs);
  // Half the worlds run with rendezvous sends: a schedule must not need
  // channel buffering to make progress.
  const auto mode = c.seed % 2 == 0 ? tutti::test::schedule_interpreter::sends::eager
                                    : tutti::test::schedule_interpreter::sends::rendezvous;
  tutti::test::schedule_interpreter world(std::move(ranks), reduction_for(c.element_size), c.seed, c.in_place, mode);
  problems << world.run();
  if (!problems.str().empty()) return problems.str();
  for (int r = 0; r < c.size; ++r) {
    const auto got = world.output(r);
    const bytes& want = expected[uz(r)];
    if (got.size() != want.size()) {
      problems << "rank " << r << ": output has " << got.size() << " bytes; expected " << want.size() << "\n";
    } else if (!want.empty() && std::memcmp(got.data(), want.data(), want.size()) != 0) {
      std::size_t first = 0;
      while (got[first] == want[first]) ++first;
      problems << "rank " << r << ": output differs from the reference first at byte " << first << "\n";
    }
  }
  if (c.size <= 64) {
    // Every rank but a gather/scatter/reduce/broadcast leaf must have heard
    // from everyone; for a barrier that is the whole point.
    const bool all_to_all_kind = c.kind != collective::reduce && c.kind != collective::broadcast &&
                                 c.kind != collective::gather && c.kind != collective::scatter;
    const std::uint64_t everyone = c.size == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << c.size) - 1;
    const bool has_data = ta::input_bytes(args[0]) != 0 || ta::output_bytes(args[0]) != 0;
    for (int r = 0; r < c.size && all_to_all_kind && (has_data || c.kind == collective::barrier); ++r) {
      if (tutti::algorithm::detail::is_v(c.kind)) break;  // empty blocks may carry nothing
      if (world.heard_from(r) != everyone) problems << "rank " << r << " finished without hearing from everyone\n";
    }
  }
  return problems.str();
}

void check_world(const world_case& c) {
  const std::string problems = run_world(c);
  if (!problems.empty()) FAIL(c.describe() << "\n" << problems);
  SUCCEED();
}

std::vector<int> world_sizes() { return {1, 2, 3, 4, 5, 6, 7, 8, 9, 16}; }

std::vector<int> roots_for(collective kind, int size) {
  const bool rooted = kind == collective::reduce || kind == collective::broadcast || kind == collective::gather ||
                      kind == collective::scatter;
  if (!rooted) return {0};
  std::set<int> roots{0, size - 1, size / 2};
  return {roots.begin(), roots.end()};
}

std::vector<std::size_t> random_counts(std::size_t entries, std::size_t most, std::mt19937_64& rng) {
  std::vector<std::size_t> counts(entries);
  // A quarter empty: empty blocks are where uneven schedules go wrong.
  for (auto& c : counts) c = rng() % 4 == 0 ? 0 : rng() % (most + 1);
  return counts;
}

// Whether `algorithm` builds differently given a cluster view.
bool reads_cluster(collective kind, std::string_view algorithm) {
  return algorithm.starts_with("hierarchical") || (kind == collective::all_reduce && algorithm == "ring");
}

// Cluster layouts worth trying for `size` ranks: none, and for algorithms
// that read the view, hosts of 1, 2 and 3 consecutive ranks, and 2 or 3
// hosts taking ranks round robin, where they divide the world evenly.
std::vector<int> layouts_for(collective kind, std::string_view algorithm, int size) {
  std::vector<int> out{0};
  if (!reads_cluster(kind, algorithm)) return out;
  for (const int per_host : {1, 2, 3}) {
    if (size % per_host == 0 && size > per_host) out.push_back(per_host);
  }
  for (const int hosts : {2, 3}) {
    if (size % hosts == 0 && size > hosts) out.push_back(-hosts);
  }
  return out;
}

// The standard sweep: every algorithm, size, count, element size and root,
// and the cluster layouts for algorithms that read one.
void sweep(collective kind) {
  std::mt19937_64 rng(static_cast<std::uint64_t>(kind) + 7);
  const std::size_t counts[] = {0, 1, 7, 1000, 4099};
  const std::size_t element_sizes[] = {1, 4, 8};
  for (const std::string_view algorithm : ta::algorithms_for(kind)) {
    for (const int size : world_sizes()) {
      for (const std::size_t count : counts) {
        // Large worlds with large counts are slow under sanitizers and add
        // little: their structure is that of the small counts.
        if (size == 16 && count == 4099 && kind != collective::all_reduce) continue;
        for (const std::size_t es : element_sizes) {
          for (const int root : roots_for(kind, size)) {
            for (const int layout : layouts_for(kind, algorithm, size)) {
              // Layouts change the peers, not the element handling.
              if (layout != 0 && es != 4) continue;
              world_case c;
              c.kind = kind;
              c.algorithm = algorithm;
              c.size = size;
              c.count = count;
              c.element_size = es;
              c.root = root;
              c.layout = layout;
              c.seed = rng();
              if (kind == collective::all_gather_v || kind == collective::reduce_scatter_v) {
                c.counts = random_counts(uz(size), count, rng);
              } else if (kind == collective::all_to_all_v) {
                c.counts = random_counts(uz(size * size), count, rng);
              }
              check_world(c);
            }
          }
        }
      }
    }
  }
}

// Many chunks per block, so pipelined schedules overlap chunks and steps.
void pipelined(collective kind, std::string_view algorithm, std::size_t count) {
  for (const int size : {3, 8}) {
    world_case c;
    c.kind = kind;
    c.algorithm = algorithm;
    c.size = size;
    c.count = count;
    c.element_size = 4;
    c.root = size - 1;
    c.chunk_bytes = 4096;
    c.seed = static_cast<std::uint64_t>(size) * 31 + count;
    c.layout = algorithm.starts_with("hierarchical") && size % 2 == 0 ? 2 : 0;
    check_world(c);
  }
}

std::size_t count_steps(const ta::schedule& s, ta::step_kind kind) {
  std::size_t n = 0;
  for (const auto& step : s.steps) n += step.kind == kind ? 1 : 0;
  return n;
}

// Every rank's schedule for one call.
std::vector<ta::schedule> world_plans(std::string_view algorithm, const ta::collective_args& a) {
  std::vector<ta::schedule> plans;
  for (int r = 0; r < a.size; ++r) {
    auto mine = a;
    mine.rank = r;
    plans.push_back(ta::build(algorithm, mine));
  }
  return plans;
}

// How long a world takes when every message takes one unit of time on its
// channel (one message at a time per channel and direction) and local steps
// none: the longest chain of messages, with those queued behind each other
// on a channel. The k-th send from p to q matches q's k-th receive from p.
std::size_t message_time(const std::vector<ta::schedule>& plans) {
  const std::size_t n = plans.size();
  constexpr std::size_t none = ~std::size_t{0};
  std::vector<std::vector<std::size_t>> match(n);  // receive -> its send's step
  std::vector<std::vector<std::size_t>> sends(n * n);
  for (std::size_t p = 0; p < n; ++p) {
    for (std::size_t i = 0; i < plans[p].steps.size(); ++i) {
      const auto& s = plans[p].steps[i];
      if (s.kind == ta::step_kind::send) sends[p * n + uz(s.peer)].push_back(i);
    }
  }
  for (std::size_t q = 0; q < n; ++q) {
    std::vector<std::size_t> matched(n, 0);
    match[q].assign(plans[q].steps.size(), none);
    for (std::size_t i = 0; i < plans[q].steps.size(); ++i) {
      const auto& s = plans[q].steps[i];
      if (s.kind == ta::step_kind::recv) match[q][i] = sends[uz(s.peer) * n + q].at(matched[uz(s.peer)]++);
    }
  }
  std::vector<std::vector<std::size_t>> done(n);
  for (std::size_t r = 0; r < n; ++r) done[r].assign(plans[r].steps.size(), 0);
  // Times only grow, and schedules without deadlocks have no cycles.
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t r = 0; r < n; ++r) {
      std::vector<std::size_t> last_send(n, 0);
      std::vector<std::size_t> last_recv(n, 0);
      for (std::size_t i = 0; i < plans[r].steps.size(); ++i) {
        const auto& s = plans[r].steps[i];
        std::size_t t = 0;
        for (const std::uint32_t d : plans[r].dependencies_of(s)) t = std::max(t, done[r][d]);
        if (s.kind == ta::step_kind::send) {
          t = std::max(t, last_send[uz(s.peer)]) + 1;
          last_send[uz(s.peer)] = t;
        } else if (s.kind == ta::step_kind::recv) {
          t = std::max({t, last_recv[uz(s.peer)], done[uz(s.peer)][match[r][i]]});
          last_recv[uz(s.peer)] = t;
        }
        changed = changed || t != done[r][i];
        done[r][i] = t;
      }
    }
  }
  std::size_t most = 0;
  for (const auto& times : done) {
    for (const std::size_t t : times) most = std::max(most, t);
  }
  return most;
}

std::size_t bytes_sent(const ta::schedule& s) {
  std::size_t total = 0;
  for (const auto& step : s.steps) total += step.kind == ta::step_kind::send ? step.bytes : 0;
  return total;
}

ta::collective_args simple_args(collective kind, int rank, int size, std::size_t count) {
  ta::collective_args a;
  a.kind = kind;
  a.rank = rank;
  a.size = size;
  a.count = count;
  a.element_size = 4;
  return a;
}

}  // namespace

TEST_CASE("all_reduce: every algorithm matches the reference", "[algorithm]") { sweep(collective::all_reduce); }

TEST_CASE("all_reduce: in place every algorithm matches the reference", "[algorithm]") {
  for (const std::string_view algorithm : ta::algorithms_for(collective::all_reduce)) {
    for (const int size : world_sizes()) {
      for (const std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
        world_case c;
        c.algorithm = algorithm;
        c.size = size;
        c.count = count;
        c.element_size = 8;
        c.in_place = true;
        c.chunk_bytes = 64;
        c.seed = count + uz(size);
        for (const int layout : layouts_for(collective::all_reduce, algorithm, size)) {
          c.layout = layout;
          check_world(c);
        }
      }
    }
  }
}

TEST_CASE("reduce: every algorithm matches the reference for every root", "[algorithm]") { sweep(collective::reduce); }
TEST_CASE("broadcast: every algorithm matches the reference for every root", "[algorithm]") {
  sweep(collective::broadcast);
}
TEST_CASE("all_gather: every algorithm matches the reference", "[algorithm]") { sweep(collective::all_gather); }
TEST_CASE("all_gather_v: every algorithm matches the reference with uneven and empty blocks", "[algorithm]") {
  sweep(collective::all_gather_v);
}
TEST_CASE("reduce_scatter: every algorithm matches the reference", "[algorithm]") { sweep(collective::reduce_scatter); }
TEST_CASE("reduce_scatter_v: every algorithm matches the reference with uneven and empty blocks", "[algorithm]") {
  sweep(collective::reduce_scatter_v);
}
TEST_CASE("gather: binomial matches the reference for every root", "[algorithm]") { sweep(collective::gather); }
TEST_CASE("scatter: binomial matches the reference for every root", "[algorithm]") { sweep(collective::scatter); }
TEST_CASE("all_to_all: every algorithm matches the reference", "[algorithm]") { sweep(collective::all_to_all); }
TEST_CASE("all_to_all_v: pairwise matches the reference with uneven and empty blocks", "[algorithm]") {
  sweep(collective::all_to_all_v);
}
TEST_CASE("barrier: dissemination completes and every rank hears from every rank", "[algorithm]") {
  sweep(collective::barrier);
}

TEST_CASE("pipelined algorithms stay correct with many chunks in flight", "[algorithm]") {
  pipelined(collective::all_reduce, "ring", 262147);
  pipelined(collective::broadcast, "chain", 262147);
  pipelined(collective::all_gather, "ring", 32771);
  pipelined(collective::reduce_scatter, "ring", 32771);
  pipelined(collective::all_reduce, "double_binary_tree", 262147);
  pipelined(collective::reduce, "ring", 262147);
  pipelined(collective::all_reduce, "hierarchical", 262147);
  pipelined(collective::all_gather, "hierarchical", 32771);
  pipelined(collective::reduce_scatter, "hierarchical", 32771);
}

TEST_CASE("all_reduce reduces from input instead of copying it to output first", "[algorithm]") {
  // The copy is a whole extra pass over memory; dst = op(input, received)
  // makes it unnecessary. The double binary tree still copies.
  for (const std::string_view algorithm : {"ring", "recursive_doubling", "rabenseifner"}) {
    for (const int size : {2, 3, 4, 5, 8}) {
      for (int rank = 0; rank < size; ++rank) {
        INFO(algorithm << " rank " << rank << " of " << size);
        const auto s = ta::build(algorithm, simple_args(collective::all_reduce, rank, size, 1000));
        CHECK(count_steps(s, ta::step_kind::copy) == 0);
      }
    }
  }
}

TEST_CASE("ring all_reduce: steps per rank grow linearly in size", "[algorithm]") {
  for (int size = 2; size <= 32; ++size) {
    for (const int rank : {0, size - 1}) {
      // Every block non-empty and one chunk: per step a send and a receive,
      // plus a reduce in the first phase, and no copy of input to output.
      const auto s = ta::build("ring", simple_args(collective::all_reduce, rank, size, 1024));
      CHECK(s.steps.size() == 5 * uz(size - 1));
      CHECK(count_steps(s, ta::step_kind::send) == 2 * uz(size - 1));
    }
  }
  // With chunks, every step is repeated per chunk.
  auto a = simple_args(collective::all_reduce, 1, 4, 4096);
  a.chunk_bytes = 1024;  // 1024 elements per block of 4 bytes: 4 chunks
  CHECK(ta::build("ring", a).steps.size() == 5 * 3 * 4);
}

TEST_CASE("recursive doubling all_reduce: log2 rounds plus the fold", "[algorithm]") {
  for (int size = 1; size <= 33; ++size) {
    int log2 = 0;
    while ((2 << log2) <= size) ++log2;
    const int extra = size - (1 << log2);
    for (int rank = 0; rank < size; ++rank) {
      const auto s = ta::build("recursive_doubling", simple_args(collective::all_reduce, rank, size, 16));
      std::size_t want = uz(log2);
      if (rank < 2 * extra) want = rank % 2 == 0 ? 1 : want + 1;
      INFO("size " << size << " rank " << rank);
      CHECK(count_steps(s, ta::step_kind::send) == want);
      CHECK(count_steps(s, ta::step_kind::recv) == want);
    }
  }
}

TEST_CASE("in-order tree: odd indices interior, shallow, and disjoint from its shift by one", "[algorithm]") {
  for (int n = 1; n <= 70; ++n) {
    INFO("n " << n);
    int roots = 0;
    std::vector<int> depth(uz(n), -1);
    for (int i = 0; i < n; ++i) {
      const auto node = ta::detail::in_order_tree(n, i);
      const bool interior = node.children[0] >= 0 || node.children[1] >= 0;
      CHECK(interior == (i % 2 == 1));
      if (node.parent < 0) {
        ++roots;
      } else {
        const auto parent = ta::detail::in_order_tree(n, node.parent);
        CHECK((parent.children[0] == i || parent.children[1] == i));
      }
      for (const int child : node.children) {
        if (child >= 0) CHECK(ta::detail::in_order_tree(n, child).parent == i);
      }
      int d = 0;
      for (int up = node.parent; up >= 0; up = ta::detail::in_order_tree(n, up).parent) ++d;
      CHECK(d <= ta::detail::ceil_log2(n + 1) - 1);
    }
    CHECK(roots == 1);
    // Tree t places rank r at index r + t: no rank is interior in both, so
    // every rank is a leaf in at least one.
    for (int r = 0; r < n; ++r) {
      auto interior = [&](int t) {
        const auto node = ta::detail::in_order_tree(n, ta::detail::wrap(r + t, n));
        return node.children[0] >= 0 || node.children[1] >= 0;
      };
      CHECK_FALSE((interior(0) && interior(1)));
    }
  }
}

TEST_CASE("double binary tree all_reduce: every rank moves about 2 count bytes", "[algorithm]") {
  for (int size = 2; size <= 40; ++size) {
    const std::size_t count = 4096;  // even halves, one chunk each
    const auto plans = world_plans("double_binary_tree", simple_args(collective::all_reduce, 0, size, count));
    std::size_t messages = 0;
    for (int r = 0; r < size; ++r) {
      INFO("size " << size << " rank " << r);
      // A leaf of one tree (one half up and down) and at most interior of the
      // other (a half up, two down, and as many in): 4 halves at most.
      const std::size_t half = count / 2 * 4;
      CHECK(bytes_sent(plans[uz(r)]) <= 4 * half);
      CHECK(bytes_sent(plans[uz(r)]) >= 2 * half);
      messages += count_steps(plans[uz(r)], ta::step_kind::send);
    }
    // Each tree edge carries one chunk up and one down.
    CHECK(messages == 2 * 2 * uz(size - 1));
  }
}

TEST_CASE("double binary tree all_reduce: latency grows with log2 of size, chunks stream behind it", "[algorithm]") {
  for (int size = 2; size <= 33; ++size) {
    INFO("size " << size);
    const std::size_t depth = uz(ta::detail::ceil_log2(size + 1) - 1);  // floor(log2(size))
    // One chunk per half: up a tree and back down, where the ring goes
    // around twice.
    const auto one_chunk = simple_args(collective::all_reduce, 0, size, 64);
    CHECK(message_time(world_plans("double_binary_tree", one_chunk)) == 2 * depth);
    CHECK(message_time(world_plans("ring", one_chunk)) == 2 * uz(size - 1));
    // 64 chunks per half. A leaf's parent in one tree is its child in the
    // other, so that channel carries a chunk of each half per chunk index
    // (count bytes in all, as much as the ring puts on a link): 128 units at
    // best. They must stream, reducing chunk c + 1 while broadcasting chunk
    // c; a chunk waiting for the previous one's round trip would take
    // 64 * 2 * depth.
    auto many = one_chunk;
    many.count = 64 * 2 * 16;
    many.chunk_bytes = 16 * 4;
    CHECK(message_time(world_plans("double_binary_tree", many)) <= 2 * 64 + 4 * depth);
  }
}

TEST_CASE("ring reduce: every rank sends about count bytes, the root receives about 2 count", "[algorithm]") {
  for (int size = 2; size <= 32; ++size) {
    for (const int root : {0, size / 2, size - 1}) {
      auto a = simple_args(collective::reduce, 0, size, 64 * uz(size));
      a.root = root;
      const std::size_t block = 64 * 4;
      const auto plans = world_plans("ring", a);
      for (int r = 0; r < size; ++r) {
        INFO("size " << size << " root " << root << " rank " << r);
        const auto& s = plans[uz(r)];
        // The ring's size - 1 blocks, then one block to the root.
        CHECK(bytes_sent(s) == (r == root ? uz(size - 1) : uz(size)) * block);
        CHECK(count_steps(s, ta::step_kind::recv) == (r == root ? 2 : 1) * uz(size - 1));
        CHECK(s.scratch_bytes >= (r == root ? 0 : a.count * 4));
      }
      CHECK(message_time(plans) == uz(size));
    }
  }
}

TEST_CASE("bruck all_to_all: ceil log2 rounds of packed blocks", "[algorithm]") {
  for (int size = 1; size <= 33; ++size) {
    // Block i travels once per set bit of i.
    std::size_t hops = 0;
    for (int i = 0; i < size; ++i) hops += uz(__builtin_popcount(static_cast<unsigned>(i)));
    for (const int rank : {0, size / 2, size - 1}) {
      INFO("size " << size << " rank " << rank);
      const auto s = ta::build("bruck", simple_args(collective::all_to_all, rank, size, 3));
      CHECK(count_steps(s, ta::step_kind::send) == uz(ta::detail::ceil_log2(size)));
      CHECK(count_steps(s, ta::step_kind::recv) == uz(ta::detail::ceil_log2(size)));
      CHECK(bytes_sent(s) == hops * 3 * 4);
    }
  }
  // Uniform all_to_all only: all_to_all_v has its own counts per peer.
  CHECK(ta::algorithms_for(collective::all_to_all_v) == std::vector<std::string_view>{"pairwise"});
  auto v = simple_args(collective::all_to_all_v, 0, 2, 0);
  v.counts = {1, 1};
  v.recv_counts = {1, 1};
  CHECK_THROWS_AS(ta::build("bruck", v), tutti::error);
}

TEST_CASE("double binary tree all_reduce: any size, halves with different chunk counts, in place", "[algorithm]") {
  std::uint64_t seed = 100;
  for (int size = 1; size <= 17; ++size) {
    for (const std::size_t count : std::vector<std::size_t>{1, 2, 3, 9, 17, 31, 100}) {
      for (const std::size_t chunk_bytes : std::vector<std::size_t>{4, 8, 32, 0}) {
        world_case c;
        c.algorithm = "double_binary_tree";
        c.size = size;
        c.count = count;
        c.chunk_bytes = chunk_bytes;
        c.in_place = seed % 3 == 0;
        c.seed = ++seed;
        check_world(c);
      }
    }
  }
}

TEST_CASE("ring reduce: every root of every size, with empty and uneven blocks", "[algorithm]") {
  std::uint64_t seed = 200;
  for (int size = 1; size <= 12; ++size) {
    for (int root = 0; root < size; ++root) {
      for (const std::size_t count : std::vector<std::size_t>{1, uz(size) - 1, uz(size) + 1, 31}) {
        for (const std::size_t chunk_bytes : std::vector<std::size_t>{4, 0}) {
          world_case c;
          c.kind = collective::reduce;
          c.algorithm = "ring";
          c.size = size;
          c.count = count;
          c.root = root;
          c.chunk_bytes = chunk_bytes;
          c.seed = ++seed;
          check_world(c);
        }
      }
    }
  }
}

TEST_CASE("bruck all_to_all: sizes up to 33", "[algorithm]") {
  std::uint64_t seed = 300;
  for (int size = 17; size <= 33; ++size) {
    for (const std::size_t count : std::vector<std::size_t>{1, 3}) {
      world_case c;
      c.kind = collective::all_to_all;
      c.algorithm = "bruck";
      c.size = size;
      c.count = count;
      c.element_size = 8;
      c.seed = ++seed;
      check_world(c);
    }
  }
}

TEST_CASE("dissemination barrier: ceil log2 rounds of empty messages", "[algorithm]") {
  for (int size = 1; size <= 33; ++size) {
    int rounds = 0;
    while ((1 << rounds) < size) ++rounds;
    for (const int rank : {0, size / 2, size - 1}) {
      const auto s = ta::build("dissemination", simple_args(collective::barrier, rank, size, 0));
      CHECK(count_steps(s, ta::step_kind::send) == uz(rounds));
      CHECK(count_steps(s, ta::step_kind::recv) == uz(rounds));
      for (const auto& step : s.steps) CHECK(step.bytes == 0);
    }
  }
}

namespace {

std::vector<std::uint32_t> dependencies_of(const ta::schedule& s, std::size_t step) {
  const auto d = s.dependencies_of(s.steps[step]);
  return {d.begin(), d.end()};
}

using list = std::vector<std::uint32_t>;

}  // namespace

TEST_CASE("the builder derives each step's dependencies from the bytes it touches", "[algorithm]") {
  const auto out = [](std::size_t at) { return ta::region{ta::buffer::output, at}; };
  const auto in = [](std::size_t at) { return ta::region{ta::buffer::input, at}; };
  SECTION("reads wait for the last write, writes for the reads since it, each listed once in byte order") {
    ta::schedule_builder b;
    b.recv(1, out(0), 16);                // 0
    b.send(1, out(0), 8);                 // 1: reads what 0 wrote
    b.send(1, out(8), 8);                 // 2
    b.copy(out(4), in(0), 8);             // 3: overwrites [4, 12), read by 1 and 2
    b.send(1, out(0), 16);                // 4: [0, 4) and [12, 16) from 0, [4, 12) from 3
    b.recv(1, out(0), 16);                // 5: after the reads since each byte's write
    b.recv(1, out(0), 16);                // 6: nothing read since 5
    b.reduce(out(0), out(16), 8);         // 7: reads [16, 24), never written; rewrites [0, 8)
    b.reduce(out(24), out(0), in(8), 8);  // 8: lhs [0, 8) from 7, src input never written
    const auto s = std::move(b).finish();
    REQUIRE(s.steps.size() == 9);
    CHECK(dependencies_of(s, 0).empty());
    CHECK(dependencies_of(s, 1) == list{0});
    CHECK(dependencies_of(s, 2) == list{0});
    CHECK(dependencies_of(s, 3) == list{1, 2});
    CHECK(dependencies_of(s, 4) == list{0, 3});
    CHECK(dependencies_of(s, 5) == list{4, 1, 2});
    CHECK(dependencies_of(s, 6) == list{5});
    CHECK(dependencies_of(s, 7) == list{6});
    CHECK(dependencies_of(s, 8) == list{7});
  }
  SECTION("blocks walked backwards and forwards, then read whole") {
    ta::schedule_builder b;
    for (std::size_t k = 4; k-- > 0;) b.recv(1, out(k * 16), 16);       // steps 0..3 write blocks 3..0
    b.send(1, out(0), 64);                                              // 4
    for (std::size_t k = 0; k < 4; ++k) b.recv(1, out(k * 16 + 4), 8);  // 5..8: inside each block
    b.send(1, out(0), 64);                                              // 9
    const auto s = std::move(b).finish();
    CHECK(dependencies_of(s, 4) == list{3, 2, 1, 0});
    for (std::size_t k = 5; k < 9; ++k) CHECK(dependencies_of(s, k) == list{4});
    CHECK(dependencies_of(s, 9) == list{3, 5, 2, 6, 1, 7, 0, 8});
  }
  SECTION("an input that may be the output orders its reads against output writes") {
    ta::schedule_builder b;
    b.input_may_alias_output(8);
    b.send(1, in(0), 8);   // 0: reads output [8, 16)
    b.recv(1, out(8), 8);  // 1: must not overwrite it first
    b.recv(1, out(0), 8);  // 2: elsewhere
    const auto s = std::move(b).finish();
    CHECK(dependencies_of(s, 1) == list{0});
    CHECK(dependencies_of(s, 2).empty());
  }
  SECTION("a fence orders messages that touch no bytes") {
    ta::schedule_builder b;
    b.send(1, out(0), 0);
    b.recv(1, out(0), 0);
    b.fence();
    b.send(2, out(0), 0);
    b.recv(2, out(0), 4);
    const auto s = std::move(b).finish();
    CHECK(dependencies_of(s, 1).empty());
    CHECK(dependencies_of(s, 2) == list{0, 1});
    CHECK(dependencies_of(s, 3) == list{0, 1});
  }
}

TEST_CASE("schedules are the same every time they are built, in recycled memory too", "[algorithm]") {
  const auto same = [](const ta::schedule& x, const ta::schedule& y) {
    REQUIRE(x.steps.size() == y.steps.size());
    CHECK(x.dependencies == y.dependencies);
    CHECK(x.scratch_bytes == y.scratch_bytes);
    for (std::size_t i = 0; i < x.steps.size(); ++i) {
      CHECK(x.steps[i].kind == y.steps[i].kind);
      CHECK(x.steps[i].peer == y.steps[i].peer);
      CHECK(x.steps[i].src == y.steps[i].src);
      CHECK(x.steps[i].dst == y.steps[i].dst);
      CHECK(x.steps[i].lhs == y.steps[i].lhs);
      CHECK(x.steps[i].bytes == y.steps[i].bytes);
    }
  };
  for (const std::string_view algorithm : ta::algorithms_for(collective::all_reduce)) {
    INFO(algorithm);
    const auto a = simple_args(collective::all_reduce, 3, 7, 1001);
    const auto first = ta::build(algorithm, a);
    same(first, ta::build(algorithm, a));
    // A schedule handed back lends its memory to the next builder, which
    // starts from nothing all the same.
    ta::schedule spent = ta::build(algorithm, simple_args(collective::all_reduce, 2, 7, 5000));
    const ta::step* memory = spent.steps.data();
    ta::recycle(std::move(spent));
    ta::schedule_builder b;
    b.send(1, {ta::buffer::input, 0}, 4);
    auto one = std::move(b).finish();
    CHECK(one.steps.data() == memory);
    REQUIRE(one.steps.size() == 1);
    CHECK(one.dependencies.empty());
    ta::recycle(std::move(one));
    same(first, ta::build(algorithm, a));
  }
  ta::recycle({});
}

TEST_CASE("build rejects unknown algorithms and bad arguments", "[algorithm]") {
  const auto a = simple_args(collective::all_reduce, 0, 4, 8);
  try {
    (void)ta::build("tree_of_life", a);
    FAIL("no error");
  } catch (const tutti::error& e) {
    CHECK(e.code() == tutti::errc::invalid_argument);
    const std::string message = e.message();
    CHECK(message.find("tree_of_life") != std::string::npos);
    CHECK(message.find("ring, recursive_doubling, rabenseifner") != std::string::npos);
  }
  auto bad = a;
  bad.rank = 4;
  CHECK_THROWS_AS(ta::build("ring", bad), tutti::error);
  bad = a;
  bad.element_size = 0;
  CHECK_THROWS_AS(ta::build("ring", bad), tutti::error);
  bad = a;
  bad.kind = collective::broadcast;
  bad.root = -1;
  CHECK_THROWS_AS(ta::build("binomial", bad), tutti::error);
  bad = a;
  bad.kind = collective::all_gather_v;
  bad.counts = {1, 2};
  CHECK_THROWS_AS(ta::build("ring", bad), tutti::error);
  bad.kind = collective::all_to_all_v;
  bad.counts = {1, 2, 3, 4};
  bad.recv_counts = {2, 2, 3, 4};
  CHECK_THROWS_AS(ta::build("pairwise", bad), tutti::error);
}

TEST_CASE("every collective has algorithms and a name", "[algorithm]") {
  for (int k = 0; k <= static_cast<int>(collective::barrier); ++k) {
    const auto kind = static_cast<collective>(k);
    CHECK(ta::to_string(kind) != "unknown");
    CHECK_FALSE(ta::algorithms_for(kind).empty());
  }
}

// The interpreter must catch what it exists to catch.
namespace {

using sends = tutti::test::schedule_interpreter::sends;

std::string run_plans(std::vector<ta::schedule> plans, std::size_t input, std::size_t output,
                      sends mode = sends::eager) {
  std::vector<tutti::test::interpreter_rank> ranks;
  for (auto& p : plans) ranks.push_back({std::move(p), bytes(input), bytes(output)});
  tutti::test::schedule_interpreter world(std::move(ranks), reduction_for(4), 5, false, mode);
  return world.run();
}

}  // namespace

TEST_CASE("schedule interpreter reports deadlocks size mismatches and stray bytes", "[algorithm]") {
  const ta::region out{ta::buffer::output, 0};
  SECTION("both ranks receive first") {
    ta::schedule_builder a;
    a.recv(1, out, 4);
    a.send(1, out, 4);
    ta::schedule_builder b;
    b.recv(0, out, 4);
    b.send(0, out, 4);
    const std::string report = run_plans({std::move(a).finish(), std::move(b).finish()}, 0, 4);
    CHECK(report.find("deadlock") != std::string::npos);
    CHECK(report.find("rank 1 step 0 (recv from 0") != std::string::npos);
  }
  SECTION("both ranks send first and only buffering saves them") {
    // Each send waits for the other's receive step, as with large messages.
    auto plan = [&](int peer) {
      ta::schedule_builder b;
      b.send(peer, out, 4);
      b.recv(peer, {ta::buffer::output, 4}, 4);
      b.fence();
      b.send(peer, out, 4);
      b.recv(peer, {ta::buffer::output, 4}, 4);
      return std::move(b).finish();
    };
    CHECK(run_plans({plan(1), plan(0)}, 0, 8, sends::eager).empty());
    auto blocking = [&](int peer) {
      ta::schedule_builder b;
      b.send(peer, out, 4);
      b.fence();
      b.recv(peer, {ta::buffer::output, 4}, 4);
      return std::move(b).finish();
    };
    CHECK(run_plans({blocking(1), blocking(0)}, 0, 8, sends::eager).empty());
    const std::string report = run_plans({blocking(1), blocking(0)}, 0, 8, sends::rendezvous);
    CHECK(report.find("waits for its receive to be posted") != std::string::npos);
    CHECK(run_plans({plan(1), plan(0)}, 0, 8, sends::rendezvous).empty());
  }
  SECTION("sizes differ") {
    ta::schedule_builder a;
    a.send(1, out, 4);
    ta::schedule_builder b;
    b.recv(0, out, 8);
    const std::string report = run_plans({std::move(a).finish(), std::move(b).finish()}, 0, 8);
    CHECK(report.find("size mismatch: rank 1 step 0") != std::string::npos);
  }
  SECTION("a step outside its buffer") {
    ta::schedule_builder a;
    a.copy({ta::buffer::output, 4}, {ta::buffer::input, 0}, 8);
    const std::string report = run_plans({std::move(a).finish()}, 8, 8);
    CHECK(report.find("rank 0 step 0 (copy, 8 bytes): output bytes [4, 12) outside its 8 bytes") != std::string::npos);
  }
  SECTION("a message nobody receives") {
    ta::schedule_builder a;
    a.send(1, out, 4);
    const std::string report = run_plans({std::move(a).finish(), ta::schedule{}}, 0, 4);
    CHECK(report.find("rank 1 never received 1 message(s) from rank 0") != std::string::npos);
  }
}
