// Timing simulation: a discrete-event alpha-beta-gamma model over the very
// schedules the executor runs (program.hpp), to predict a collective's time
// on a cluster without running it.
//
// A step starts when its dependencies and the previous message on its
// channel are done. A message of b bytes costs alpha + b / bandwidth on its
// link: intra-host (both ranks on one host of the cluster: NVLink-class,
// each rank has its own port) or NIC (between hosts: a rank uses the NIC of
// its rail, rail % nics_per_host, so ranks that share a NIC share its
// bandwidth). A reduce costs b gamma and a copy b / copy bandwidth on the
// rank, one at a time per rank.
//
// Links are resources that carry one packet (64 KiB) at a time: each
// packet of a message holds its sender's egress (rank port or NIC) and its
// receiver's ingress for its bytes' b beta, in the earliest interval, from
// when the previous one ended, in which both are free; the message arrives
// alpha after its last byte left. So messages queued on a link stream back
// to back while each still pays its latency (as on a real NIC, which has
// many in flight), a message waiting for a busy receiver does not hold its
// sender's link idle (a message to another peer takes the gap, as a NIC
// serving many queue pairs would fill it), and messages sharing a link
// interleave. With a single busy-until time per link, any schedule with
// several messages in flight per rank looked slower than it is. For a
// chain of dependent messages each costs alpha + b beta, what
// cost_model.hpp assumes, so the two can be compared term by term. A send
// completes when its last byte has left, so messages to one peer pipeline;
// the receive completes when the message has arrived and the receive is
// posted (eager: it need not be posted first).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <queue>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/error.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/topology/cluster.hpp>

namespace tutti::sim {

struct link_class {
  double alpha_us = 1.0;
  double gigabytes_per_second = 1.0;  // 10^9 bytes per second

  [[nodiscard]] double transfer_us(double bytes) const noexcept { return bytes / (gigabytes_per_second * 1e3); }
  [[nodiscard]] double us(double bytes) const noexcept { return alpha_us + transfer_us(bytes); }
};

struct timing_model {
  link_class intra{1.0, 450.0};  // NVLink-class, per rank
  link_class nic{2.0, 50.0};     // a 400 Gb/s RDMA NIC (per rail)
  double reduce_gbps = 1000.0;   // combining on the rank: a pass over HBM
  double copy_gbps = 1000.0;
  // NICs per host; 0: one per rank (the cluster's ranks per host).
  int nics_per_host = 0;
  // Transport memory per connection: the verbs transport registers, per
  // peer, a receive ring and a send staging area of 16 slots of 8 KiB each
  // (TUTTI_IB_SLOTS, TUTTI_IB_EAGER_LIMIT defaults), 256 KiB in all.
  std::size_t connection_bytes = std::size_t{2} * 16 * 8192;
};

struct timing_report {
  double time_us = 0;  // the last rank's completion
  std::size_t messages = 0;
  std::uint64_t bytes_sent = 0;
  std::size_t nic_messages = 0;         // between hosts
  std::uint64_t busiest_nic_bytes = 0;  // the most bytes one NIC sent
  std::size_t peak_connections = 0;     // the most distinct peers of one rank
  std::size_t peak_transport_bytes = 0;
};

// What nccl-tests calls the size of a collective (and divides by the time
// for algbw): the vector for all_reduce, reduce and broadcast, the whole
// output of all_gather and gather, the whole input of reduce_scatter,
// scatter and all_to_all.
inline std::uint64_t nccl_bytes(const algorithm::collective_args& a) {
  const auto n = static_cast<std::uint64_t>(a.size);
  const std::uint64_t es = a.element_size;
  switch (a.kind) {
    case algorithm::collective::all_reduce:
    case algorithm::collective::reduce:
    case algorithm::collective::broadcast: return a.count * es;
    case algorithm::collective::all_gather_v:
    case algorithm::collective::reduce_scatter_v:
    case algorithm::collective::all_to_all_v: return algorithm::detail::total(a.counts) * es;
    case algorithm::collective::barrier: return 0;
    default: return a.count * es * n;
  }
}

// nccl-tests' busbw / algbw: what each rank's link must carry per byte of
// the collective's size with an optimal algorithm.
inline double bus_factor(algorithm::collective kind, int size) {
  const double n = size;
  switch (kind) {
    case algorithm::collective::all_reduce: return 2 * (n - 1) / n;
    case algorithm::collective::reduce:
    case algorithm::collective::broadcast: return 1;
    case algorithm::collective::barrier: return 0;
    default: return (n - 1) / n;
  }
}

namespace detail {

// When one link is busy: disjoint intervals in time order, from the
// earliest that may still matter on. Reservations never start before the
// simulation's clock, so intervals that ended before it are dropped.
class link_calendar {
 public:
  // The earliest start at or after `from` of a free interval of `length`.
  [[nodiscard]] double fit(double from, double length) const {
    double t = from;
    for (std::size_t k = head_; k < busy_.size(); ++k) {
      if (busy_[k].second <= t) continue;
      if (busy_[k].first >= t + length) break;
      t = busy_[k].second;
    }
    return t;
  }

