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
#include <cstddef>

#include <tutti/algorithm/collective.hpp>
#include <tutti/error.hpp>
#include <tutti/sim/cells.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/sim/segments.hpp>
#include <tutti/sim/symbolic_options.hpp>
#include <tutti/sim/symbolic_run.hpp>

namespace tutti::sim {

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
