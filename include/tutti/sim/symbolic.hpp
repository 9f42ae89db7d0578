// Symbolic simulation: runs every rank's schedule without payload and proves
// the final buffers right. Each byte holds a symbolic value (segments.hpp):
// the set of ranks whose contributions it sums and which byte of their data
// it is, so a wrong set, a block delivered to the wrong place and a
// contribution counted twice are all caught, and named by rank, step,
// buffer and byte offset.
//
// Values move like data: sends copy them into per-channel FIFOs, receives
// take them out (sizes must match), copies move them, and a reduce
// dst = op(lhs, src) needs both operands defined, at the same source byte,
// from disjoint sets of ranks, and yields the union. Any read of undefined
// bytes (a send, a copy or a reduce operand) is reported: the executor would
// move garbage.
//
// The order is deliberately not program order: ranks take turns, in rank
// order (a cluster's ring order, see run()), and in its turn a rank runs
// until none of its steps is ready (dependencies and channel order done),
// picking each next step at random (seeded) among all that are. So it runs
// its steps in any order they allow, and a step that relies on an order its
// dependencies do not state reads a stale or undefined value and is
// reported. Running a rank as far as it goes keeps its steps and buffers in
// cache: a ring's ranks each run a wave of steps per turn, not one. Sends
// complete at once (the channels buffer): a deadlock reported is one of the
// schedule itself.
//
// Big worlds run on every core: each thread runs the turns of its own run
// of consecutive places and hands messages for other threads' ranks over
// after each rank's turn (symbolic_options::threads). A rank's state is
// only ever touched by its thread, and the run ends when every thread
// rests with no message waiting.
//
// The proof is about the schedule's structure, not payload scale: use small
// elements and a count like size * k (see sim::proof_count), so that blocks
// and chunks are non-trivial but a 4096-rank proof stays small.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/sim/rank_sets.hpp>
#include <tutti/sim/segments.hpp>

namespace tutti::sim {

struct symbolic_options {
  // Picks each rank's next ready step at random; 0: the last to be ready.
  std::uint64_t seed = 1;
  // all_reduce only: the input is the output itself, as when run in place.
  bool in_place = false;
  // Buffers are kept as cells (cell_map) when the whole world needs at most
  // this many, 12 bytes each: a 4096-rank ring all_reduce proof needs 34M
  // and proves nearly 3 times as fast as with segments. Beyond it, segments
  // (segment_map), whose memory follows the data's structure: every rank
  // gathering thousands of blocks would not fit as cells.
  std::uint64_t most_cells = std::uint64_t{1} << 26;
  // Segments too when steps touch more cells than this on average: a step
  // walks cells one by one but takes a run of segments whole. At 4096
  // ranks, Rabenseifner's rounds move halves of the vector (260 cells a
  // step) and prove 6 times as fast as segments, while a hierarchical
  // all_reduce's chunks (9 cells a step) prove twice as fast as cells.
  std::uint64_t most_cells_per_step = 128;
  // Threads that run ranks, each its share of consecutive places and all
  // trading messages; 0: one per core, as long as each gets 256 ranks or
  // more. With several, the order explored also depends on how the threads
  // meet, so a problem found may need the same thread count (or luck) to
  // show again; one thread runs one order per seed.
  int threads = 0;
};

struct symbolic_report {
  bool proven = false;
  std::string problems;  // empty when proven; else one line per problem
  std::size_t steps = 0;
  std::size_t messages = 0;
  std::size_t interned_sets = 0;
};

namespace detail {

using args_function = std::function<algorithm::collective_args(int)>;

// What decides how a world's buffers are kept.
struct world_cells {
  // The largest size, in bytes, that divides every offset and size the
  // world's steps and buffers use: a cell_map of that granule sees only
  // whole cells.
  std::uint64_t granule = 1;
  std::uint64_t cells = 0;    // of that size, in every buffer of the world
  std::uint64_t touched = 0;  // cells its steps walk, each operand counted
  std::uint64_t steps = 0;

