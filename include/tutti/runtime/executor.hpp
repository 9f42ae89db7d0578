// The executor: runs one rank's schedule over its channels.
//
// A step is issued once its dependencies are done and, for a send or a
// receive, once every earlier send (receive) on the same channel has been
// posted, which keeps the per-channel order the schedule promises. Local
// steps (copy, reduce) run as soon as they are ready; sends and receives are
// posted and then polled through the channels' completion counters, so many
// can be in flight and the chunks of a pipelined algorithm overlap.
//
// Everything it needs per run lives in a workspace that keeps its capacity
// between runs: a warm collective allocates nothing.
//
// Waiting follows transport/wait.hpp: spin, yield, then sleep in one of the
// transports involved. Errors keep the failing channel's code and gain the
// blame of where they happened: this rank, the peer, the collective, the step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>
#include <tutti/runtime/call_check.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/wait.hpp>

namespace tutti::runtime {

struct buffers {
  const std::byte* input = nullptr;
  std::byte* output = nullptr;
  std::byte* scratch = nullptr;
};

// How this rank reaches each peer, indexed by rank.
struct route {
  transport::transport* via = nullptr;
  transport::channel* channel = nullptr;
};

class executor {
 public:
  // Begins running `s`; poll() and idle() carry it on, so a caller can keep
  // several operations queued and progress them as it likes (requests).
  // `s`, `b`'s buffers, `routes` and `reduce` must outlive the run; `check`
  // is copied. `reduce` may be null when the schedule has no reduce step.
  // `collective` (a static name) and `rank` are for error messages. With
  // `check` (TUTTI_CHECK), every message carries the call's header
  // (runtime/call_check.hpp) and the ring neighbours compare calls first.
  void start(const algorithm::schedule& s, const buffers& b, std::span<const route> routes,
             const detail::reduction* reduce, transport::lazy_deadline deadline, std::string_view collective, int rank,
             const call_signature* check = nullptr) {
    schedule_ = &s;
    buffers_ = b;
    routes_ = routes;
    reduce_ = reduce;
    deadline_ = deadline;
    collective_ = collective;
    rank_ = rank;
    has_check_ = check != nullptr;
    if (has_check_) check_ = *check;
    backoff_.reset();
    current_step_ = no_step;
    guarded([&] {
      prepare();
      comparing_ = has_check_ && routes_.size() > 1;
      if (comparing_) post_neighbour_headers();
    });
  }

  // One round without blocking: issues what is ready, moves bytes, retires
  // what finished. True once the schedule is done.
  bool poll() {
    return guarded([&] {
      bool moved = false;
      if (comparing_) moved = compare_with_neighbours();
      if (!comparing_) moved = advance() || moved;
      if (moved) backoff_.reset();
      return !comparing_ && remaining_ == 0 && neighbour_header_sent();
    });
  }

  // Called when a round moved nothing: spins, then yields, then sleeps in a
  // transport of an operation in flight, but not past `until`. Throws
  // errc::timeout once the run's deadline has passed.
  void idle(transport::clock::time_point until) {
    guarded([&] { wait_a_little(until); });
  }

  // Gives up the run in progress: its channels fail with errc::aborted and
  // no longer touch its buffers (the communicator is going away).
  void abandon(const char* why) { abandon_in_flight(routes_, why); }

 private:
  static constexpr std::uint32_t no_step = 0xffff'ffffu;
  // header_posted: a checked receive whose header is in flight and whose data
  // receive is not posted yet.
  enum class state : std::uint8_t { waiting, header_posted, posted, done };

  // Runs `body`, turning an error into one that names this rank, the
  // collective and the step, after abandoning the channels in flight.
  template <class Body>
  auto guarded(Body&& body) -> decltype(body()) {
    try {
      return body();
    } catch (const error& e) {
      // The caller may free its buffers once this throws: no channel may keep
      // using them, so every channel with operations in flight gives up.
      abandon_in_flight(routes_, e.what());
      blame where = e.where();
      where.rank = rank_;
      where.collective = std::string(collective_);
      if (current_step_ != no_step) where.step = current_step_;
      if (where.peer == blame::no_rank && current_step_ != no_step) where.peer = schedule_->steps[current_step_].peer;
      current_step_ = no_step;
      throw error(e.code(), e.message(), std::move(where));
    }
  }