  // Marks [begin, end) busy; it must be free. `now` is the clock.
  void reserve(double begin, double end, double now) {
    if (end <= begin) return;  // an empty message (a barrier's token) holds nothing
    while (head_ < busy_.size() && busy_[head_].second < now) ++head_;
    if (head_ > 64 && head_ * 2 > busy_.size()) {
      busy_.erase(busy_.begin(), busy_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    auto it = std::lower_bound(busy_.begin() + static_cast<std::ptrdiff_t>(head_), busy_.end(), begin,
                               [](const std::pair<double, double>& x, double t) { return x.first < t; });
    // Merge with the neighbours it touches, so back-to-back messages stay
    // one interval.
    const bool joins_before =
        it != busy_.begin() + static_cast<std::ptrdiff_t>(head_) && std::prev(it)->second == begin;
    const bool joins_after = it != busy_.end() && it->first == end;
    if (joins_before && joins_after) {
      std::prev(it)->second = it->second;
      busy_.erase(it);
    } else if (joins_before) {
      std::prev(it)->second = end;
    } else if (joins_after) {
      it->first = begin;
    } else {
      busy_.insert(it, {begin, end});
    }
  }

 private:
  std::vector<std::pair<double, double>> busy_;
  std::size_t head_ = 0;
};

class timing_run {
 public:
  // Links interleave messages in packets of this size (see above): large
  // enough that a 256 MiB collective stays a few million reservations.
  static constexpr std::uint32_t packet_bytes = 64 << 10;

  timing_run(const world& w, const topology::cluster* cluster, const timing_model& model)
      : w_(w), cluster_(cluster), model_(model) {}

  timing_report run() {
    const auto n = static_cast<std::size_t>(w_.size);
    if (cluster_ != nullptr && cluster_->size() != w_.size) {
      tutti::detail::fail(errc::invalid_argument, "sim: the cluster has ", cluster_->size(), " ranks for a world of ",
                          w_.size);
    }
    nics_ = model_.nics_per_host;
    if (nics_ <= 0) {
      nics_ = 1;
      if (cluster_ != nullptr) {
        for (int h = 0; h < cluster_->host_count(); ++h) {
          nics_ = std::max(nics_, static_cast<int>(cluster_->ranks_on(h).size()));
        }
      }
    }
    const std::size_t hosts = cluster_ != nullptr ? static_cast<std::size_t>(cluster_->host_count()) : n;
    nic_out_.assign(hosts * static_cast<std::size_t>(nics_), {});
    nic_in_.assign(nic_out_.size(), {});
    nic_bytes_.assign(nic_out_.size(), 0);
    port_out_.assign(n, {});
    port_in_.assign(n, {});
    compute_.assign(n, 0.0);
    ranks_.resize(n);
    for (std::size_t r = 0; r < n; ++r) {
      const program& p = w_.ranks[r];
      rank_state& st = ranks_[r];
      st.waits.resize(p.ops.size());
      st.ready_at.assign(p.ops.size(), 0.0);
      st.inbound.resize(p.in_peers.size());
      for (std::size_t i = 0; i < p.ops.size(); ++i) {
        st.waits[i] = p.ops[i].waits;
        if (st.waits[i] == 0) events_.push({0.0, static_cast<int>(r), static_cast<std::uint32_t>(i)});
      }
      report_.peak_connections = std::max(report_.peak_connections, p.connections());
    }
    report_.peak_transport_bytes = report_.peak_connections * model_.connection_bytes;
    while (!events_.empty()) {
      const event e = events_.top();
      events_.pop();
      start(e.rank, e.step, e.time);
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (ranks_[r].done != w_.ranks[r].ops.size()) {
        tutti::detail::fail(errc::invalid_argument, "sim: the schedule deadlocks (rank ", r, " finished ",
                            ranks_[r].done, " of ", w_.ranks[r].ops.size(), " steps); the symbolic mode says where");
      }
    }
    return report_;
  }

 private:
  struct event {
    double time;
    int rank;
    std::uint32_t step;
    bool operator>(const event& other) const noexcept {
      if (time != other.time) return time > other.time;
      if (rank != other.rank) return rank > other.rank;
      return step > other.step;
    }
  };

  struct arrival {
    double time;
    std::uint32_t bytes;
  };

  struct channel {
    std::vector<arrival> queue;
    std::size_t head = 0;
    std::uint32_t parked = no_step;
    double parked_at = 0;
  };

  struct rank_state {
    std::vector<std::uint32_t> waits;
    std::vector<double> ready_at;
    std::vector<channel> inbound;
    std::size_t done = 0;
    double finished = 0;
  };

  [[nodiscard]] std::size_t nic_of(int rank) const {
    const int host = cluster_ != nullptr ? cluster_->host_of(rank) : rank;
    const int rail = cluster_ != nullptr ? cluster_->rail_of(rank) : 0;
    return static_cast<std::size_t>(host) * static_cast<std::size_t>(nics_) + static_cast<std::size_t>(rail % nics_);
  }

  // A step whose predecessors are done, at `now`.
  void start(int r, std::uint32_t i, double now) {
    const program& p = w_.ranks[static_cast<std::size_t>(r)];
    const op& o = p.ops[i];
    const double bytes = o.bytes;
    switch (o.kind) {
      case algorithm::step_kind::send: {
        const auto from = static_cast<std::size_t>(r);
        const int peer = p.peer(o);
        const auto to = static_cast<std::size_t>(peer);
        const bool local = cluster_ != nullptr && cluster_->same_host(r, peer);
        link_calendar& out = local ? port_out_[from] : nic_out_[nic_of(r)];
        link_calendar& in = local ? port_in_[to] : nic_in_[nic_of(peer)];
        const link_class& link = local ? model_.intra : model_.nic;
        // Packet by packet, each in the earliest interval from the last one
        // on in which both ends are free.
        double last_byte = now;
        std::uint32_t left = o.bytes;
        do {
          const std::uint32_t packet = std::min(left, packet_bytes);
          const double length = link.transfer_us(packet);
          double begin = last_byte;
          for (double both = -1; both != begin;) {
            both = begin;
            begin = in.fit(out.fit(begin, length), length);
          }
          last_byte = begin + length;
          out.reserve(begin, last_byte, now);
          in.reserve(begin, last_byte, now);
          left -= packet;
        } while (left != 0);
        const double end = last_byte + link.alpha_us;
        ++report_.messages;
        report_.bytes_sent += o.bytes;
        if (!local) {
          ++report_.nic_messages;
          const std::uint64_t carried = nic_bytes_[nic_of(r)] += o.bytes;
          report_.busiest_nic_bytes = std::max(report_.busiest_nic_bytes, carried);
        }
        const std::uint32_t channel_at_peer = p.channel_at_receiver(o);
        if (channel_at_peer == no_step) tutti::detail::fail(errc::invalid_argument, "sim: an unreceived message");
        channel& ch = ranks_[to].inbound[channel_at_peer];
        ch.queue.push_back({end, o.bytes});
        if (ch.parked != no_step) {
          const std::uint32_t waiting = ch.parked;
          ch.parked = no_step;
          receive(peer, waiting, ch.parked_at);
        }
        // The send is done once its last byte has left: its buffer is free
        // again and the next message to that peer may follow, as on an RC
        // queue pair with many in flight; only the receiver waits for alpha.
        finish(r, i, last_byte);
        break;
      }
      case algorithm::step_kind::recv: receive(r, i, now); break;
      case algorithm::step_kind::reduce:
      case algorithm::step_kind::copy: {
        const double gbps = o.kind == algorithm::step_kind::reduce ? model_.reduce_gbps : model_.copy_gbps;
        double& busy = compute_[static_cast<std::size_t>(r)];
        const double begin = std::max(now, busy);
        busy = begin + bytes / (gbps * 1e3);
        finish(r, i, busy);
        break;
      }
    }
  }

  void receive(int r, std::uint32_t i, double now) {
    const op& o = w_.ranks[static_cast<std::size_t>(r)].ops[i];
    channel& ch = ranks_[static_cast<std::size_t>(r)].inbound[o.channel];
    if (ch.head == ch.queue.size()) {
      ch.parked = i;
      ch.parked_at = now;
      return;
    }
    const arrival a = ch.queue[ch.head++];
    if (ch.head == ch.queue.size()) {
      ch.queue.clear();
      ch.head = 0;
    }
    if (a.bytes != o.bytes) tutti::detail::fail(errc::invalid_argument, "sim: a message size mismatch");
    finish(r, i, std::max(now, a.time));
  }

  void finish(int r, std::uint32_t i, double at) {
    rank_state& st = ranks_[static_cast<std::size_t>(r)];
    ++st.done;
    report_.time_us = std::max(report_.time_us, at);
    for (const std::uint32_t next : w_.ranks[static_cast<std::size_t>(r)].successors(i)) {
      st.ready_at[next] = std::max(st.ready_at[next], at);
      if (--st.waits[next] == 0) events_.push({st.ready_at[next], r, next});
    }
  }

  const world& w_;
  const topology::cluster* cluster_;
  timing_model model_;
  int nics_ = 1;
  std::vector<link_calendar> nic_out_, nic_in_, port_out_, port_in_;
  std::vector<double> compute_;
  std::vector<std::uint64_t> nic_bytes_;  // sent, per NIC
  std::vector<rank_state> ranks_;
  std::priority_queue<event, std::vector<event>, std::greater<>> events_;
  timing_report report_;
};

}  // namespace detail

// Predicts `w`'s run on `cluster` (null: one rank per host, every message
// over a NIC). Fails on schedules that do not complete (prove() says why).
inline timing_report simulate(const world& w, const topology::cluster* cluster, const timing_model& model = {}) {
  detail::timing_run run(w, cluster, model);
  return run.run();
}

}  // namespace tutti::sim