  [[nodiscard]] bool fit(const symbolic_options& options) const noexcept {
    return cells <= options.most_cells && touched <= options.most_cells_per_step * std::max<std::uint64_t>(steps, 1);
  }
};

inline world_cells cells_of(const world& w) {
  world_cells out;
  std::uint64_t g = 0;
  for (const program& p : w.ranks) g = std::gcd(g, p.granule);
  out.granule = g == 0 ? 1 : g;
  for (const program& p : w.ranks) {
    out.cells += (p.input_bytes + p.output_bytes + p.scratch_bytes) / out.granule;
    out.touched += p.bytes_touched / out.granule;
    out.steps += p.ops.size();
  }
  return out;
}

// Walks two lists of pieces side by side, from byte 0 of each, in stretches
// where neither changes: visit(x, y, at) gets the two pieces cut to the
// stretch (length and source) and its offset, and returns false to stop. Empty pieces are skipped. Returns whether it
// walked to the end.
template <class Visit>
bool walk_together(std::span<const piece> xs, std::span<const piece> ys, Visit visit) {
  std::size_t i = 0;
  std::size_t j = 0;
  std::uint64_t used_x = 0;
  std::uint64_t used_y = 0;
  std::uint64_t at = 0;
  while (i < xs.size() && j < ys.size()) {
    if (xs[i].length == 0) {
      ++i;
      continue;
    }
    if (ys[j].length == 0) {
      ++j;
      continue;
    }
    const std::uint64_t length = std::min(xs[i].length - used_x, ys[j].length - used_y);
    const piece x{length, xs[i].set, xs[i].source + used_x};
    const piece y{length, ys[j].set, ys[j].source + used_y};
    if (!visit(x, y, at)) return false;
    at += length;
    used_x += length;
    used_y += length;
    if (used_x == xs[i].length) {
      ++i;
      used_x = 0;
    }
    if (used_y == ys[j].length) {
      ++j;
      used_y = 0;
    }
  }
  return true;
}

// Buffer is segment_map or cell_map (segments.hpp).
template <class Buffer>
class symbolic_run {
 public:
  symbolic_run(world& w, const args_function& args_of, const symbolic_options& options, std::uint64_t granule)
      : w_(w), args_of_(args_of), options_(options), granule_(granule) {}

  symbolic_report run() {
    const int n = w_.size;
    const auto count = static_cast<std::size_t>(n);
    // Sets in the order a cluster's rings follow (see rank_sets::relabel).
    // Turns follow that order too, so a ring's wave of steps runs through
    // many ranks in one turn.
    place_.resize(count);
    std::iota(place_.begin(), place_.end(), 0);
    if (const auto cluster = args_of_(0).cluster; cluster && cluster->host_count() > 1) {
      const std::vector<int> order = cluster->rail_aligned_order();
      sets_.relabel(order);
      for (std::size_t k = 0; k < order.size(); ++k) place_[ix(order[k])] = static_cast<int>(k);
    }
    // Each thread runs consecutive places, so a ring crosses between
    // threads only once per thread.
    const int threads = thread_count();
    for (int t = 0; t < threads; ++t) workers_.push_back(std::make_unique<worker>(t, threads, options_.seed));
    owner_.resize(count);
    for (int r = 0; r < n; ++r) {
      owner_[ix(r)] = static_cast<int>(static_cast<std::int64_t>(place_[ix(r)]) * threads / n);
    }
    track_knowledge_ = w_.kind == algorithm::collective::barrier;
    ranks_.reserve(count);
    for (int r = 0; r < n; ++r) {
      const program& p = rank_program(r);
      worker& owner = worker_of(r);
      // In place, the input is the output (resolve): no buffer of its own.
      ranks_.emplace_back(make_buffer(owner, options_.in_place ? 0 : p.input_bytes), make_buffer(owner, p.output_bytes),
                          make_buffer(owner, p.scratch_bytes), p.in_peers.size(), &owner.pool);
    }
    for (int r = 0; r < n; ++r) initialise(r);
    ready_.resize(count);
    queued_.assign(count, 0);
    if (track_knowledge_) {
      knowledge_.resize(count);
      for (int r = 0; r < n; ++r) knowledge_[ix(r)].assign(rank_program(r).ops.size(), sets_.single(r));
    }
    for (int r = 0; r < n; ++r) {
      const program& p = rank_program(r);
      for (std::uint32_t i = 0; i < p.ops.size(); ++i) {
        if (p.ops[i].waits == 0) make_ready(worker_of(r), r, i);
      }
    }
    inbox_.resize(ix(threads));
    sleeping_.assign(ix(threads), 0);
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; ++t) helpers.emplace_back([this, t] { work(t); });
    work(0);
    for (std::thread& h : helpers) h.join();
    if (error_) std::rethrow_exception(error_);
    worker& first = *workers_.front();
    if (!failed()) report_leftovers(first);
    if (!failed()) check_results(first);
    symbolic_report out;
    out.proven = !failed();
    for (const auto& w : workers_) {
      out.problems += std::move(w->problems).str();
      out.steps += w->executed;
      out.messages += w->messages;
    }
    out.interned_sets = sets_.interned();
    return out;
  }