  // Per run: the step states, from the schedule's graph (compiled once per
  // schedule: cached schedules live as long as their communicator, so the
  // same schedule on the same routes needs no second look). One copy of
  // the initial states: for a small collective, resetting is a good part
  // of its bookkeeping.
  void prepare() {
    if (schedule_ != compiled_schedule_ || routes_.data() != compiled_routes_) compile();
    const auto n = schedule_->steps.size();
    runs_ = initial_runs_;
    if (has_check_) headers_.resize(n);
    ready_ = initially_ready_;
    in_flight_.clear();
    remaining_ = n;
    current_step_ = no_step;
  }

  // What follows from the schedule and routes alone: dependency counts and
  // dependents, the order of steps on each channel, the transports, and the
  // steps that can go at once.
  void compile() {
    const algorithm::schedule& s = *schedule_;
    const std::span<const route> routes = routes_;
    const auto n = s.steps.size();
    initial_runs_.assign(n, step_run{});
    previous_on_channel_.assign(n, no_step);
    next_on_channel_.assign(n, no_step);
    dependent_offsets_.assign(n + 1, 0);
    for (std::uint32_t i = 0; i < n; ++i) {
      const auto deps = s.dependencies_of(s.steps[i]);
      initial_runs_[i].pending = static_cast<std::uint32_t>(deps.size());
      for (const auto d : deps) ++dependent_offsets_[d + 1];
    }
    for (std::size_t i = 0; i < n; ++i) dependent_offsets_[i + 1] += dependent_offsets_[i];
    dependents_.resize(dependent_offsets_[n]);
    std::vector<std::uint32_t> fill(dependent_offsets_.begin(), dependent_offsets_.end() - 1);
    for (std::uint32_t i = 0; i < n; ++i) {
      for (const auto d : s.dependencies_of(s.steps[i])) dependents_[fill[d]++] = i;
    }
    std::vector<std::uint32_t> last_send(routes.size(), no_step);
    std::vector<std::uint32_t> last_recv(routes.size(), no_step);
    for (std::uint32_t i = 0; i < n; ++i) {
      const auto& st = s.steps[i];
      if (st.kind != algorithm::step_kind::send && st.kind != algorithm::step_kind::recv) continue;
      if (st.peer < 0 || static_cast<std::size_t>(st.peer) >= routes.size() ||
          routes[static_cast<std::size_t>(st.peer)].channel == nullptr) {
        tutti::detail::fail(errc::internal, "schedule step ", i, " names rank ", st.peer, " which has no channel");
      }
      auto& last = (st.kind == algorithm::step_kind::send ? last_send : last_recv)[static_cast<std::size_t>(st.peer)];
      previous_on_channel_[i] = last;
      if (last != no_step) next_on_channel_[last] = i;
      last = i;
    }
    // Only the transports this run uses are progressed in every round: a
    // round is what an arriving message waits for, so polling a transport
    // no step uses (the self route's inproc, say) only slows the reaction.
    transports_.clear();
    auto use = [&](const route& r) {
      if (r.via != nullptr && std::find(transports_.begin(), transports_.end(), r.via) == transports_.end()) {
        transports_.push_back(r.via);
      }
    };
    for (const auto& st : s.steps) {
      if (st.kind == algorithm::step_kind::send || st.kind == algorithm::step_kind::recv) {
        use(routes[static_cast<std::size_t>(st.peer)]);
      }
    }
    // Check mode's headers travel between ring neighbours.
    if (routes.size() > 1) {
      use(right());
      use(routes[static_cast<std::size_t>(left_rank())]);
    }
    // Ready at the start: no dependencies and first on their channel. The
    // ready list is a stack, so they are pushed last step first and go out
    // in program order: algorithms list a round's send before its receive
    // and local copies after the messages they can overlap.
    initially_ready_.clear();
    for (std::uint32_t i = static_cast<std::uint32_t>(n); i-- > 0;) {
      if (initial_runs_[i].pending == 0 && previous_on_channel_[i] == no_step) initially_ready_.push_back(i);
    }
    compiled_schedule_ = schedule_;
    compiled_routes_ = routes_.data();
  }

  [[nodiscard]] bool issuable(const algorithm::schedule& s, std::uint32_t i) const {
    if (runs_[i].pending != 0 || runs_[i].status != state::waiting) return false;
    const auto kind = s.steps[i].kind;
    if (kind != algorithm::step_kind::send && kind != algorithm::step_kind::recv) return true;
    // Posts on one channel keep program order, headers included: the next
    // step goes out only once this one's data is posted.
    const auto previous = previous_on_channel_[i];
    return previous == no_step || runs_[previous].status == state::posted || runs_[previous].status == state::done;
  }

