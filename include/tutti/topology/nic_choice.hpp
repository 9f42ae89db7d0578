// Which NIC each local rank of a host uses, and the rail it publishes.
//
// A rank uses the NIC nearest its GPU, or its CPU binding when it has no
// GPU; among equally near NICs the one with fewest ranks so far, then the
// lowest rail. Ranks are taken in order, so the answer is a pure function
// of the machine, the ranks and TUTTI_IB_HCA, and every rank of a host can
// compute every other's.
//
// Rails: the RDMA NICs in PCI bus order are rails 0, 1, ...; a host with
// none uses its other NICs the same way. Hosts built alike number their
// NICs alike, which is what rail-aligned rings need.
//
// TUTTI_IB_HCA (hca_list.hpp) narrows the choice: an exclusion ("^mlx5_3")
// or prefixes ("mlx5") leave a set to choose from as above. A list of whole
// names ("mlx5_0,mlx5_1:1", or anything with '=') is taken as given: local
// rank i gets entry i mod length, as it does when the list names NICs hwloc
// does not see (a soft-RoCE rxe0 has no PCI device); such a NIC's rail is
// its position in the list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <tutti/detail/env.hpp>
#include <tutti/error.hpp>
#include <tutti/topology/hca_list.hpp>
#include <tutti/topology/machine.hpp>

namespace tutti::topology {

// What NIC choice knows of one local rank.
struct local_rank {
  int gpu = -1;          // index into machine::gpus; -1: none
  std::vector<int> pus;  // its CPU binding (the kernel's CPU numbers); empty: unbound or unknown
};

// What a choice was based on.
enum class nic_basis : std::uint8_t { gpu, cpu, none, hca_list };

constexpr std::string_view to_string(nic_basis basis) noexcept {
  switch (basis) {
    case nic_basis::gpu: return "gpu";
    case nic_basis::cpu: return "cpu";
    case nic_basis::none: return "none";
    case nic_basis::hca_list: return "TUTTI_IB_HCA";
  }
  return "unknown";
}

struct nic_assignment {
  std::string name;  // empty: the host has no NIC
  int nic = -1;      // index into machine::nics; -1: none, or a TUTTI_IB_HCA name hwloc does not see
  int rail = -1;     // -1 only when there is no NIC
  int port = 0;      // from TUTTI_IB_HCA; 0: any
  nearness near;     // from the rank's GPU or CPUs to the NIC
  nic_basis basis = nic_basis::none;

