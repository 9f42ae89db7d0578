// The simulator's form of a schedule: the same steps, repacked as soon as a
// rank's schedule is built, so that a world of thousands of ranks fits in
// memory and runs fast. A 4096-rank ring all_reduce is about 20k steps per
// rank, 84M in all: algorithm::step is 72 bytes and keeps dependencies
// (what a step waits for), while running needs successors (what a finished
// step releases), so each step is packed into 24 bytes and its successors
// into 2 bytes each, and the schedule itself is dropped right away. Memory
// is most of what a big proof costs: every page of a world is touched first
// while it is built, and on a virtual machine whose host reclaims free
// memory that first touch is dearer than the steps that follow.
//
// Channel order becomes dependencies here: a send waits for the previous
// send to the same peer and a receive for the previous receive from it, as
// messages on an RC queue pair match in program order. So both simulators
// only ever follow successor edges.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>

namespace tutti::sim {

inline constexpr std::uint32_t no_step = std::numeric_limits<std::uint32_t>::max();

// One step, in 24 bytes. Offsets and sizes are 32-bit: compile() rejects a
// schedule whose buffers exceed 4 GiB (the symbolic proofs use small counts
// anyway, see symbolic.hpp). A peer is named by its channel, an index into
// the program's in_peers (recv) or out_peers (send), as no step has both a
// peer and a left operand.
struct op {
  // The most predecessors a step may have; `waits` holds it once the step ran.
  static constexpr std::uint32_t done = (std::uint32_t{1} << 24) - 1;

  std::uint32_t src = 0;  // offsets, as in algorithm::step
  std::uint32_t dst = 0;
  union {
    std::uint32_t lhs = 0;  // reduce
    std::uint32_t channel;  // send: into program::out_peers; recv: into in_peers
  };
  std::uint32_t bytes = 0;
  std::uint32_t first_next = 0;  // into program::next; ends at the next op's
  std::uint32_t waits : 24 = 0;  // predecessors not yet run: dependencies and channel order
  algorithm::step_kind kind : 2 = algorithm::step_kind::copy;
  algorithm::buffer src_buf : 2 = algorithm::buffer::input;
  algorithm::buffer dst_buf : 2 = algorithm::buffer::output;
  algorithm::buffer lhs_buf : 2 = algorithm::buffer::output;
};
static_assert(sizeof(op) == 24);

// Successors are kept as their distance from the step (they all come
// after it), in 16 bits: a 4096-rank ring's 151M edges take 0.3 GB rather
// than 0.6. A distance of 2^16 or more takes three entries: 0, then its low
// and high halves.
namespace detail {

inline constexpr std::uint32_t near_successor = std::uint32_t{1} << 16;

// Entries a successor at `distance` takes.
constexpr std::uint32_t successor_entries(std::uint32_t distance) noexcept { return distance < near_successor ? 1 : 3; }

// Writes a successor at `distance` from `at` on.
inline void put_successor(std::uint16_t* at, std::uint32_t distance) noexcept {
  if (distance < near_successor) {
    at[0] = static_cast<std::uint16_t>(distance);
    return;
  }
  at[0] = 0;
  at[1] = static_cast<std::uint16_t>(distance);
  at[2] = static_cast<std::uint16_t>(distance >> 16);
}

}  // namespace detail

// The successors of one step, decoded as they are walked.
class successor_list {
 public:
  class iterator {
   public:
    iterator(const std::uint16_t* at, std::uint32_t from) noexcept : at_(at), from_(from) {}
    std::uint32_t operator*() const noexcept {
      return from_ + (at_[0] != 0 ? at_[0] : std::uint32_t{at_[1]} | (std::uint32_t{at_[2]} << 16));
    }
    iterator& operator++() noexcept {
      at_ += at_[0] != 0 ? 1 : 3;
      return *this;
    }
    bool operator==(const iterator& other) const noexcept { return at_ == other.at_; }

   private:
    const std::uint16_t* at_;
    std::uint32_t from_;
  };

  successor_list(const std::uint16_t* begin, const std::uint16_t* end, std::uint32_t from) noexcept
      : begin_(begin), end_(end), from_(from) {}
  [[nodiscard]] iterator begin() const noexcept { return {begin_, from_}; }
  [[nodiscard]] iterator end() const noexcept { return {end_, from_}; }