  [[nodiscard]] static std::byte* address(const buffers& b, algorithm::region r) {
    switch (r.where) {
      case algorithm::buffer::input: return const_cast<std::byte*>(b.input) + r.offset;
      case algorithm::buffer::output: return b.output + r.offset;
      case algorithm::buffer::scratch: return b.scratch + r.offset;
    }
    return nullptr;
  }

  // One round of the schedule; true if anything moved.
  bool advance() {
    const algorithm::schedule& s = *schedule_;
    bool moved = false;
    while (!ready_.empty()) {
      const auto i = ready_.back();
      ready_.pop_back();
      // A step can be queued twice (its last dependency and its channel
      // predecessor may release it in the same round): issue it once.
      if (runs_[i].status != state::waiting) continue;
      issue(i);
      moved = true;
    }
    if (remaining_ == 0) return moved;
    for (auto* t : transports_) t->progress();
    for (std::size_t k = 0; k < in_flight_.size();) {
      const auto i = in_flight_[k];
      current_step_ = i;
      const auto& st = s.steps[i];
      auto& channel = *routes_[static_cast<std::size_t>(st.peer)].channel;
      channel.check_usable();
      const auto done_on_channel = st.kind == algorithm::step_kind::send ? channel.sends_done() : channel.recvs_done();
      const bool finished = done_on_channel > runs_[i].posted_index;
      if (finished && runs_[i].status == state::header_posted) {
        // Check mode: the header is in; compare it, then take the data.
        check_header(headers_[i], check_, st.bytes, rank_, st.peer);
        post_data(channel, i);
        moved = true;
        ++k;
        continue;
      }
      if (finished) {
        in_flight_[k] = in_flight_.back();
        in_flight_.pop_back();
        complete(i);
        moved = true;
      } else {
        ++k;
      }
    }
    current_step_ = no_step;
    return moved;
  }

  void issue(std::uint32_t i) {
    current_step_ = i;
    const auto& st = schedule_->steps[i];
    switch (st.kind) {
      case algorithm::step_kind::send:
      case algorithm::step_kind::recv: {
        auto& channel = *routes_[static_cast<std::size_t>(st.peer)].channel;
        in_flight_.push_back(i);
        if (!has_check_) {
          post_data(channel, i);
        } else if (st.kind == algorithm::step_kind::send) {
          headers_[i] = message_header::of(check_, st.bytes);
          channel.post_send(&headers_[i], sizeof(message_header));
          post_data(channel, i);
        } else {
          runs_[i].posted_index = channel.post_recv(&headers_[i], sizeof(message_header));
          runs_[i].status = state::header_posted;
        }
        break;
      }
      case algorithm::step_kind::copy: {
        // In place (an all_gather's input is its block of the output) the
        // copy is onto itself, and a peer may be reading those bytes.
        std::byte* dst = address(buffers_, st.dst);
        const std::byte* src = address(buffers_, st.src);
        if (dst != src) std::memmove(dst, src, st.bytes);
        complete(i);
        break;
      }
      case algorithm::step_kind::reduce:
        if (reduce_ == nullptr) tutti::detail::fail(errc::internal, "schedule reduces but no reduction was given");
        (*reduce_)(address(buffers_, st.dst), address(buffers_, st.lhs), address(buffers_, st.src), st.bytes);
        complete(i);
        break;
    }
    current_step_ = no_step;
  }

  // Every channel with operations still pending belongs to this collective
  // (earlier ones completed), so those are the ones to abandon.
  static void abandon_in_flight(std::span<const route> routes, const char* why) {
    for (const auto& r : routes) {
      if (r.channel != nullptr && !r.channel->idle()) r.channel->abandon(why);
    }
  }

  void post_data(transport::channel& channel, std::uint32_t i) {
    const auto& st = schedule_->steps[i];
    runs_[i].posted_index = st.kind == algorithm::step_kind::send
                                ? channel.post_send(address(buffers_, st.src), st.bytes)
                                : channel.post_recv(address(buffers_, st.dst), st.bytes);
    runs_[i].status = state::posted;
    // The next step on this channel may now be issuable.
    if (const auto next = next_on_channel_[i]; next != no_step && issuable(*schedule_, next)) ready_.push_back(next);
  }

  // Check mode: each rank sends its call to the next rank and compares the
  // previous rank's with its own before the schedule starts, so disagreeing
  // ranks that the schedule would never connect are still caught (if any two
  // ranks disagree, some pair of ring neighbours does).
  [[nodiscard]] const route& right() const { return routes_[(static_cast<std::size_t>(rank_) + 1) % routes_.size()]; }
  [[nodiscard]] int left_rank() const {
    const int size = static_cast<int>(routes_.size());
    return (rank_ + size - 1) % size;
  }

