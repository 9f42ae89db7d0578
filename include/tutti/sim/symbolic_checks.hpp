// The verdict of a symbolic proof once its run (symbolic_run.hpp) is over:
// steps that never ran and messages never received, then every rank's
// output against the layout contract of collective.hpp. A part of its own
// because it reads nothing but the run's final state, on one thread; the
// run shares its way of naming steps and of walking pieces side by side.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/sim/rank_sets.hpp>
#include <tutti/sim/segments.hpp>
#include <tutti/sim/symbolic_channels.hpp>
#include <tutti/sim/symbolic_options.hpp>
#include <tutti/sim/symbolic_workers.hpp>

namespace tutti::sim::detail {

// How problems name step i of rank r.
inline std::string describe_step(const world& w, int r, std::uint32_t i) {
  const program& p = w.ranks[static_cast<std::size_t>(r)];
  const op& o = p.ops[i];
  std::ostringstream out;
  out << "rank " << r << " step " << i << " (" << to_string(o.kind);
  if (o.kind == algorithm::step_kind::send) out << " to " << p.peer(o);
  if (o.kind == algorithm::step_kind::recv) out << " from " << p.peer(o);
  out << ", " << o.bytes << " bytes)";
  return std::move(out).str();
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
class symbolic_checks {
 public:
  // Problems go to `problems` and set `failed`.
  symbolic_checks(const world& w, const args_function& args_of, rank_sets& sets,
                  const std::vector<symbolic_rank<Buffer>>& ranks, std::atomic<bool>& failed, std::ostream& problems)
      : w_(w), args_of_(args_of), sets_(sets), ranks_(ranks), failed_(failed), problems_(problems) {}

  // Steps that never ran (a deadlock of the schedule) and messages never
  // received.
  void report_leftovers() {
    const int n = w_.size;
    std::size_t listed_ranks = 0;
    for (int r = 0; r < n; ++r) {
      const program& p = w_.ranks[ix(r)];
      if (ranks_[ix(r)].done == p.ops.size()) continue;
      if (!failed()) problem() << "deadlock: no step can run, these remain:\n";
      if (++listed_ranks > max_listed) {
        problems_ << "  ... and more ranks\n";
        break;
      }
      std::size_t listed = 0;
      for (std::uint32_t i = 0; i < p.ops.size(); ++i) {
        const op& o = p.ops[i];
        if (o.waits == op::done) continue;
        if (++listed > 4) {
          problems_ << "  rank " << r << ": ... " << p.ops.size() - ranks_[ix(r)].done << " steps in all\n";
          break;
        }
        problems_ << "  " << describe_step(w_, r, i);
        if (o.waits != 0) {
          problems_ << " waits for " << o.waits << " unfinished earlier steps (dependencies or channel order)";
        } else if (o.kind == algorithm::step_kind::recv) {
          problems_ << " waits for a message from rank " << p.peer(o) << " that never came";
        }
        problems_ << "\n";
      }
    }
    for (int r = 0; r < n; ++r) {
      const program& p = w_.ranks[ix(r)];
      for (std::size_t c = 0; c < p.in_peers.size(); ++c) {
        const symbolic_channel& ch = ranks_[ix(r)].inbound[c];
        if (ch.empty()) continue;
        problem() << "unreceived message: rank " << r << " never received " << ch.queue.size() - ch.head
                  << " message(s) from rank " << p.in_peers[c] << ", the first sent by "
                  << describe_step(w_, p.in_peers[c], ch.queue[ch.head].step) << "\n";
      }
    }
  }

  // Every output against what it must hold; for a barrier (track_knowledge),
  // also that every rank heard from every other.
  void check_results(const std::vector<std::unique_ptr<symbolic_worker>>& workers, bool track_knowledge) {
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
        problem() << "wrong result: rank " << r << " output bytes [" << at << ", " << at + have.length << ") hold ";
        if (have.set == rank_sets::empty) {
          problems_ << "nothing (never written)";
        } else {
          problems_ << sets_.describe(have.set) << " from their byte " << have.source;
        }
        problems_ << ", expected " << sets_.describe(need.set) << " from their byte " << need.source << "\n";
        ++wrong;
        return false;
      });
    }
    if (track_knowledge) {
      std::vector<set_id> heard(ix(n), rank_sets::empty);
      for (const auto& w : workers) {
        for (const auto& [r, known] : w->final_knowledge) heard[ix(r)] = sets_.unite(heard[ix(r)], known, true);
      }
      const set_id all = sets_.range(0, n - 1);
      for (int r = 0; r < n && wrong < max_listed; ++r) {
        if (heard[ix(r)] == all || n == 1) continue;
        problem() << "barrier incomplete: rank " << r << " finishes having heard only from "
                  << sets_.describe(heard[ix(r)]) << "\n";
        ++wrong;
      }
    }
  }

 private:
  static constexpr std::size_t max_listed = 8;

  static std::size_t ix(int r) noexcept { return static_cast<std::size_t>(r); }

  [[nodiscard]] bool failed() const { return failed_; }

  std::ostream& problem() {
    failed_ = true;
    return problems_;
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

  const world& w_;
  const args_function& args_of_;
  rank_sets& sets_;
  const std::vector<symbolic_rank<Buffer>>& ranks_;
  std::atomic<bool>& failed_;
  std::ostream& problems_;
};

}  // namespace tutti::sim::detail
