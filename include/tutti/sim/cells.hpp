// The choice of how a symbolic proof keeps a world's buffers: as cells
// (cell_map) or as segments (segment_map), see symbolic_options. A part of
// its own because it is made from the world's programs alone, before the
// run, which only gets its granule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>

#include <tutti/sim/program.hpp>
#include <tutti/sim/symbolic_options.hpp>

namespace tutti::sim::detail {

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

}  // namespace tutti::sim::detail
