// The schedule: what one rank does for one collective, as a short program of
// steps over three byte buffers (input, output, scratch). Algorithms are
// pure functions that build schedules; the executor (runtime/) runs them
// over channels and the simulator (sim/) over a model, so both see exactly
// the same program.
//
// Steps are send, recv, reduce (dst = op(dst, src)) and copy. Sends to one
// peer match that peer's receives from this rank in program order (channels
// are FIFO, like RC queue pairs), so no tags are needed. Beyond that order,
// a step waits only for its explicit dependencies, so the executor may keep
// many steps in flight: chunks of a ring pipeline by themselves.
//
// Algorithms do not write dependencies by hand: schedule_builder derives
// them from the byte ranges each step reads and writes (read after write,
// write after read, write after write), so an algorithm reads like the
// sequential program it is, and is still correct when run concurrently.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <tutti/error.hpp>

namespace tutti::algorithm {

enum class buffer : std::uint8_t { input, output, scratch };

constexpr std::string_view to_string(buffer b) noexcept {
  switch (b) {
    case buffer::input: return "input";
    case buffer::output: return "output";
    case buffer::scratch: return "scratch";
  }
  return "unknown";
}

// A byte offset into one of the three buffers.
struct region {
  buffer where = buffer::output;
  std::size_t offset = 0;

  friend constexpr bool operator==(region, region) = default;
};

enum class step_kind : std::uint8_t { send, recv, reduce, copy };

struct step {
  step_kind kind = step_kind::copy;
  int peer = -1;  // send and recv only
  region src{};   // send: the bytes sent; reduce, copy: the source
  region dst{};   // recv: where they land; reduce: dst = op(dst, src); copy: the target
  std::size_t bytes = 0;
  std::uint32_t first_dependency = 0;  // into schedule::dependencies
  std::uint32_t dependency_count = 0;
};

struct schedule {
  std::vector<step> steps;
  // Indices of earlier steps, referenced by each step's range.
  std::vector<std::uint32_t> dependencies;
  std::size_t scratch_bytes = 0;

  [[nodiscard]] std::span<const std::uint32_t> dependencies_of(const step& s) const {
    return std::span<const std::uint32_t>(dependencies).subspan(s.first_dependency, s.dependency_count);
  }
};

// Builds a schedule, deriving dependencies from the byte ranges steps touch.
class schedule_builder {
 public:
  void send(int peer, region src, std::size_t bytes) { add({step_kind::send, peer, src, {}, bytes}); }
  void recv(int peer, region dst, std::size_t bytes) { add({step_kind::recv, peer, {}, dst, bytes}); }
  void reduce(region dst, region src, std::size_t bytes) { add({step_kind::reduce, -1, src, dst, bytes}); }
  void copy(region dst, region src, std::size_t bytes) {
    if (dst != src) add({step_kind::copy, -1, src, dst, bytes});
  }
  // Receives into fresh scratch and reduces into dst: the common
  // "combine what the peer sent" step.
  void recv_reduce(int peer, region dst, std::size_t bytes) {
    const region staging = allocate_scratch(bytes);
    recv(peer, staging, bytes);
    reduce(dst, staging, bytes);
  }

  // Makes every later step wait for every step added so far. Zero-byte
  // messages (a barrier's tokens) touch no bytes, so ranges alone cannot
  // order them; a fence can. Only the steps since the previous fence are
  // recorded: they already wait for everything before it.
  void fence() {
    if (fence_begin_ == steps_.size()) return;
    fenced_.clear();
    for (auto i = fence_begin_; i < steps_.size(); ++i) fenced_.push_back(static_cast<std::uint32_t>(i));
    fence_begin_ = steps_.size();
  }

  // Reserves scratch bytes for the algorithm's own use (aligned to 64).
  region allocate_scratch(std::size_t bytes) {
    const region r{buffer::scratch, scratch_bytes_};
    scratch_bytes_ += (bytes + 63) & ~std::size_t{63};
    return r;
  }

  schedule finish() && {
    schedule out;
    out.steps = std::move(steps_);
    out.dependencies = std::move(dependencies_);
    out.scratch_bytes = scratch_bytes_;
    return out;
  }

 private:
  // One access to a byte range by a step.
  struct access {
    buffer where;
    std::size_t begin, end;
    std::uint32_t step;
    bool writes;
  };

  void add(step s) {
    if (s.bytes == 0 && s.kind != step_kind::send && s.kind != step_kind::recv) return;
    const auto index = static_cast<std::uint32_t>(steps_.size());
    s.first_dependency = static_cast<std::uint32_t>(dependencies_.size());
    const bool reads_src = s.kind != step_kind::recv;
    const bool writes_dst = s.kind != step_kind::send;
    // reduce reads its dst too: treat it as read-and-write (a write covers it).
    for (const std::uint32_t f : fenced_) dependencies_.push_back(f);
    if (reads_src) depend_on(s.src, s.bytes, false, s.first_dependency);
    if (writes_dst) depend_on(s.dst, s.bytes, true, s.first_dependency);
    s.dependency_count = static_cast<std::uint32_t>(dependencies_.size()) - s.first_dependency;
    if (s.bytes != 0) {
      if (reads_src) accesses_.push_back({s.src.where, s.src.offset, s.src.offset + s.bytes, index, false});
      if (writes_dst) {
        // Accesses inside the range this step writes are now reached through
        // it (it depends on all of them), so they need not be scanned again.
        const access written{s.dst.where, s.dst.offset, s.dst.offset + s.bytes, index, true};
        std::erase_if(accesses_, [&](const access& a) {
          return a.where == written.where && written.begin <= a.begin && a.end <= written.end && a.step != index;
        });
        accesses_.push_back(written);
      }
    }
    steps_.push_back(s);
  }

  // Adds, once each, the earlier steps this access conflicts with: any
  // earlier write to an overlapping range, and for a write any earlier read.
  // `first` is where this step's dependencies start, so a step that both
  // reads and writes a conflicting range lists it once.
  void depend_on(region r, std::size_t bytes, bool writes, std::size_t first) {
    if (bytes == 0) return;
    for (const access& a : accesses_) {
      const bool overlaps = a.where == r.where && a.begin < r.offset + bytes && r.offset < a.end;
      if (!overlaps || !(a.writes || writes)) continue;
      const auto already =
          std::find(dependencies_.begin() + static_cast<std::ptrdiff_t>(first), dependencies_.end(), a.step);
      if (already == dependencies_.end()) dependencies_.push_back(a.step);
    }
  }

  std::vector<step> steps_;
  std::vector<std::uint32_t> dependencies_;
  std::vector<access> accesses_;
  std::vector<std::uint32_t> fenced_;  // steps between the last two fences
  std::size_t fence_begin_ = 0;        // first step after the last fence
  std::size_t scratch_bytes_ = 0;
};

}  // namespace tutti::algorithm