 private:
  static constexpr std::size_t max_listed = 8;

  struct message {
    std::uint32_t step;
    std::uint32_t bytes;
    std::uint32_t first_piece;
    std::uint32_t pieces;
    set_id knowledge;
  };

  // Messages from one peer, in order; their pieces in one vector.
  struct channel {
    explicit channel(std::pmr::memory_resource* pool) : queue(pool), pieces(pool) {}
    std::pmr::vector<message> queue;
    std::pmr::vector<piece> pieces;
    std::size_t head = 0;
    std::uint32_t parked = no_step;  // a receive waiting for a message

    [[nodiscard]] bool empty() const noexcept { return head == queue.size(); }

    // Forgets the messages received once they are half the queue: a sender
    // that stays ahead keeps a channel from ever draining, and its queue
    // would otherwise hold every message of the run. A drained channel
    // keeps room for a few messages only, and gives the rest back to its
    // thread's pool: in a ring's first turns rank k gets k messages at
    // once, and every channel keeping room for its largest backlog held
    // 400 MB at 4096 ranks, while the backlogs come one after another.
    void drop_received() {
      constexpr std::size_t kept = 64;
      if (empty()) {
        if (queue.capacity() > kept) {
          std::pmr::vector<message>(queue.get_allocator()).swap(queue);
          std::pmr::vector<piece>(pieces.get_allocator()).swap(pieces);
        } else {
          queue.clear();
          pieces.clear();
        }
        head = 0;
        return;
      }
      if (head < 16 || 2 * head < queue.size()) return;
      const std::uint32_t first = queue[head].first_piece;
      queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(head));
      pieces.erase(pieces.begin(), pieces.begin() + first);
      for (message& m : queue) m.first_piece -= first;
      head = 0;
    }
  };

  struct rank_state {
    rank_state(Buffer input, Buffer output, Buffer scratch, std::size_t channels, std::pmr::memory_resource* pool)
        : buffers{std::move(input), std::move(output), std::move(scratch)} {
      inbound.reserve(channels);
      for (std::size_t c = 0; c < channels; ++c) inbound.emplace_back(pool);
    }
    Buffer buffers[3];
    std::vector<channel> inbound;
    std::size_t done = 0;
  };

  // A message for a rank another thread runs.
  struct delivery {
    int to;
    std::uint32_t channel;
    message m;  // m.first_piece: into the mailbox's pieces
  };
  struct mailbox {
    std::vector<delivery> deliveries;
    std::vector<piece> pieces;
  };

  // What one thread of the run keeps to itself.
  struct alignas(64) worker {  // a line of its own: its counters change every step
    worker(int number, int threads, std::uint64_t seed)
        : index(number),
          rng((seed * std::uint64_t{0x9e3779b97f4a7c15} + 1) ^
              (static_cast<std::uint64_t>(number) * std::uint64_t{0xbf58476d1ce4e5b9})),
          outbox(static_cast<std::size_t>(threads)) {
      if (rng == 0) rng = 1;
    }
    int index;
    std::uint64_t rng;
    // Its ranks' segment maps and channels. Blocks up to 1 MiB stay in the
    // pool when freed, for the next channel that grows: freed to malloc,
    // they went back to the system and came back as new page faults.
    std::pmr::unsynchronized_pool_resource pool{std::pmr::pool_options{0, std::size_t{1} << 20}};
    std::vector<int> turn;
    std::vector<int> next_turn;
    int running = -1;  // the rank whose turn it is: its new ready steps run in this turn
    std::vector<piece> operand[3];
    std::vector<mailbox> outbox;  // by thread: sent to its ranks, not yet posted
    mailbox mail;                 // taken from its inbox, being delivered
    std::ostringstream problems;
    std::vector<std::pair<int, set_id>> final_knowledge;  // barrier: per executed step
    std::size_t executed = 0;
    std::size_t messages = 0;
  };

  static std::size_t ix(int r) noexcept { return static_cast<std::size_t>(r); }

  // Threads for this world: options_.threads, or with 0 one per core as
  // far as each gets ranks_per_thread ranks.
  [[nodiscard]] int thread_count() const {
    if (options_.threads > 0) return std::min(options_.threads, w_.size);
    constexpr int ranks_per_thread = 256;
    const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    return std::clamp(w_.size / ranks_per_thread, 1, cores);
  }

