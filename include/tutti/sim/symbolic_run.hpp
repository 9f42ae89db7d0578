// The run of a symbolic proof (symbolic.hpp): ranks take turns, each
// running its ready steps in a random order, on one thread or several
// trading messages (symbolic_workers.hpp), and every step moves or
// combines symbolic values the way the executor would move data. A part of
// its own: it is the hot loop, tuned for speed and memory at 4096 ranks.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <numeric>
#include <ostream>
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
#include <tutti/sim/symbolic_channels.hpp>
#include <tutti/sim/symbolic_checks.hpp>
#include <tutti/sim/symbolic_options.hpp>
#include <tutti/sim/symbolic_workers.hpp>

namespace tutti::sim::detail {

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
    for (int t = 0; t < threads; ++t) workers_.push_back(std::make_unique<symbolic_worker>(t, threads, options_.seed));
    owner_.resize(count);
    for (int r = 0; r < n; ++r) {
      owner_[ix(r)] = static_cast<int>(static_cast<std::int64_t>(place_[ix(r)]) * threads / n);
    }
    track_knowledge_ = w_.kind == algorithm::collective::barrier;
    ranks_.reserve(count);
    for (int r = 0; r < n; ++r) {
      const program& p = rank_program(r);
      symbolic_worker& owner = worker_of(r);
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
    exchange_.open(threads);
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; ++t) helpers.emplace_back([this, t] { work(t); });
    work(0);
    for (std::thread& h : helpers) h.join();
    if (exchange_.error()) std::rethrow_exception(exchange_.error());
    symbolic_checks<Buffer> checks(w_, args_of_, sets_, ranks_, failed_, workers_.front()->problems);
    if (!failed()) checks.report_leftovers();
    if (!failed()) checks.check_results(workers_, track_knowledge_);
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
  static std::size_t ix(int r) noexcept { return static_cast<std::size_t>(r); }

  // Threads for this world: options_.threads, or with 0 one per core as
  // far as each gets ranks_per_thread ranks.
  [[nodiscard]] int thread_count() const {
    if (options_.threads > 0) return std::min(options_.threads, w_.size);
    constexpr int ranks_per_thread = 256;
    const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    return std::clamp(w_.size / ranks_per_thread, 1, cores);
  }

  symbolic_worker& worker_of(int r) { return *workers_[ix(owner_[ix(r)])]; }

  // One thread's share of the run: turns over its ranks, trading messages
  // with the other threads between ranks, until no thread has a step left
  // to run or one finds a problem.
  void work(int t) {
    symbolic_worker& me = *workers_[ix(t)];
    try {
      while (!failed()) {
        take_mail(me);
        if (me.next_turn.empty()) {
          if (!exchange_.rest(t)) break;
          continue;
        }
        std::swap(me.turn, me.next_turn);
        me.next_turn.clear();
        std::sort(me.turn.begin(), me.turn.end(), [&](int x, int y) { return place_[ix(x)] < place_[ix(y)]; });
        for (const int r : me.turn) {
          run_rank(me, r);
          exchange_.post_mail(me);
          if (failed()) break;
        }
      }
    } catch (...) {
      exchange_.keep_error(std::current_exception());
      failed_ = true;
    }
    if (failed()) exchange_.finish();
  }

  // Runs rank r until none of its steps is ready.
  void run_rank(symbolic_worker& me, int r) {
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

  // Delivers what other threads sent to `me`'s ranks.
  void take_mail(symbolic_worker& me) {
    exchange_.collect(me);
    for (const symbolic_delivery& d : me.mail.deliveries) {
      deliver(me, d.to, d.channel, d.m, std::span<const piece>(me.mail.pieces).subspan(d.m.first_piece, d.m.pieces));
    }
    me.mail.deliveries.clear();
    me.mail.pieces.clear();
  }

  // Puts a message in rank `to`'s channel; `me` runs that rank.
  void deliver(symbolic_worker& me, int to, std::uint32_t channel_index, symbolic_message m,
               std::span<const piece> pieces) {
    symbolic_channel& ch = ranks_[ix(to)].inbound[channel_index];
    m.first_piece = static_cast<std::uint32_t>(ch.pieces.size());
    ch.queue.push_back(m);
    ch.pieces.insert(ch.pieces.end(), pieces.begin(), pieces.end());
    if (ch.parked != no_step) {
      const std::uint32_t waiting = ch.parked;
      ch.parked = no_step;
      make_ready(me, to, waiting);
    }
  }

  Buffer make_buffer(symbolic_worker& owner, std::uint64_t bytes) {
    if constexpr (std::is_same_v<Buffer, segment_map>) {
      return segment_map(&owner.pool);
    } else {
      return Buffer(bytes, granule_);
    }
  }
  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] const program& rank_program(int r) const { return w_.ranks[ix(r)]; }

