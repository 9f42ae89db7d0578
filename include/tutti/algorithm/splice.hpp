// Splicing: one algorithm's schedule as a phase of another's. The
// hierarchical algorithms run a flat algorithm among a subgroup (one rail
// of hosts, the ranks of one host) over part of their buffers: they build
// the flat schedule for the subgroup, then re-add its steps to their own
// builder with the subgroup's peers turned into real ranks and its buffers
// into places in the outer buffers. Re-adding through the builder derives
// the dependencies again, now against the outer schedule's other steps too,
// so a phase starts on a block as soon as the previous phase is done with it.
//
// A buffer maps linearly (an offset) or block by block: inner block i,
// bytes [inner_offsets[i], inner_offsets[i + 1]), lands at targets[i]. A
// step spanning several blocks becomes one step per block. For a send that
// is only sound if the receiving member splits its receive alike, which the
// flat algorithms used here do: the same blocks are sent and received
// (ring, recursive doubling), or the receiving side maps linearly too. The
// simulator's symbolic proofs check every such pairing.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

class region_map {
 public:
  // Inner offset x lands at base + x.
  static region_map linear(region base) {
    region_map out;
    out.targets_ = {base};
    return out;
  }

  // Inner bytes [inner_offsets[i], inner_offsets[i + 1]) land at targets[i].
  static region_map blocks(std::vector<std::size_t> inner_offsets, std::vector<region> targets) {
    if (inner_offsets.size() != targets.size() + 1) {
      tutti::detail::fail(errc::invalid_argument, "region_map: ", targets.size(), " targets for ", inner_offsets.size(),
                          " block offsets");
    }
    region_map out;
    out.offsets_ = std::move(inner_offsets);
    out.targets_ = std::move(targets);
    return out;
  }

  // Where inner byte `offset` lands, and how many bytes from it on stay
  // contiguous (to the end of its block).
  [[nodiscard]] std::pair<region, std::size_t> locate(std::size_t offset) const {
    constexpr std::size_t unbounded = ~std::size_t{0};
    const region first = targets_.front();
    if (offsets_.empty()) return {{first.where, first.offset + offset}, unbounded};
    const auto next = std::upper_bound(offsets_.begin(), offsets_.end(), offset);
    if (next == offsets_.begin() || next == offsets_.end()) {
      tutti::detail::fail(errc::invalid_argument, "region_map: inner byte ", offset, " lies outside its ",
                          targets_.size(), " blocks");
    }
    const auto block = static_cast<std::size_t>(next - offsets_.begin()) - 1;
    const region target = targets_[block];
    return {{target.where, target.offset + (offset - offsets_[block])}, *next - offset};
  }

 private:
  std::vector<std::size_t> offsets_;  // empty: linear
  std::vector<region> targets_;
};

// Where each of the inner schedule's buffers (input, output, scratch) lands.
using buffer_maps = std::array<region_map, 3>;

// Re-adds `inner`'s steps to `b`: peer p becomes members[p], and each
// operand goes where `maps` puts its buffer. Scratch usually maps to a
// region the caller allocated (inner.scratch_bytes of it).
inline void splice(schedule_builder& b, const schedule& inner, std::span<const int> members, const buffer_maps& maps) {
  auto map_of = [&](region r) -> const region_map& { return maps[static_cast<std::size_t>(r.where)]; };
  for (const step& s : inner.steps) {
    // Dependencies come from byte ranges; a zero-byte message has none, so
    // its order came from a fence this cannot see.
    if (s.bytes == 0) tutti::detail::fail(errc::invalid_argument, "splice: a step of zero bytes cannot be spliced");
    const int peer = s.peer >= 0 ? members[static_cast<std::size_t>(s.peer)] : s.peer;
    const bool has_src = s.kind != step_kind::recv;
    const bool has_dst = s.kind != step_kind::send;
    const bool has_lhs = s.kind == step_kind::reduce;
    for (std::size_t done = 0; done < s.bytes;) {
      // The longest piece every operand keeps contiguous.
      std::size_t length = s.bytes - done;
      region src{}, dst{}, lhs{};
      if (has_src) {
        const auto [where, run] = map_of(s.src).locate(s.src.offset + done);
        src = where;
        length = std::min(length, run);
      }
      if (has_dst) {
        const auto [where, run] = map_of(s.dst).locate(s.dst.offset + done);
        dst = where;
        length = std::min(length, run);
      }
      if (has_lhs) {
        const auto [where, run] = map_of(s.lhs).locate(s.lhs.offset + done);
        lhs = where;
        length = std::min(length, run);
      }
      switch (s.kind) {
        case step_kind::send: b.send(peer, src, length); break;
        case step_kind::recv: b.recv(peer, dst, length); break;
        case step_kind::reduce: b.reduce(dst, lhs, src, length); break;
        case step_kind::copy: b.copy(dst, src, length); break;
      }
      done += length;
    }
  }
}

}  // namespace tutti::algorithm