  worker& worker_of(int r) { return *workers_[ix(owner_[ix(r)])]; }

  // One thread's share of the run: turns over its ranks, trading messages
  // with the other threads between ranks, until no thread has a step left
  // to run or one finds a problem.
  void work(int t) {
    worker& me = *workers_[ix(t)];
    try {
      while (!failed()) {
        take_mail(me);
        if (me.next_turn.empty()) {
          if (!rest(t)) break;
          continue;
        }
        std::swap(me.turn, me.next_turn);
        me.next_turn.clear();
        std::sort(me.turn.begin(), me.turn.end(), [&](int x, int y) { return place_[ix(x)] < place_[ix(y)]; });
        for (const int r : me.turn) {
          run_rank(me, r);
          post_mail(me);
          if (failed()) break;
        }
      }
    } catch (...) {
      const std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_ = true;
    }
    if (failed()) {
      const std::lock_guard lock(mutex_);
      finished_ = true;
      wake_.notify_all();
    }
  }

  // Runs rank r until none of its steps is ready.
  void run_rank(worker& me, int r) {
    queued_[ix(r)] = 0;
    me.running = r;
    std::vector<std::uint32_t>& ready = ready_[ix(r)];
    while (!ready.empty() && !failed()) {
      std::swap(ready[pick(me, ready.size())], ready.back());
      const std::uint32_t i = ready.back();
      ready.pop_back();
      execute(me, r, i);
    }
    me.running = -1;
  }

  // Hands what `me` sent to other threads' ranks to their inboxes, waking
  // those that rest.
  void post_mail(worker& me) {
    if (std::all_of(me.outbox.begin(), me.outbox.end(), [](const mailbox& m) { return m.deliveries.empty(); })) return;
    const std::lock_guard lock(mutex_);
    bool woken = false;
    for (std::size_t u = 0; u < me.outbox.size(); ++u) {
      mailbox& out = me.outbox[u];
      if (out.deliveries.empty()) continue;
      mailbox& in = inbox_[u];
      const auto shift = static_cast<std::uint32_t>(in.pieces.size());
      for (delivery d : out.deliveries) {
        d.m.first_piece += shift;
        in.deliveries.push_back(d);
      }
      in.pieces.insert(in.pieces.end(), out.pieces.begin(), out.pieces.end());
      out.deliveries.clear();
      out.pieces.clear();
      if (sleeping_[u] != 0) {
        sleeping_[u] = 0;
        --asleep_;
        woken = true;
      }
    }
    if (woken) wake_.notify_all();
  }

  // Delivers what other threads sent to `me`'s ranks.
  void take_mail(worker& me) {
    {
      const std::lock_guard lock(mutex_);
      std::swap(me.mail, inbox_[ix(me.index)]);
    }
    for (const delivery& d : me.mail.deliveries) {
      deliver(me, d.to, d.channel, d.m, std::span<const piece>(me.mail.pieces).subspan(d.m.first_piece, d.m.pieces));
    }
    me.mail.deliveries.clear();
    me.mail.pieces.clear();
  }

  // Waits, with nothing to run, for mail; false once every thread rests
  // with none (the run is over) or the run failed.
  bool rest(int t) {
    std::unique_lock lock(mutex_);
    if (!inbox_[ix(t)].deliveries.empty()) return true;
    if (finished_) return false;
    sleeping_[ix(t)] = 1;
    if (++asleep_ == static_cast<int>(workers_.size())) {
      finished_ = true;
      wake_.notify_all();
      return false;
    }
    wake_.wait(lock, [&] { return sleeping_[ix(t)] == 0 || finished_; });
    return !finished_;
  }

  // Puts a message in rank `to`'s channel; `me` runs that rank.
  void deliver(worker& me, int to, std::uint32_t channel_index, message m, std::span<const piece> pieces) {
    channel& ch = ranks_[ix(to)].inbound[channel_index];
    m.first_piece = static_cast<std::uint32_t>(ch.pieces.size());
    ch.queue.push_back(m);
    ch.pieces.insert(ch.pieces.end(), pieces.begin(), pieces.end());
    if (ch.parked != no_step) {
      const std::uint32_t waiting = ch.parked;
      ch.parked = no_step;
      make_ready(me, to, waiting);
    }
  }

