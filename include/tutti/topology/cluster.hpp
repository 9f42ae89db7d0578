// The cluster view: which ranks share a host, their order on it, and the
// rails that connect hosts. Every rank builds it from what all ranks
// published at rendezvous (or a test or the simulator from a synthetic
// layout), and it is a pure function of that, so every rank holds the same
// view and plans the same schedules from it.
//
// Hosts are numbered by their lowest rank; a host's ranks (its local ranks)
// are in rank order. Rail group i is local rank i of every host, in host
// order: on a rail-optimised fabric those ranks share a leaf switch, so
// traffic among them never crosses the spine. A rank's rail (the NIC's rail
// index it published) defaults to its local rank.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tutti/error.hpp>

namespace tutti::topology {

// What one rank publishes about where it runs.
struct rank_location {
  std::string host_id;
  int rail = -1;  // the rail of the NIC it uses; -1: unknown (its local rank)

  friend bool operator==(const rank_location&, const rank_location&) = default;
};

class cluster {
 public:
  // From every rank's location, in rank order.
  explicit cluster(std::span<const rank_location> ranks) {
    if (ranks.empty()) tutti::detail::fail(errc::invalid_argument, "cluster: no ranks");
    std::unordered_map<std::string_view, int> host_index;
    host_of_.reserve(ranks.size());
    for (std::size_t r = 0; r < ranks.size(); ++r) {
      const auto [it, fresh] = host_index.emplace(ranks[r].host_id, static_cast<int>(hosts_.size()));
      if (fresh) hosts_.emplace_back();
      place(static_cast<int>(r), it->second, ranks[r].rail);
    }
    finish();
  }

  // `ranks` ranks, `ranks_per_host` to a host in rank order (the last host
  // may hold fewer): what launchers do with --ranks-per-host, and what the
  // simulator and tests pose as.
  static cluster uniform(int ranks, int ranks_per_host) {
    if (ranks < 1 || ranks_per_host < 1) {
      tutti::detail::fail(errc::invalid_argument, "cluster: ", ranks, " ranks at ", ranks_per_host,
                          " per host; both must be positive");
    }
    cluster out;
    for (int r = 0; r < ranks; ++r) {
      if (r % ranks_per_host == 0) out.hosts_.emplace_back();
      out.place(r, r / ranks_per_host, -1);
    }
    out.finish();
    return out;
  }

  [[nodiscard]] int size() const noexcept { return static_cast<int>(host_of_.size()); }
  [[nodiscard]] int host_count() const noexcept { return static_cast<int>(hosts_.size()); }
  [[nodiscard]] int host_of(int rank) const { return host_of_[index(rank)]; }
  [[nodiscard]] int local_rank(int rank) const { return local_rank_[index(rank)]; }
  [[nodiscard]] int rail_of(int rank) const { return rail_[index(rank)]; }
  [[nodiscard]] std::span<const int> ranks_on(int host) const { return hosts_[static_cast<std::size_t>(host)]; }
  [[nodiscard]] bool same_host(int a, int b) const { return host_of(a) == host_of(b); }

  // The number of ranks on every host, or 0 when hosts differ in it (the
  // hierarchical algorithms need it to be the same).
  [[nodiscard]] int ranks_per_host() const noexcept { return ranks_per_host_; }

  // Rail group `local`: local rank `local` of every host, in host order.
  // Only for clusters whose hosts all have the same number of ranks.
  [[nodiscard]] std::vector<int> rail_group(int local) const {
    std::vector<int> out;
    out.reserve(hosts_.size());
    for (const auto& host : hosts_) out.push_back(host[static_cast<std::size_t>(local)]);
    return out;
  }

  // Every rank once, host by host, so that a ring over it crosses between
  // hosts only host_count() times, and on one rail: hosts alternate the
  // direction they walk their local ranks, so the hop out of a host leaves
  // from the local rank the next host enters at (the first of an even
  // number of hosts and the last). Only the wrap-around of an odd number
  // of hosts changes rail.
  [[nodiscard]] std::vector<int> rail_aligned_order() const {
    std::vector<int> out;
    out.reserve(host_of_.size());
    for (std::size_t h = 0; h < hosts_.size(); ++h) {
      if (h % 2 == 0) {
        out.insert(out.end(), hosts_[h].begin(), hosts_[h].end());
      } else {
        out.insert(out.end(), hosts_[h].rbegin(), hosts_[h].rend());
      }
    }
    return out;
  }

  friend bool operator==(const cluster&, const cluster&) = default;

 private:
  cluster() = default;

  void place(int rank, int host, int rail) {
    auto& members = hosts_[static_cast<std::size_t>(host)];
    host_of_.push_back(host);
    local_rank_.push_back(static_cast<int>(members.size()));
    rail_.push_back(rail >= 0 ? rail : static_cast<int>(members.size()));
    members.push_back(rank);
  }

  void finish() {
    ranks_per_host_ = static_cast<int>(hosts_.front().size());
    for (const auto& host : hosts_) {
      if (static_cast<int>(host.size()) != ranks_per_host_) ranks_per_host_ = 0;
    }
  }

  [[nodiscard]] std::size_t index(int rank) const {
    if (rank < 0 || rank >= size()) {
      tutti::detail::fail(errc::invalid_argument, "cluster: rank ", rank, " is outside [0, ", size(), ")");
    }
    return static_cast<std::size_t>(rank);
  }

  std::vector<int> host_of_;
  std::vector<int> local_rank_;
  std::vector<int> rail_;
  std::vector<std::vector<int>> hosts_;  // per host, its ranks in rank order
  int ranks_per_host_ = 0;
};

}  // namespace tutti::topology