  void post_neighbour_headers() {
    const route& left = routes_[static_cast<std::size_t>(left_rank())];
    ring_headers_[0] = message_header::of(check_, 0);
    ring_sent_ = right().channel->post_send(&ring_headers_[0], sizeof(message_header));
    ring_received_ = left.channel->post_recv(&ring_headers_[1], sizeof(message_header));
  }

  // True once the left neighbour's header arrived and matched.
  bool compare_with_neighbours() {
    const route& left = routes_[static_cast<std::size_t>(left_rank())];
    // Every transport: the header to the right neighbour may travel on
    // another one than the header from the left, and must move too.
    for (auto* t : transports_) t->progress();
    left.channel->check_usable();
    right().channel->check_usable();
    if (left.channel->recvs_done() <= ring_received_) return false;
    check_header(ring_headers_[1], check_, 0, rank_, left_rank());
    comparing_ = false;
    return true;
  }

  [[nodiscard]] bool neighbour_header_sent() {
    if (!has_check_ || routes_.size() < 2) return true;
    right().via->progress();
    right().channel->check_usable();
    return right().channel->sends_done() > ring_sent_;
  }

  void complete(std::uint32_t i) {
    runs_[i].status = state::done;
    --remaining_;
    for (std::uint32_t k = dependent_offsets_[i]; k < dependent_offsets_[i + 1]; ++k) {
      const auto j = dependents_[k];
      if (--runs_[j].pending == 0 && issuable(*schedule_, j)) ready_.push_back(j);
    }
  }

  void wait_a_little(transport::clock::time_point until) {
    if (backoff_.pause()) return;
    const auto now = transport::clock::now();
    const auto deadline = deadline_.at(now);
    if (now >= deadline) {
      std::string pending = comparing_ ? tutti::detail::concat("the check header from rank ", left_rank()) : "";
      std::size_t shown = 0;
      for (const auto i : in_flight_) {
        if (shown++ == 8) break;
        const auto& st = schedule_->steps[i];
        pending += tutti::detail::concat(shown == 1 ? "" : ", ",
                                         st.kind == algorithm::step_kind::send ? "send to" : "receive from", " rank ",
                                         st.peer, " (step ", i, ", ", st.bytes, " bytes)");
      }
      tutti::detail::fail(errc::timeout, collective_, " timed out with ", remaining_,
                          " steps left; in flight: ", pending);
    }
    if (now >= until) return;
    // Sleep in the transport of an operation in flight: it is what the
    // schedule waits for. The sleep is short, so others are polled soon.
    transport::transport* t = comparing_ || in_flight_.empty()
                                  ? routes_[static_cast<std::size_t>(left_rank())].via
                                  : routes_[static_cast<std::size_t>(schedule_->steps[in_flight_.front()].peer)].via;
    t->wait_for_activity(std::min({until, deadline, now + transport::detail::longest_sleep}));
  }

  // The run in progress.
  const algorithm::schedule* schedule_ = nullptr;
  buffers buffers_;
  std::span<const route> routes_;
  const detail::reduction* reduce_ = nullptr;
  transport::lazy_deadline deadline_;
  std::string_view collective_;
  int rank_ = 0;
  bool has_check_ = false;
  call_signature check_;
  bool comparing_ = false;
  std::uint64_t ring_sent_ = 0;
  std::uint64_t ring_received_ = 0;
  transport::backoff backoff_;

  // What a run tracks per step, kept together so that a run starts with
  // one copy of the compiled initial states.
  struct step_run {
    std::uint64_t posted_index = 0;  // the channel's posts before this one
    std::uint32_t pending = 0;       // dependencies not done yet
    state status = state::waiting;
  };

  // Workspace, reused between runs.
  // Compiled from the schedule and routes (compile()).
  const algorithm::schedule* compiled_schedule_ = nullptr;
  const route* compiled_routes_ = nullptr;
  std::vector<step_run> initial_runs_;
  std::vector<std::uint32_t> initially_ready_;
  std::vector<std::uint32_t> previous_on_channel_;
  std::vector<std::uint32_t> next_on_channel_;
  std::vector<std::uint32_t> dependent_offsets_;
  std::vector<std::uint32_t> dependents_;
  std::vector<transport::transport*> transports_;
  // Per run (prepare()).
  std::vector<step_run> runs_;
  std::vector<std::uint32_t> ready_;
  std::vector<std::uint32_t> in_flight_;
  std::vector<message_header> headers_;
  message_header ring_headers_[2];
  std::size_t remaining_ = 0;
  std::uint32_t current_step_ = no_step;
};

}  // namespace tutti::runtime