 private:
  const std::uint16_t* begin_;
  const std::uint16_t* end_;
  std::uint32_t from_;
};

struct program {
  std::vector<op> ops;
  std::vector<std::uint16_t> next;  // successors, grouped by step (see successor_list)
  std::vector<int> in_peers;        // the ranks it receives from, sorted: its channels
  std::vector<int> out_peers;       // the ranks it sends to, sorted
  // By out peer: this rank's channel at that receiver (its index in the
  // receiver's in_peers), or no_step if it never receives from this rank.
  std::vector<std::uint32_t> out_channels;
  std::size_t input_bytes = 0;
  std::size_t output_bytes = 0;
  std::size_t scratch_bytes = 0;
  // The largest size that divides every buffer size and every offset and
  // size its steps use (see sim::detail::cells_of).
  std::uint64_t granule = 0;
  // Bytes its steps read and write, each operand counted: what walking
  // them cell by cell costs (see symbolic_options::most_cells_per_step).
  std::uint64_t bytes_touched = 0;

  [[nodiscard]] successor_list successors(std::uint32_t i) const {
    const std::size_t end = i + 1 < ops.size() ? ops[i + 1].first_next : next.size();
    return {next.data() + ops[i].first_next, next.data() + end, i};
  }

  // The rank a send goes to or a receive comes from.
  [[nodiscard]] int peer(const op& o) const {
    return (o.kind == algorithm::step_kind::send ? out_peers : in_peers)[o.channel];
  }

  // A send's channel at its receiver, or no_step if the receiver never
  // receives from this rank.
  [[nodiscard]] std::uint32_t channel_at_receiver(const op& o) const { return out_channels[o.channel]; }

  // Distinct peers it sends to or receives from: the connections it needs.
  [[nodiscard]] std::size_t connections() const {
    std::size_t shared = 0;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < in_peers.size() && j < out_peers.size()) {
      if (in_peers[i] == out_peers[j]) {
        ++shared;
        ++i;
        ++j;
      } else if (in_peers[i] < out_peers[j]) {
        ++i;
      } else {
        ++j;
      }
    }
    return in_peers.size() + out_peers.size() - shared;
  }
};

struct world {
  algorithm::collective kind = algorithm::collective::all_reduce;
  int size = 0;
  std::vector<program> ranks;

  [[nodiscard]] std::size_t steps() const {
    std::size_t total = 0;
    for (const program& p : ranks) total += p.ops.size();
    return total;
  }
};

constexpr std::string_view to_string(algorithm::step_kind k) noexcept {
  switch (k) {
    case algorithm::step_kind::send: return "send";
    case algorithm::step_kind::recv: return "recv";
    case algorithm::step_kind::reduce: return "reduce";
    case algorithm::step_kind::copy: return "copy";
  }
  return "unknown";
}

namespace detail {

// gcd(g, x), without a gcd's loop when g divides x, as it does for almost
// every offset of a schedule (a third of compiling one otherwise).
inline std::uint64_t fold_granule(std::uint64_t g, std::uint64_t x) noexcept {
  const bool divides = g != 0 && ((g & (g - 1)) == 0 ? (x & (g - 1)) == 0 : x % g == 0);
  return divides ? g : std::gcd(g, x);
}

inline std::uint32_t narrow(std::size_t value, std::string_view what, int rank) {
  if (value > std::numeric_limits<std::uint32_t>::max()) {
    tutti::detail::fail(errc::invalid_argument, "sim: rank ", rank, ": ", what, " ", value,
                        " does not fit in 32 bits (the simulator handles buffers up to 4 GiB)");
  }
  return static_cast<std::uint32_t>(value);
}

// Per-peer scratch reused across ranks while compiling a world.
struct compile_scratch {
  std::vector<std::uint32_t> last_send;
  std::vector<std::uint32_t> last_recv;
  std::vector<std::uint32_t> degree;
};

}  // namespace detail