  std::ostream& problem(symbolic_worker& me) {
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

  // Which of `ready` ready steps runs next: a random one, or with seed 0
  // the last to become ready.
  std::size_t pick(symbolic_worker& me, std::size_t ready) {
    if (options_.seed == 0) return ready - 1;
    me.rng ^= me.rng << 13;
    me.rng ^= me.rng >> 7;
    me.rng ^= me.rng << 17;
    return static_cast<std::size_t>(me.rng % ready);
  }

  // Rank r, which `me` runs, may run step i.
  void make_ready(symbolic_worker& me, int r, std::uint32_t i) {
    const op& o = rank_program(r).ops[i];
    if (o.kind == algorithm::step_kind::recv) {
      symbolic_channel& ch = ranks_[ix(r)].inbound[o.channel];
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

  bool in_range(symbolic_worker& me, int r, std::uint32_t i, algorithm::buffer b, std::uint32_t offset,
                std::uint32_t bytes) {
    const std::size_t limit = limit_of(r, b);
    if (offset > limit || bytes > limit - offset) {
      problem(me) << describe_step(w_, r, i) << ": " << algorithm::to_string(b) << " bytes [" << offset << ", "
                  << std::size_t{offset} + bytes << ") outside its " << limit << " bytes\n";
      return false;
    }
    return true;
  }

  // Reads an operand; reports undefined bytes.
  bool read(symbolic_worker& me, int r, std::uint32_t i, algorithm::buffer b, std::uint32_t offset, std::uint32_t bytes,
            std::vector<piece>& out, const char* role) {
    out.clear();
    if (!in_range(me, r, i, b, offset, bytes)) return false;
    buffer_of(r, b).read(offset, bytes, out);
    std::uint64_t at = offset;
    for (const piece& p : out) {
      if (p.set == rank_sets::empty) {
        problem(me) << "undefined read: " << describe_step(w_, r, i) << " reads " << role << " "
                    << algorithm::to_string(b) << " bytes [" << at << ", " << at + p.length << "), never written\n";
        return false;
      }
      at += p.length;
    }
    return true;
  }

  void execute(symbolic_worker& me, int r, std::uint32_t i) {
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
          problem(me) << "unreceived message: " << describe_step(w_, r, i) << ", but rank " << peer
                      << " never receives from rank " << r << "\n";
          return;
        }
        const symbolic_message m{i, o.bytes, 0, static_cast<std::uint32_t>(operand[0].size()), known};
        const int to = owner_[ix(peer)];
        if (to == me.index) {
          deliver(me, peer, at_peer, m, operand[0]);
        } else {
          symbolic_mailbox& out = me.outbox[ix(to)];
          out.deliveries.push_back({peer, at_peer, m});
          out.deliveries.back().m.first_piece = static_cast<std::uint32_t>(out.pieces.size());
          out.pieces.insert(out.pieces.end(), operand[0].begin(), operand[0].end());
        }
        break;
      }
      case algorithm::step_kind::recv: {
        symbolic_channel& ch = ranks_[ix(r)].inbound[o.channel];
        const symbolic_message m = ch.queue[ch.head++];
        if (m.bytes != o.bytes) {
          problem(me) << "size mismatch: " << describe_step(w_, r, i) << " matched "
                      << describe_step(w_, p.peer(o), m.step) << "\n";
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
  bool combine(symbolic_worker& me, int r, std::uint32_t i) {
    const op& o = rank_program(r).ops[i];
    std::vector<piece>& out = me.operand[2];
    out.clear();
    return walk_together(me.operand[0], me.operand[1], [&](const piece& left, const piece& right, std::uint64_t at) {
      if (left.source != right.source) {
        problem(me) << "misplaced operands: " << describe_step(w_, r, i) << " at its byte " << at << " combines "
                    << algorithm::to_string(o.lhs_buf) << " byte " << o.lhs + at << " (byte " << left.source << " of "
                    << sets_.describe(left.set) << ") with " << algorithm::to_string(o.src_buf) << " byte "
                    << o.src + at << " (byte " << right.source << " of " << sets_.describe(right.set) << ")\n";
        return false;
      }
      const set_id joined = sets_.unite(left.set, right.set);
      if (joined == rank_sets::overlap) {
        problem(me) << "double contribution: " << describe_step(w_, r, i) << " combines " << sets_.describe(left.set)
                    << " (" << algorithm::to_string(o.lhs_buf) << " byte " << o.lhs + at << ") with "
                    << sets_.describe(right.set) << " (" << algorithm::to_string(o.src_buf) << " byte " << o.src + at
                    << "): they share ranks, whose data would be counted twice\n";
        return false;
      }
      out.push_back({left.length, joined, left.source});
      return true;
    });
  }

  world& w_;
  const args_function& args_of_;
  symbolic_options options_;
  std::uint64_t granule_;
  rank_sets sets_;
  std::vector<std::unique_ptr<symbolic_worker>> workers_;  // before ranks_: their segment maps use its pools
  std::vector<symbolic_rank<Buffer>> ranks_;               // by rank: written only by its thread
  std::vector<std::vector<std::uint32_t>> ready_;          // likewise
  std::vector<char> queued_;                               // likewise
  std::vector<std::vector<set_id>> knowledge_;             // likewise; barrier: per step, the ranks it has heard from
  std::vector<int> place_;                                 // by rank: its place in the turns
  std::vector<int> owner_;                                 // by rank: the thread that runs it
  bool track_knowledge_ = false;
  std::atomic<bool> failed_{false};
  symbolic_exchange exchange_;  // between threads
};

}  // namespace tutti::sim::detail
