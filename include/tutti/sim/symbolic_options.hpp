// What a symbolic proof (symbolic.hpp) is given and what it returns. A part
// of its own because every piece of the proof uses them: the choice of
// buffers (cells.hpp), the run (symbolic_run.hpp) and the entry points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <tutti/algorithm/collective.hpp>

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

// The arguments rank r's schedule was built from.
using args_function = std::function<algorithm::collective_args(int)>;

}  // namespace detail

}  // namespace tutti::sim