// Packs rank `rank`'s schedule. Peers outside the world are rejected here;
// everything else (ranges, sizes, matching) is for the simulators to report.
inline program compile(const algorithm::schedule& s, const algorithm::collective_args& a,
                       detail::compile_scratch& scratch) {
  const int rank = a.rank;
  const int n = a.size;
  program p;
  p.input_bytes = algorithm::input_bytes(a);
  p.output_bytes = algorithm::output_bytes(a);
  p.scratch_bytes = s.scratch_bytes;
  std::uint64_t g = std::gcd(p.input_bytes, std::gcd(p.output_bytes, p.scratch_bytes));
  const std::size_t count = s.steps.size();
  detail::narrow(count, "step count", rank);
  p.ops.resize(count);
  scratch.last_send.assign(static_cast<std::size_t>(n), no_step);
  scratch.last_recv.assign(static_cast<std::size_t>(n), no_step);
  scratch.degree.assign(count, 0);
  // First pass: the ops, their predecessor counts and their predecessors'
  // out-degrees; the channel predecessors are remembered in `channel` (for
  // now) so the second pass need not redo the per-peer bookkeeping.
  for (std::size_t i = 0; i < count; ++i) {
    const algorithm::step& st = s.steps[i];
    op& o = p.ops[i];
    o.kind = st.kind;
    o.src = detail::narrow(st.src.offset, "offset", rank);
    o.dst = detail::narrow(st.dst.offset, "offset", rank);
    o.src_buf = st.src.where;
    o.dst_buf = st.dst.where;
    o.lhs_buf = st.lhs.where;
    o.bytes = detail::narrow(st.bytes, "message size", rank);
    if (o.kind != algorithm::step_kind::recv) g = detail::fold_granule(g, o.src);
    if (o.kind != algorithm::step_kind::send) g = detail::fold_granule(g, o.dst);
    g = detail::fold_granule(g, o.bytes);
    p.bytes_touched += std::uint64_t{o.bytes} * (o.kind == algorithm::step_kind::reduce ? 3
                                                 : o.kind == algorithm::step_kind::copy ? 2
                                                                                        : 1);
    std::uint32_t waits = 0;
    for (const std::uint32_t d : s.dependencies_of(st)) {
      if (d >= i) {
        tutti::detail::fail(errc::invalid_argument, "sim: rank ", rank, " step ", i, " depends on later step ", d);
      }
      scratch.degree[d] += detail::successor_entries(static_cast<std::uint32_t>(i) - d);
      ++waits;
    }
    if (st.kind == algorithm::step_kind::reduce) {
      o.lhs = detail::narrow(st.lhs.offset, "offset", rank);
      g = detail::fold_granule(g, o.lhs);
    } else if (st.kind == algorithm::step_kind::send || st.kind == algorithm::step_kind::recv) {
      if (st.peer < 0 || st.peer >= n || st.peer == rank) {
        tutti::detail::fail(errc::invalid_argument, "sim: rank ", rank, " step ", i, " (", to_string(st.kind),
                            ") has invalid peer ", st.peer);
      }
      auto& last = st.kind == algorithm::step_kind::send ? scratch.last_send : scratch.last_recv;
      std::uint32_t& previous = last[static_cast<std::size_t>(st.peer)];
      o.channel = previous;
      if (previous != no_step) {
        scratch.degree[previous] += detail::successor_entries(static_cast<std::uint32_t>(i) - previous);
        ++waits;
      } else {
        (st.kind == algorithm::step_kind::send ? p.out_peers : p.in_peers).push_back(st.peer);
      }
      previous = static_cast<std::uint32_t>(i);
    }
    if (waits >= op::done) {
      tutti::detail::fail(errc::invalid_argument, "sim: rank ", rank, " step ", i, " waits for ", waits,
                          " steps; the simulator handles fewer than ", op::done);
    }
    o.waits = waits & op::done;  // below op::done, as just checked
  }
  p.granule = g;
  std::size_t entries = 0;
  for (std::size_t i = 0; i < count; ++i) {
    p.ops[i].first_next = detail::narrow(entries, "successor entries", rank);
    entries += scratch.degree[i];
    scratch.degree[i] = p.ops[i].first_next;  // now: where its next successor goes
  }
  p.next.resize(detail::narrow(entries, "successor entries", rank));
  // Appends successor `to` to step `from`'s list.
  const auto link = [&](std::uint32_t from, std::uint32_t to) {
    detail::put_successor(p.next.data() + scratch.degree[from], to - from);
    scratch.degree[from] += detail::successor_entries(to - from);
  };
  std::sort(p.in_peers.begin(), p.in_peers.end());
  std::sort(p.out_peers.begin(), p.out_peers.end());
  for (std::size_t i = 0; i < count; ++i) {
    const auto self = static_cast<std::uint32_t>(i);
    for (const std::uint32_t d : s.dependencies_of(s.steps[i])) link(d, self);
    op& o = p.ops[i];
    if (o.kind != algorithm::step_kind::send && o.kind != algorithm::step_kind::recv) continue;
    if (o.channel != no_step) link(o.channel, self);
    const auto& peers = o.kind == algorithm::step_kind::send ? p.out_peers : p.in_peers;
    o.channel =
        static_cast<std::uint32_t>(std::lower_bound(peers.begin(), peers.end(), s.steps[i].peer) - peers.begin());
  }
  return p;
}