  Buffer make_buffer(worker& owner, std::uint64_t bytes) {
    if constexpr (std::is_same_v<Buffer, segment_map>) {
      return segment_map(&owner.pool);
    } else {
      return Buffer(bytes, granule_);
    }
  }
  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] const program& rank_program(int r) const { return w_.ranks[ix(r)]; }

  std::ostream& problem(worker& me) {
    failed_ = true;
    return me.problems;
  }

  void initialise(int r) {
    const algorithm::collective_args a = args_of_(r);
    const program& p = rank_program(r);
    const set_id self = sets_.single(r);
    switch (w_.kind) {
      case algorithm::collective::broadcast:
        if (r == a.root) buffer_of(r, algorithm::buffer::output).fill(0, p.output_bytes, self, 0);
        break;
      case algorithm::collective::barrier: break;
      default: buffer_of(r, algorithm::buffer::input).fill(0, p.input_bytes, self, 0); break;
    }
  }

  [[nodiscard]] algorithm::buffer resolve(algorithm::buffer b) const noexcept {
    return options_.in_place && b == algorithm::buffer::input ? algorithm::buffer::output : b;
  }

  Buffer& buffer_of(int r, algorithm::buffer b) { return ranks_[ix(r)].buffers[static_cast<int>(resolve(b))]; }

  [[nodiscard]] std::size_t limit_of(int r, algorithm::buffer b) const {
    const program& p = rank_program(r);
    switch (resolve(b)) {
      case algorithm::buffer::input: return p.input_bytes;
      case algorithm::buffer::output: return p.output_bytes;
      case algorithm::buffer::scratch: return p.scratch_bytes;
    }
    return 0;
  }

  std::string describe(int r, std::uint32_t i) const {
    const program& p = rank_program(r);
    const op& o = p.ops[i];
    std::ostringstream out;
    out << "rank " << r << " step " << i << " (" << to_string(o.kind);
    if (o.kind == algorithm::step_kind::send) out << " to " << p.peer(o);
    if (o.kind == algorithm::step_kind::recv) out << " from " << p.peer(o);
    out << ", " << o.bytes << " bytes)";
    return std::move(out).str();
  }

  // Which of `ready` ready steps runs next: a random one, or with seed 0
  // the last to become ready.
  std::size_t pick(worker& me, std::size_t ready) {
    if (options_.seed == 0) return ready - 1;
    me.rng ^= me.rng << 13;
    me.rng ^= me.rng >> 7;
    me.rng ^= me.rng << 17;
    return static_cast<std::size_t>(me.rng % ready);
  }

  // Rank r, which `me` runs, may run step i.
  void make_ready(worker& me, int r, std::uint32_t i) {
    const op& o = rank_program(r).ops[i];
    if (o.kind == algorithm::step_kind::recv) {
      channel& ch = ranks_[ix(r)].inbound[o.channel];
      if (ch.empty()) {
        ch.parked = i;
        return;
      }
    }
    ready_[ix(r)].push_back(i);
    if (r != me.running && queued_[ix(r)] == 0) {
      queued_[ix(r)] = 1;
      me.next_turn.push_back(r);
    }
  }

  bool in_range(worker& me, int r, std::uint32_t i, algorithm::buffer b, std::uint32_t offset, std::uint32_t bytes) {
    const std::size_t limit = limit_of(r, b);
    if (offset > limit || bytes > limit - offset) {
      problem(me) << describe(r, i) << ": " << algorithm::to_string(b) << " bytes [" << offset << ", "
                  << std::size_t{offset} + bytes << ") outside its " << limit << " bytes\n";
      return false;
    }
    return true;
  }

  // Reads an operand; reports undefined bytes.
  bool read(worker& me, int r, std::uint32_t i, algorithm::buffer b, std::uint32_t offset, std::uint32_t bytes,
            std::vector<piece>& out, const char* role) {
    out.clear();
    if (!in_range(me, r, i, b, offset, bytes)) return false;
    buffer_of(r, b).read(offset, bytes, out);
    std::uint64_t at = offset;
    for (const piece& p : out) {
      if (p.set == rank_sets::empty) {
        problem(me) << "undefined read: " << describe(r, i) << " reads " << role << " " << algorithm::to_string(b)
                    << " bytes [" << at << ", " << at + p.length << "), never written\n";
        return false;
      }
      at += p.length;
    }
    return true;
  }

  void execute(worker& me, int r, std::uint32_t i) {
    program& p = w_.ranks[ix(r)];
    op& o = p.ops[i];
    set_id known = track_knowledge_ ? knowledge_[ix(r)][i] : rank_sets::empty;
    std::vector<piece>* operand = me.operand;
    switch (o.kind) {
      case algorithm::step_kind::send: {
        if (!read(me, r, i, o.src_buf, o.src, o.bytes, operand[0], "its source")) return;
        ++me.messages;
        const int peer = p.peer(o);
        const std::uint32_t at_peer = p.channel_at_receiver(o);
        if (at_peer == no_step) {
          problem(me) << "unreceived message: " << describe(r, i) << ", but rank " << peer
                      << " never receives from rank " << r << "\n";
          return;
        }
        const message m{i, o.bytes, 0, static_cast<std::uint32_t>(operand[0].size()), known};
        const int to = owner_[ix(peer)];
        if (to == me.index) {
          deliver(me, peer, at_peer, m, operand[0]);
        } else {
          mailbox& out = me.outbox[ix(to)];
          out.deliveries.push_back({peer, at_peer, m});
          out.deliveries.back().m.first_piece = static_cast<std::uint32_t>(out.pieces.size());
          out.pieces.insert(out.pieces.end(), operand[0].begin(), operand[0].end());
        }
        break;
      }
      case algorithm::step_kind::recv: {
        channel& ch = ranks_[ix(r)].inbound[o.channel];
        const message m = ch.queue[ch.head++];
        if (m.bytes != o.bytes) {
          problem(me) << "size mismatch: " << describe(r, i) << " matched " << describe(p.peer(o), m.step) << "\n";
          return;
        }
        if (!in_range(me, r, i, o.dst_buf, o.dst, o.bytes)) return;
        buffer_of(r, o.dst_buf).write(o.dst, std::span<const piece>(ch.pieces).subspan(m.first_piece, m.pieces));
        ch.drop_received();
        if (track_knowledge_) known = sets_.unite(known, m.knowledge, true);
        break;
      }
      case algorithm::step_kind::copy: {
        if (!read(me, r, i, o.src_buf, o.src, o.bytes, operand[0], "its source")) return;
        if (!in_range(me, r, i, o.dst_buf, o.dst, o.bytes)) return;
        buffer_of(r, o.dst_buf).write(o.dst, operand[0]);
        break;
      }
      case algorithm::step_kind::reduce: {
        if (!read(me, r, i, o.lhs_buf, o.lhs, o.bytes, operand[0], "its left operand")) return;
        if (!read(me, r, i, o.src_buf, o.src, o.bytes, operand[1], "its right operand")) return;
        if (!in_range(me, r, i, o.dst_buf, o.dst, o.bytes)) return;
        if (!combine(me, r, i)) return;
        buffer_of(r, o.dst_buf).write(o.dst, operand[2]);
        break;
      }
    }
    ++me.executed;
    ++ranks_[ix(r)].done;
    o.waits = op::done;
    for (const std::uint32_t next : p.successors(i)) {
      if (track_knowledge_) knowledge_[ix(r)][next] = sets_.unite(knowledge_[ix(r)][next], known, true);
      op& after = p.ops[next];
      if (after.waits != op::done && --after.waits == 0) make_ready(me, r, next);
    }
    if (track_knowledge_) me.final_knowledge.emplace_back(r, known);
  }

  // me.operand[2] = op(me.operand[0], me.operand[1]), piece by piece.
  bool combine(worker& me, int r, std::uint32_t i) {
    const op& o = rank_program(r).ops[i];
    std::vector<piece>& out = me.operand[2];
    out.clear();
    return walk_together(me.operand[0], me.operand[1], [&](const piece& left, const piece& right, std::uint64_t at) {
      if (left.source != right.source) {
        problem(me) << "misplaced operands: " << describe(r, i) << " at its byte " << at << " combines "
                    << algorithm::to_string(o.lhs_buf) << " byte " << o.lhs + at << " (byte " << left.source << " of "
                    << sets_.describe(left.set) << ") with " << algorithm::to_string(o.src_buf) << " byte "
                    << o.src + at << " (byte " << right.source << " of " << sets_.describe(right.set) << ")\n";
        return false;
      }
      const set_id joined = sets_.unite(left.set, right.set);
      if (joined == rank_sets::overlap) {
        problem(me) << "double contribution: " << describe(r, i) << " combines " << sets_.describe(left.set) << " ("
                    << algorithm::to_string(o.lhs_buf) << " byte " << o.lhs + at << ") with "
                    << sets_.describe(right.set) << " (" << algorithm::to_string(o.src_buf) << " byte " << o.src + at
                    << "): they share ranks, whose data would be counted twice\n";
        return false;
      }
      out.push_back({left.length, joined, left.source});
      return true;
    });
  }

  // After the run, on one thread: `me` takes the report.
  void report_leftovers(worker& me) {
    std::ostream& problems = me.problems;
    const int n = w_.size;
    std::size_t listed_ranks = 0;
    for (int r = 0; r < n; ++r) {
      const program& p = rank_program(r);
      if (ranks_[ix(r)].done == p.ops.size()) continue;
      if (!failed()) problem(me) << "deadlock: no step can run, these remain:\n";
      if (++listed_ranks > max_listed) {
        problems << "  ... and more ranks\n";
        break;
      }
      std::size_t listed = 0;
      for (std::uint32_t i = 0; i < p.ops.size(); ++i) {
        const op& o = p.ops[i];
        if (o.waits == op::done) continue;
        if (++listed > 4) {
          problems << "  rank " << r << ": ... " << p.ops.size() - ranks_[ix(r)].done << " steps in all\n";
          break;
        }
        problems << "  " << describe(r, i);
        if (o.waits != 0) {
          problems << " waits for " << o.waits << " unfinished earlier steps (dependencies or channel order)";
        } else if (o.kind == algorithm::step_kind::recv) {
          problems << " waits for a message from rank " << p.peer(o) << " that never came";
        }
        problems << "\n";
      }
    }
    for (int r = 0; r < n; ++r) {
      const program& p = rank_program(r);
      for (std::size_t c = 0; c < p.in_peers.size(); ++c) {
        const channel& ch = ranks_[ix(r)].inbound[c];
        if (ch.empty()) continue;
        problem(me) << "unreceived message: rank " << r << " never received " << ch.queue.size() - ch.head
                    << " message(s) from rank " << p.in_peers[c] << ", the first sent by "
                    << describe(p.in_peers[c], ch.queue[ch.head].step) << "\n";
      }
    }
  }

  // What rank r's output must hold at the end, as pieces from byte 0.
  std::vector<piece> expected(int r) {
    const algorithm::collective_args a = args_of_(r);
    const int n = w_.size;
    const std::uint64_t es = a.element_size;
    const std::uint64_t block = a.count * es;
    const set_id all = sets_.range(0, n - 1);
    std::vector<piece> out;
    auto blocks_from_each = [&](const std::vector<std::size_t>& sizes, auto source_of) {
      for (int q = 0; q < n; ++q) out.push_back({sizes[ix(q)] * es, sets_.single(q), source_of(q)});
    };
    const auto offsets_of = [](const std::vector<std::size_t>& sizes) {
      std::vector<std::uint64_t> offsets(sizes.size() + 1, 0);
      for (std::size_t k = 0; k < sizes.size(); ++k) offsets[k + 1] = offsets[k] + sizes[k];
      return offsets;
    };
    switch (w_.kind) {
      case algorithm::collective::all_reduce: out.push_back({block, all, 0}); break;
      case algorithm::collective::reduce:
        if (r == a.root) out.push_back({block, all, 0});
        break;
      case algorithm::collective::broadcast: out.push_back({block, sets_.single(a.root), 0}); break;
      case algorithm::collective::all_gather:
        blocks_from_each(std::vector<std::size_t>(ix(n), a.count), [](int) { return std::uint64_t{0}; });
        break;
      case algorithm::collective::all_gather_v: blocks_from_each(a.counts, [](int) { return std::uint64_t{0}; }); break;
      case algorithm::collective::reduce_scatter: out.push_back({block, all, ix(r) * block}); break;
      case algorithm::collective::reduce_scatter_v: {
        const auto offsets = offsets_of(a.counts);
        out.push_back({a.counts[ix(r)] * es, all, offsets[ix(r)] * es});
        break;
      }
      case algorithm::collective::gather:
        if (r == a.root)
          blocks_from_each(std::vector<std::size_t>(ix(n), a.count), [](int) { return std::uint64_t{0}; });
        break;
      case algorithm::collective::scatter: out.push_back({block, sets_.single(a.root), ix(r) * block}); break;
      case algorithm::collective::all_to_all:
        blocks_from_each(std::vector<std::size_t>(ix(n), a.count), [&](int) { return ix(r) * block; });
        break;
      case algorithm::collective::all_to_all_v:
        // Block q comes from where q's input keeps what it sends to r.
        blocks_from_each(a.recv_counts, [&](int q) { return offsets_of(args_of_(q).counts)[ix(r)] * es; });
        break;
      case algorithm::collective::barrier: break;
    }
    return out;
  }

  void check_results(worker& me) {
    std::ostream& problems = me.problems;
    const int n = w_.size;
    std::size_t wrong = 0;
    std::vector<piece> got;
    for (int r = 0; r < n && wrong < max_listed; ++r) {
      const std::vector<piece> want = expected(r);
      std::uint64_t total = 0;
      for (const piece& p : want) total += p.length;
      got.clear();
      ranks_[ix(r)].buffers[static_cast<int>(algorithm::buffer::output)].read(0, total, got);
      walk_together(got, want, [&](const piece& have, const piece& need, std::uint64_t at) {
        if (have.set == need.set && (have.set == rank_sets::empty || have.source == need.source)) return true;
        problem(me) << "wrong result: rank " << r << " output bytes [" << at << ", " << at + have.length << ") hold ";
        if (have.set == rank_sets::empty) {
          problems << "nothing (never written)";
        } else {
          problems << sets_.describe(have.set) << " from their byte " << have.source;
        }
        problems << ", expected " << sets_.describe(need.set) << " from their byte " << need.source << "\n";
        ++wrong;
        return false;
      });
    }
    if (track_knowledge_) {
      std::vector<set_id> heard(ix(n), rank_sets::empty);
      for (const auto& w : workers_) {
        for (const auto& [r, known] : w->final_knowledge) heard[ix(r)] = sets_.unite(heard[ix(r)], known, true);
      }
      const set_id all = sets_.range(0, n - 1);
      for (int r = 0; r < n && wrong < max_listed; ++r) {
        if (heard[ix(r)] == all || n == 1) continue;
        problem(me) << "barrier incomplete: rank " << r << " finishes having heard only from "
                    << sets_.describe(heard[ix(r)]) << "\n";
        ++wrong;
      }
    }
  }

  world& w_;
  const args_function& args_of_;
  symbolic_options options_;
  std::uint64_t granule_;
  rank_sets sets_;
  std::vector<std::unique_ptr<worker>> workers_;   // before ranks_: their segment maps use its pools
  std::vector<rank_state> ranks_;                  // by rank: written only by its thread
  std::vector<std::vector<std::uint32_t>> ready_;  // likewise
  std::vector<char> queued_;                       // likewise
  std::vector<std::vector<set_id>> knowledge_;     // likewise; barrier: per step, the ranks it has heard from
  std::vector<int> place_;                         // by rank: its place in the turns
  std::vector<int> owner_;                         // by rank: the thread that runs it
  bool track_knowledge_ = false;
  std::atomic<bool> failed_{false};
  // Between threads, under mutex_:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<mailbox> inbox_;  // by thread: messages for its ranks
  std::vector<char> sleeping_;  // by thread: resting until mail comes
  int asleep_ = 0;
  bool finished_ = false;  // every thread rests with no mail, or the run failed
  std::exception_ptr error_;
};

}  // namespace detail

