// Runs the schedules of every rank of a world in one thread, on real bytes,
// so a test can compare what an algorithm computes with a serial reference.
//
// It is deliberately a harsh executor: among all steps that may run (their
// dependencies done, earlier sends or receives on the same channel done, a
// message waiting for a receive) it picks one at random from a seeded
// generator, so a schedule that relies on an order it did not state fails
// here rather than on a cluster. By default sends complete at once
// (unbounded channel buffering), so a deadlock reported then is a real one
// in the schedule. In rendezvous mode a send runs only once its receive is
// posted (ready to run), as large messages travel on a real transport: a
// schedule that only works because the channel buffers deadlocks there.
//
// It reports, instead of running, a step whose bytes lie outside its buffer;
// and it reports receives whose size differs from the matching send,
// deadlocks (with the stuck steps), and messages never received.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <tutti/algorithm/schedule.hpp>
#include <tutti/runtime/reduce_kernel.hpp>

namespace tutti::test {

struct interpreter_rank {
  algorithm::schedule plan;
  std::vector<std::byte> input;
  std::vector<std::byte> output;  // with its initial contents (broadcast's root data)
};

class schedule_interpreter {
 public:
  enum class sends : std::uint8_t { eager, rendezvous };

  // With alias_input_output, each rank's input is its output (in place): the
  // input's contents are copied into the output before the run, and both
  // must have the same size.
  schedule_interpreter(std::vector<interpreter_rank> ranks, tutti::detail::reduction reduce, std::uint64_t seed,
                       bool alias_input_output = false, sends mode = sends::eager)
      : ranks_(std::move(ranks)), reduce_(reduce), rng_(seed), alias_(alias_input_output), mode_(mode) {
    for (auto& r : ranks_) {
      if (alias_ && r.input.size() == r.output.size()) r.output = r.input;
      scratch_.emplace_back(r.plan.scratch_bytes, std::byte{0xa5});
    }
  }

  // Runs every rank to completion; returns an empty string on success and a
  // description of every problem otherwise.
  std::string run() {
    const int n = size();
    if (alias_) {
      for (int r = 0; r < n; ++r) {
        if (rank(r).input.size() != rank(r).output.size()) {
          problems_ << "rank " << r << ": in place needs input and output of one size\n";
        }
      }
    }
    prepare();
    if (failed()) return problems_.str();
    fifos_.assign(static_cast<std::size_t>(n * n), {});
    parked_.assign(static_cast<std::size_t>(n * n), none);
    parked_sends_.assign(static_cast<std::size_t>(n * n), none);
    for (int r = 0; r < n; ++r) {
      for (std::uint32_t i = 0; i < steps(r).size(); ++i) {
        if (state_[ix(r)].waiting[i] == 0) make_ready(r, i);
      }
    }
    while (!candidates_.empty() && !failed()) {
      std::uniform_int_distribution<std::size_t> pick(0, candidates_.size() - 1);
      const std::size_t chosen = pick(rng_);
      std::swap(candidates_[chosen], candidates_.back());
      const auto [r, i] = candidates_.back();
      candidates_.pop_back();
      execute(r, i);
    }
    if (!failed()) report_leftovers();
    return problems_.str();
  }

  [[nodiscard]] std::span<const std::byte> output(int r) const { return rank(r).output; }

  // Bit p is set when rank r's completion provably follows rank p's start
  // through the schedules' dependencies and messages (worlds up to 64 ranks).
  [[nodiscard]] std::uint64_t heard_from(int r) const {
    std::uint64_t known = bit(r);
    for (const std::uint64_t k : state_[ix(r)].knowledge) known |= k;
    return known;
  }

 private:
  static constexpr std::uint32_t none = ~std::uint32_t{0};

  struct message {
    std::vector<std::byte> bytes;
    std::uint32_t step;
    std::uint64_t knowledge;
  };

  struct rank_state {
    std::vector<std::uint32_t> waiting;  // unfinished predecessors per step
    std::vector<std::vector<std::uint32_t>> dependents;
    std::vector<std::uint64_t> knowledge;
    std::vector<bool> done;
  };

  [[nodiscard]] bool failed() { return problems_.tellp() != std::streampos(0); }

  static std::size_t ix(int r) { return static_cast<std::size_t>(r); }
  static std::uint64_t bit(int r) { return r < 64 ? std::uint64_t{1} << r : 0; }
  [[nodiscard]] int size() const { return static_cast<int>(ranks_.size()); }
  [[nodiscard]] const interpreter_rank& rank(int r) const { return ranks_[ix(r)]; }
  [[nodiscard]] const std::vector<algorithm::step>& steps(int r) const { return rank(r).plan.steps; }