  friend bool operator==(const nic_assignment&, const nic_assignment&) = default;
};

// The NICs that carry rails, as indexes into m.nics in rail order.
inline std::vector<int> rail_nics(const machine& m) {
  std::vector<int> rdma;
  std::vector<int> all;
  for (std::size_t i = 0; i < m.nics.size(); ++i) {
    all.push_back(static_cast<int>(i));
    if (m.nics[i].rdma) rdma.push_back(static_cast<int>(i));
  }
  return rdma.empty() ? all : rdma;
}

// m.nics[nic]'s rail, or -1 when it carries none.
inline int rail_of(const machine& m, int nic) {
  const auto rails = rail_nics(m);
  for (std::size_t r = 0; r < rails.size(); ++r) {
    if (rails[r] == nic) return static_cast<int>(r);
  }
  return -1;
}

// The rail NIC nearest `where` (the lowest rail among equals), or -1.
inline int nearest_nic(const machine& m, const place& where) {
  int best = -1;
  nearness best_near;
  for (const int n : rail_nics(m)) {
    const nearness near = distance(where, m.nics[static_cast<std::size_t>(n)].where);
    if (best < 0 || near < best_near) {
      best = n;
      best_near = near;
    }
  }
  return best;
}

namespace detail {

inline bool names_a_nic(const machine& m, std::string_view name) {
  for (const auto& n : m.nics) {
    if (n.name == name) return true;
  }
  return false;
}

inline int nic_named(const machine& m, std::string_view name) {
  for (std::size_t i = 0; i < m.nics.size(); ++i) {
    if (m.nics[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace detail

// One assignment per rank in `ranks` (local rank order). Throws
// errc::invalid_argument for a GPU index the machine does not have, a
// malformed TUTTI_IB_HCA, or one that excludes every NIC.
inline std::vector<nic_assignment> choose_nics(const machine& m, std::span<const local_rank> ranks,
                                               const tutti::detail::env_lookup& env = tutti::detail::process_env) {
  using tutti::detail::fail;
  const std::string hca_text = env("TUTTI_IB_HCA").value_or("");
  const hca_list hca = parse_hca_list(hca_text);

  std::vector<place> where(ranks.size());
  std::vector<nic_basis> basis(ranks.size(), nic_basis::none);
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    const int g = ranks[r].gpu;
    if (g >= static_cast<int>(m.gpus.size()) || g < -1) {
      fail(errc::invalid_argument, "choose_nics: local rank ", r, " has GPU ", g, " but the machine has ",
           m.gpus.size());
    }
    if (g >= 0) {
      where[r] = m.gpus[static_cast<std::size_t>(g)].where;
      basis[r] = nic_basis::gpu;
    } else if (!ranks[r].pus.empty()) {
      where[r] = place_of_cpus(m, ranks[r].pus);
      basis[r] = nic_basis::cpu;
    }
  }

  std::vector<nic_assignment> out(ranks.size());
  const auto rails = rail_nics(m);
  bool pinned = hca.exact;
  if (!hca.empty() && !hca.exclude && !pinned) {
    bool all_whole_names = true;
    bool any_match = false;
    for (const auto& e : hca.entries) all_whole_names = all_whole_names && detail::names_a_nic(m, e.device);
    for (const int n : rails) any_match = any_match || hca.allows(m.nics[static_cast<std::size_t>(n)].name);
    pinned = all_whole_names || !any_match;
  }
  if (pinned) {
    for (std::size_t r = 0; r < ranks.size(); ++r) {
      const std::size_t position = r % hca.entries.size();
      const auto& e = hca.entries[position];
      auto& a = out[r];
      a.name = e.device;
      a.port = e.port;
      a.nic = detail::nic_named(m, e.device);
      a.rail = a.nic >= 0 ? rail_of(m, a.nic) : -1;
      if (a.rail < 0) a.rail = static_cast<int>(position);
      if (a.nic >= 0) a.near = distance(where[r], m.nics[static_cast<std::size_t>(a.nic)].where);
      a.basis = nic_basis::hca_list;
    }
    return out;
  }

  std::vector<int> candidates;  // rails TUTTI_IB_HCA allows, as rail numbers
  for (std::size_t rail = 0; rail < rails.size(); ++rail) {
    if (hca.allows(m.nics[static_cast<std::size_t>(rails[rail])].name)) candidates.push_back(static_cast<int>(rail));
  }
  if (candidates.empty() && !rails.empty()) {
    fail(errc::invalid_argument, "TUTTI_IB_HCA='", hca_text, "' leaves none of the host's ", rails.size(), " NICs");
  }
  std::vector<int> load(rails.size(), 0);
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    auto& a = out[r];
    a.basis = basis[r];
    int best = -1;
    for (const int rail : candidates) {
      const auto nic_index = static_cast<std::size_t>(rails[static_cast<std::size_t>(rail)]);
      const nearness near = distance(where[r], m.nics[nic_index].where);
      const auto rail_load = load[static_cast<std::size_t>(rail)];
      if (best < 0 || std::tie(near, rail_load) < std::tie(a.near, load[static_cast<std::size_t>(best)])) {
        best = rail;
        a.near = near;
      }
    }
    if (best < 0) continue;
    ++load[static_cast<std::size_t>(best)];
    a.rail = best;
    a.nic = rails[static_cast<std::size_t>(best)];
    a.name = m.nics[static_cast<std::size_t>(a.nic)].name;
    if (!hca.exclude) {
      for (const auto& e : hca.entries) {
        if (hca.names(e, a.name)) {
          a.port = e.port;
          break;
        }
      }
    }
  }
  return out;
}

// The NIC local rank `local_rank` should use, decided alone, before the
// ranks have met (the verbs transport opens its device before rendezvous).
// choose_nics takes ranks in order, so rank i's NIC depends on ranks 0..i
// only; those are taken to drive GPUs 0..i where the host has that many
// (one process per GPU, as launchers start them), else to be bound as this
// process is. Nothing when the host has no NIC.
inline std::optional<nic_assignment> nic_for_local_rank(
    const machine& m, int local_rank, const tutti::detail::env_lookup& env = tutti::detail::process_env) {
  if (local_rank < 0) return std::nullopt;
  const bool one_gpu_each = static_cast<int>(m.gpus.size()) > local_rank;
  std::vector<topology::local_rank> ranks(static_cast<std::size_t>(local_rank) + 1);
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (one_gpu_each) {
      ranks[i].gpu = static_cast<int>(i);
    } else if (m.binding.known) {
      ranks[i].pus = m.binding.pus;
    }
  }
  auto chosen = choose_nics(m, ranks, env).back();
  if (chosen.name.empty()) return std::nullopt;
  return chosen;
}

}  // namespace tutti::topology