// Runs `w` symbolically and checks every rank's final output against the
// layout contract of collective.hpp. The world is consumed (steps are marked
// done in it). args_of(r) must be what rank r's schedule was built from.
inline symbolic_report prove(world& w, const detail::args_function& args_of, const symbolic_options& options = {}) {
  if (options.in_place && w.kind != algorithm::collective::all_reduce) {
    tutti::detail::fail(errc::invalid_argument, "sim: only all_reduce runs in place");
  }
  const detail::world_cells cells = detail::cells_of(w);
  if (cells.fit(options)) return detail::symbolic_run<cell_map>(w, args_of, options, cells.granule).run();
  return detail::symbolic_run<segment_map>(w, args_of, options, cells.granule).run();
}

inline symbolic_report prove(world& w, const algorithm::collective_args& base, const symbolic_options& options = {}) {
  const detail::args_function args_of = [&](int r) {
    algorithm::collective_args a = base;
    a.rank = r;
    return a;
  };
  return prove(w, args_of, options);
}

// A count for proofs: enough elements that every rank's block has `k`
// of them (and so does every chunk, with chunk_bytes = k * element_size),
// but never more than the real count.
inline std::size_t proof_count(std::size_t count, int size, std::size_t k = 2) {
  const std::size_t structural = static_cast<std::size_t>(size) * k;
  return std::min(count, structural);
}

}  // namespace tutti::sim