  static const char* kind_name(algorithm::step_kind k) {
    switch (k) {
      case algorithm::step_kind::send: return "send";
      case algorithm::step_kind::recv: return "recv";
      case algorithm::step_kind::reduce: return "reduce";
      case algorithm::step_kind::copy: return "copy";
    }
    return "?";
  }

  std::string describe(int r, std::uint32_t i) const {
    const algorithm::step& s = steps(r)[i];
    std::ostringstream out;
    out << "rank " << r << " step " << i << " (" << kind_name(s.kind);
    if (s.kind == algorithm::step_kind::send) out << " to " << s.peer;
    if (s.kind == algorithm::step_kind::recv) out << " from " << s.peer;
    out << ", " << s.bytes << " bytes)";
    return std::move(out).str();
  }

  std::span<std::byte> memory(int r, algorithm::buffer b) {
    interpreter_rank& owner = ranks_[ix(r)];
    switch (b) {
      case algorithm::buffer::input: return alias_ ? std::span(owner.output) : std::span(owner.input);
      case algorithm::buffer::output: return owner.output;
      case algorithm::buffer::scratch: return scratch_[ix(r)];
    }
    return {};
  }

  void check_range(int r, std::uint32_t i, algorithm::region where, std::size_t bytes) {
    const std::size_t limit = memory(r, where.where).size();
    if (where.offset > limit || bytes > limit - where.offset) {
      problems_ << describe(r, i) << ": " << algorithm::to_string(where.where) << " bytes [" << where.offset << ", "
                << where.offset + bytes << ") outside its " << limit << " bytes\n";
    }
  }

  // Checks every step, then counts each step's predecessors: its stated
  // dependencies and, for messages, the previous one on the same channel.
  void prepare() {
    const int n = size();
    state_.resize(ranks_.size());
    for (int r = 0; r < n; ++r) {
      const auto& plan = rank(r).plan;
      rank_state& st = state_[ix(r)];
      st.waiting.assign(plan.steps.size(), 0);
      st.dependents.assign(plan.steps.size(), {});
      st.knowledge.assign(plan.steps.size(), 0);
      st.done.assign(plan.steps.size(), false);
      std::vector<std::uint32_t> last_send(ix(n), none);
      std::vector<std::uint32_t> last_recv(ix(n), none);
      for (std::uint32_t i = 0; i < plan.steps.size(); ++i) {
        const algorithm::step& s = plan.steps[i];
        if (std::size_t{s.first_dependency} + s.dependency_count > plan.dependencies.size()) {
          problems_ << describe(r, i) << ": dependencies out of range\n";
          continue;
        }
        for (const std::uint32_t d : plan.dependencies_of(s)) {
          if (d >= i) {
            problems_ << describe(r, i) << ": depends on later step " << d << "\n";
            continue;
          }
          ++st.waiting[i];
          st.dependents[d].push_back(i);
        }
        const bool is_message = s.kind == algorithm::step_kind::send || s.kind == algorithm::step_kind::recv;
        if (is_message) {
          if (s.peer < 0 || s.peer >= n || s.peer == r) {
            problems_ << describe(r, i) << ": invalid peer\n";
            continue;
          }
          auto& last = s.kind == algorithm::step_kind::send ? last_send : last_recv;
          if (last[ix(s.peer)] != none) {
            ++st.waiting[i];
            st.dependents[last[ix(s.peer)]].push_back(i);
          }
          last[ix(s.peer)] = i;
        }
        if (s.kind != algorithm::step_kind::recv) check_range(r, i, s.src, s.bytes);
        if (s.kind != algorithm::step_kind::send) check_range(r, i, s.dst, s.bytes);
        if (s.kind == algorithm::step_kind::reduce) check_range(r, i, s.lhs, s.bytes);
      }
    }
  }

  std::deque<message>& fifo(int from, int to) { return fifos_[ix(from * size() + to)]; }

  void make_ready(int r, std::uint32_t i) {
    const algorithm::step& s = steps(r)[i];
    if (s.kind == algorithm::step_kind::recv && fifo(s.peer, r).empty()) {
      parked_[ix(s.peer * size() + r)] = i;
      auto& send = parked_sends_[ix(s.peer * size() + r)];
      if (send != none) {
        candidates_.emplace_back(s.peer, send);
        send = none;
      }
      return;
    }
    if (s.kind == algorithm::step_kind::send && mode_ == sends::rendezvous &&
        parked_[ix(r * size() + s.peer)] == none) {
      parked_sends_[ix(r * size() + s.peer)] = i;
      return;
    }
    candidates_.emplace_back(r, i);
  }