// Links every sender's channels to its receivers', once all ranks are compiled.
inline void connect(world& w) {
  for (std::size_t r = 0; r < w.ranks.size(); ++r) {
    program& p = w.ranks[r];
    p.out_channels.clear();
    for (const int peer : p.out_peers) {
      const auto& in = w.ranks[static_cast<std::size_t>(peer)].in_peers;
      const auto it = std::lower_bound(in.begin(), in.end(), static_cast<int>(r));
      p.out_channels.push_back(
          it != in.end() && *it == static_cast<int>(r) ? static_cast<std::uint32_t>(it - in.begin()) : no_step);
    }
  }
}

// Builds and compiles every rank's schedule of `algorithm`: rank r's
// arguments are args_of(r) (they differ only in rank, except all_to_all_v's
// counts), which must be safe to call from several threads. Schedules are
// pure functions of their arguments, so ranks are built on every core
// (building is still 3 s of a 4096-rank ring's 7 s proof); a failure
// is reported for the lowest rank that failed, as a serial build would.
inline world build_world(std::string_view algorithm_name, const std::function<algorithm::collective_args(int)>& args_of,
                         int size) {
  if (size < 1) tutti::detail::fail(errc::invalid_argument, "sim: world size ", size, " is not positive");
  world w;
  w.size = size;
  w.kind = args_of(0).kind;
  w.ranks.resize(static_cast<std::size_t>(size));
  constexpr int ranks_per_worker = 64;  // below that, a thread costs more than it saves
  const int workers =
      std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, std::max(1, size / ranks_per_worker));
  std::vector<std::pair<int, std::exception_ptr>> failures(static_cast<std::size_t>(workers), {size, nullptr});
  auto build_share = [&](int worker) {
    detail::compile_scratch scratch;
    for (int r = worker; r < size; r += workers) {
      try {
        const algorithm::collective_args a = args_of(r);
        if (a.rank != r || a.size != size) {
          tutti::detail::fail(errc::invalid_argument, "sim: args_of(", r, ") gave rank ", a.rank, " of ", a.size);
        }
        algorithm::schedule s = algorithm::build(algorithm_name, a);
        w.ranks[static_cast<std::size_t>(r)] = compile(s, a, scratch);
        algorithm::recycle(std::move(s));
      } catch (...) {
        failures[static_cast<std::size_t>(worker)] = {r, std::current_exception()};
        break;
      }
    }
    algorithm::recycle({});  // frees what the last schedule left to this thread
  };
  std::vector<std::thread> threads;
  for (int k = 1; k < workers; ++k) threads.emplace_back(build_share, k);
  build_share(0);
  for (auto& t : threads) t.join();
  const auto first = std::min_element(failures.begin(), failures.end(),
                                      [](const auto& x, const auto& y) { return x.first < y.first; });
  if (first->second) std::rethrow_exception(first->second);
  connect(w);
  return w;
}

// The same for a world whose ranks differ only in rank.
inline world build_world(std::string_view algorithm_name, const algorithm::collective_args& base) {
  return build_world(
      algorithm_name,
      [&](int r) {
        algorithm::collective_args a = base;
        a.rank = r;
        return a;
      },
      base.size);
}

// A world from schedules built by hand (tests of the simulator itself).
inline world world_of(const std::vector<algorithm::schedule>& schedules, const algorithm::collective_args& base) {
  world w;
  w.kind = base.kind;
  w.size = static_cast<int>(schedules.size());
  detail::compile_scratch scratch;
  for (int r = 0; r < w.size; ++r) {
    algorithm::collective_args a = base;
    a.rank = r;
    a.size = w.size;
    w.ranks.push_back(compile(schedules[static_cast<std::size_t>(r)], a, scratch));
  }
  connect(w);
  return w;
}

}  // namespace tutti::sim