  void execute(int r, std::uint32_t i) {
    const algorithm::step& s = steps(r)[i];
    rank_state& st = state_[ix(r)];
    std::uint64_t known = bit(r);
    for (const std::uint32_t d : rank(r).plan.dependencies_of(s)) known |= st.knowledge[d];
    switch (s.kind) {
      case algorithm::step_kind::send: {
        const auto src = memory(r, s.src.where).subspan(s.src.offset, s.bytes);
        fifo(r, s.peer).push_back({std::vector<std::byte>(src.begin(), src.end()), i, known});
        auto& parked = parked_[ix(r * size() + s.peer)];
        if (parked != none) {
          candidates_.emplace_back(s.peer, parked);
          parked = none;
        }
        break;
      }
      case algorithm::step_kind::recv: {
        auto& queue = fifo(s.peer, r);
        message m = std::move(queue.front());
        queue.pop_front();
        if (m.bytes.size() != s.bytes) {
          problems_ << "size mismatch: " << describe(r, i) << " matched " << describe(s.peer, m.step) << " of "
                    << m.bytes.size() << " bytes\n";
          return;
        }
        if (s.bytes != 0) std::memcpy(memory(r, s.dst.where).data() + s.dst.offset, m.bytes.data(), s.bytes);
        known |= m.knowledge;
        break;
      }
      case algorithm::step_kind::reduce: {
        try {
          reduce_(memory(r, s.dst.where).data() + s.dst.offset, memory(r, s.lhs.where).data() + s.lhs.offset,
                  memory(r, s.src.where).data() + s.src.offset, s.bytes);
        } catch (const std::exception& e) {
          problems_ << describe(r, i) << ": " << e.what() << "\n";
          return;
        }
        break;
      }
      case algorithm::step_kind::copy: {
        if (s.bytes != 0) {
          std::memmove(memory(r, s.dst.where).data() + s.dst.offset, memory(r, s.src.where).data() + s.src.offset,
                       s.bytes);
        }
        break;
      }
    }
    st.knowledge[i] = known;
    st.done[i] = true;
    for (const std::uint32_t next : st.dependents[i]) {
      if (--st.waiting[next] == 0) make_ready(r, next);
    }
  }

  void report_leftovers() {
    const int n = size();
    bool stuck = false;
    for (int r = 0; r < n; ++r) {
      const rank_state& st = state_[ix(r)];
      int listed = 0;
      for (std::uint32_t i = 0; i < st.done.size(); ++i) {
        if (st.done[i]) continue;
        if (!stuck) problems_ << "deadlock: no step can run, these remain:\n";
        stuck = true;
        if (listed++ == 8) {
          problems_ << "  rank " << r << ": ...\n";
          break;
        }
        problems_ << "  " << describe(r, i);
        const algorithm::step& s = steps(r)[i];
        if (st.waiting[i] != 0) {
          problems_ << " waits for " << st.waiting[i] << " unfinished earlier steps";
        } else if (s.kind == algorithm::step_kind::recv) {
          problems_ << " waits for a message that never came";
        } else if (s.kind == algorithm::step_kind::send) {
          problems_ << " waits for its receive to be posted";
        }
        problems_ << "\n";
      }
    }
    for (int from = 0; from < n; ++from) {
      for (int to = 0; to < n; ++to) {
        const auto& queue = fifo(from, to);
        if (queue.empty()) continue;
        problems_ << "rank " << to << " never received " << queue.size() << " message(s) from rank " << from
                  << ", the first sent by " << describe(from, queue.front().step) << "\n";
      }
    }
  }

  std::vector<interpreter_rank> ranks_;
  std::vector<std::vector<std::byte>> scratch_;
  tutti::detail::reduction reduce_;
  std::mt19937_64 rng_;
  bool alias_;
  sends mode_;
  std::vector<rank_state> state_;
  std::vector<std::deque<message>> fifos_;
  std::vector<std::uint32_t> parked_;        // per channel: the receive waiting for its message
  std::vector<std::uint32_t> parked_sends_;  // per channel: the send waiting for its receive (rendezvous)
  std::vector<std::pair<int, std::uint32_t>> candidates_;
  std::ostringstream problems_;
};

}  // namespace tutti::test
