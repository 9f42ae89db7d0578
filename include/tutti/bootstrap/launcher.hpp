// What a process learns from the launcher that started it: its rank, the
// number of ranks, its rank on this host, and the store where all ranks meet.
//
// Ranks come from the first launcher whose rank variable is set; its size
// variable is then required and its local-rank variable optional:
//
//   launcher   rank                  size                  local rank
//   tutti      TUTTI_RANK            TUTTI_WORLD_SIZE      TUTTI_LOCAL_RANK
//   torchrun   RANK                  WORLD_SIZE            LOCAL_RANK
//   openmpi    OMPI_COMM_WORLD_RANK  OMPI_COMM_WORLD_SIZE  OMPI_COMM_WORLD_LOCAL_RANK
//   mpich      PMI_RANK              PMI_SIZE              MPI_LOCALRANKID
//   slurm      SLURM_PROCID          SLURM_NTASKS          SLURM_LOCALID
//
// The explicit TUTTI_* variables come first so a user can always override
// what a launcher says. torchrun and the MPI launchers come before Slurm
// because they are often started inside a Slurm allocation (srun torchrun,
// mpirun in an sbatch script), where every process inherits the batch
// step's SLURM_PROCID=0 while the inner launcher knows the real ranks. No variable set
// at all is an error (unavailable), not a silent world of one: a process that
// forgot its launcher must not run alone while its peers wait for it. A single
// process sets TUTTI_RANK=0 TUTTI_WORLD_SIZE=1 TUTTI_STORE=...
//
// The store address is the first of:
//   1. TUTTI_STORE: tcp://<host>:<port> (IPv6 as tcp://[::1]:29400) or
//      file://<absolute directory all ranks share>.
//   2. Slurm only: tcp://<first host of SLURM_STEP_NODELIST, else of
//      SLURM_JOB_NODELIST>:<20000 + SLURM_JOB_ID % 12000>, where srun's
//      default block distribution puts rank 0; the port range stays below
//      Linux's ephemeral ports (32768+). All steps of one job get the same
//      port, so concurrent steps need TUTTI_STORE each.
//   3. Any launcher: tcp://MASTER_ADDR:<MASTER_PORT + 1>. Not MASTER_PORT
//      itself: torchrun's agent already hosts PyTorch's TCPStore there.
// Otherwise (TUTTI_RANK or mpirun without any of these) invalid_argument
// telling what to set.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <tutti/detail/env.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>

namespace tutti {

struct launch_info {
  int rank = 0;
  int world_size = 1;
  int local_rank = -1;   // -1 when the launcher does not say
  std::string store;     // "tcp://host:port" or "file:///absolute/dir"
  std::string launcher;  // "tutti", "torchrun", "slurm", "openmpi", "mpich"
};

namespace detail {

struct launcher_vars {
  std::string_view id;    // launch_info::launcher
  std::string_view name;  // for messages
  std::string_view rank;
  std::string_view size;
  std::string_view local_rank;
  std::string_view store_hint;  // how this launcher passes TUTTI_STORE to every rank
};

inline constexpr std::array<launcher_vars, 5> launchers{{
    {"tutti", "TUTTI_*", "TUTTI_RANK", "TUTTI_WORLD_SIZE", "TUTTI_LOCAL_RANK",
     "in every rank's environment, e.g. TUTTI_STORE=tcp://node1:29400"},
    {"torchrun", "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK",
     "e.g. export TUTTI_STORE=tcp://node1:29400 before torchrun"},
    {"openmpi", "Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "e.g. mpirun -x TUTTI_STORE=tcp://node1:29400 ..."},
    {"mpich", "MPICH/PMI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
     "e.g. mpiexec -genv TUTTI_STORE tcp://node1:29400 ..."},
    {"slurm", "Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
     "e.g. export TUTTI_STORE=tcp://node1:29400 before srun (or let Slurm set SLURM_JOB_NODELIST and SLURM_JOB_ID)"},
}};

inline constexpr std::size_t max_slurm_hosts = 1'000'000;

// Checks a store address: tcp://host:port (parsed as the store will parse
// it) or file:// with an absolute path. `what` names its source.
inline void check_store_address(std::string_view store, std::string_view what) {
  constexpr std::string_view file = "file://";
  if (!store.starts_with(file)) {
    parse_tcp_url(store, what);
  } else if (!store.substr(file.size()).starts_with('/')) {
    fail(errc::invalid_argument, what, "='", store, "' is not file:///<absolute dir>");
  }
}

inline std::string tcp_store(std::string_view host_var, std::string_view host, std::int64_t port) {
  // An IPv6 literal needs brackets so its colons are not read as the port's.
  const bool bracket = host.find(':') != std::string_view::npos && !host.starts_with('[');
  std::string store = concat("tcp://", bracket ? "[" : "", host, bracket ? "]" : "", ':', port);
  try {
    parse_tcp_url(store, host_var);
  } catch (const error&) {
    fail(errc::invalid_argument, host_var, "='", host, "' is not a host name or address");
  }
  return store;
}

// One bracket range of a Slurm host list: "7", or "001-003" with its width.
struct hostlist_range {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  std::size_t width = 0;  // digits of lo, so node[001-010] keeps its zeros
};

// Literal text when ranges is empty, otherwise a bracket group.
struct hostlist_part {
  std::string_view text;
  std::vector<hostlist_range> ranges;
};

[[noreturn]] inline void bad_nodelist(std::string_view nodelist, std::string_view why) {
  fail(errc::invalid_argument, "SLURM_JOB_NODELIST='", nodelist, "' is not a Slurm host list: ", why);
}

inline hostlist_range parse_hostlist_range(std::string_view nodelist, std::string_view text) {
  auto number = [&](std::string_view digits) {
    std::uint64_t value = 0;
    const auto [end, status] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || status != std::errc{} || end != digits.data() + digits.size()) {
      bad_nodelist(nodelist, concat("'", text, "' is not a number or range like 001-004"));
    }
    return value;
  };
  const auto dash = text.find('-');
  const auto lo_text = text.substr(0, dash);
  hostlist_range range{number(lo_text), 0, lo_text.size()};
  range.hi = dash == std::string_view::npos ? range.lo : number(text.substr(dash + 1));
  if (range.hi < range.lo) bad_nodelist(nodelist, concat("range '", text, "' runs backwards"));
  return range;
}

// Host patterns, one per comma-separated entry, each a list of parts.
inline std::vector<std::vector<hostlist_part>> parse_hostlist(std::string_view nodelist) {
  std::vector<std::vector<hostlist_part>> hosts(1);
  for (std::size_t i = 0; i < nodelist.size();) {
    if (nodelist[i] == ',') {
      hosts.emplace_back();
      ++i;
    } else if (nodelist[i] == '[') {
      const auto close = nodelist.find_first_of("[]", i + 1);
      if (close == std::string_view::npos || nodelist[close] == '[') bad_nodelist(nodelist, "a [ is not closed");
      hostlist_part group;
      auto inside = nodelist.substr(i + 1, close - i - 1);
      for (;;) {
        const auto comma = inside.find(',');
        group.ranges.push_back(parse_hostlist_range(nodelist, inside.substr(0, comma)));
        if (comma == std::string_view::npos) break;
        inside.remove_prefix(comma + 1);
      }
      hosts.back().push_back(std::move(group));
      i = close + 1;
    } else if (nodelist[i] == ']') {
      bad_nodelist(nodelist, "a ] has no [");
    } else {
      const auto end = std::min(nodelist.find_first_of(",[]", i), nodelist.size());
      hosts.back().push_back({nodelist.substr(i, end - i), {}});
      i = end;
    }
  }
  if (std::ranges::any_of(hosts, [](const auto& parts) { return parts.empty(); })) {
    bad_nodelist(nodelist, "a host name is empty");
  }
  return hosts;
}

// The first `limit` hosts of a Slurm host list, validating all of it.
inline std::vector<std::string> expand_slurm_nodelist(std::string_view nodelist, std::size_t limit) {
  const auto hosts = parse_hostlist(nodelist);

  // Count before expanding, saturating, so "n[0-99999999999]" costs nothing.
  constexpr std::uint64_t cap = max_slurm_hosts + 1;
  std::uint64_t total = 0;
  for (const auto& parts : hosts) {
    std::uint64_t count = 1;
    for (const auto& part : parts) {
      if (part.ranges.empty()) continue;
      std::uint64_t group = 0;
      for (const auto& range : part.ranges) group = std::min(group + std::min(range.hi - range.lo, cap) + 1, cap);
      count = std::min(count * group, cap);
    }
    total = std::min(total + count, cap);
  }
  if (total > max_slurm_hosts) bad_nodelist(nodelist, concat("it names more than ", max_slurm_hosts, " hosts"));

  // Later groups vary fastest: rack[1-2]-n[3-4] is rack1-n3, rack1-n4, rack2-n3, ...
  // Each prefix yields at least one host, so keeping `limit` prefixes suffices.
  std::vector<std::string> out;
  for (const auto& parts : hosts) {
    if (out.size() >= limit) break;
    const auto want = limit - out.size();
    std::vector<std::string> names{std::string()};
    for (const auto& part : parts) {
      if (part.ranges.empty()) {
        for (auto& name : names) name += part.text;
        continue;
      }
      std::vector<std::string> next;
      for (const auto& prefix : names) {
        for (const auto& range : part.ranges) {
          for (auto value = range.lo; next.size() < want; ++value) {
            auto digits = std::to_string(value);
            if (digits.size() < range.width) digits.insert(0, range.width - digits.size(), '0');
            next.push_back(prefix + digits);
            if (value == range.hi) break;
          }
        }
      }
      names = std::move(next);
    }
    for (auto& name : names) out.push_back(std::move(name));
  }
  return out;
}

// Every host of a Slurm host list such as "gpu[001-003,010],login1".
inline std::vector<std::string> expand_slurm_nodelist(std::string_view nodelist) {
  return expand_slurm_nodelist(nodelist, max_slurm_hosts);
}

inline std::string launch_store(const launcher_vars& launcher, const env_lookup& env) {
  if (auto store = env("TUTTI_STORE")) {
    check_store_address(*store, "TUTTI_STORE");
    return *std::move(store);
  }
  if (launcher.id == "slurm") {
    // The step's own node list, when there is one: a step on a subset of
    // the allocation starts its rank 0 on the step's first node.
    const auto step_nodelist = env("SLURM_STEP_NODELIST");
    const auto nodelist = step_nodelist ? step_nodelist : env("SLURM_JOB_NODELIST");
    const auto job = env("SLURM_JOB_ID");
    if (nodelist && job) {
      const auto id = parse_env_int("SLURM_JOB_ID", *job, 0, std::numeric_limits<std::int64_t>::max());
      return tcp_store(step_nodelist ? "SLURM_STEP_NODELIST" : "SLURM_JOB_NODELIST",
                       expand_slurm_nodelist(*nodelist, 1).front(), 20000 + id % 12000);
    }
  }
  const auto addr = env("MASTER_ADDR");
  const auto port = env("MASTER_PORT");
  if (addr && port) {
    const auto master_port = parse_env_int("MASTER_PORT", *port, 1, 65535);
    if (master_port == 65535) {
      fail(errc::invalid_argument, "MASTER_PORT=65535 leaves no port for tutti's store, which uses MASTER_PORT+1;",
           " lower it or set TUTTI_STORE");
    }
    return tcp_store("MASTER_ADDR", *addr, master_port + 1);
  }
  fail(
      errc::invalid_argument, launcher.rank, " is set (", launcher.name,
      ") but TUTTI_STORE is not, and nothing else gives a store address: set TUTTI_STORE=tcp://<host of rank 0>:<port>",
      " or file:///<dir all ranks share>, ", launcher.store_hint,
      "; or set both MASTER_ADDR and MASTER_PORT (tutti then uses MASTER_PORT+1)");
}

}  // namespace detail

inline launch_info detect_launch(const detail::env_lookup& env = detail::process_env) {
  constexpr std::int64_t int_min = std::numeric_limits<int>::min(), int_max = std::numeric_limits<int>::max();
  for (const auto& launcher : detail::launchers) {
    const auto rank = env(launcher.rank);
    if (!rank) continue;
    const auto size = env(launcher.size);
    if (!size) {
      detail::fail(errc::invalid_argument, launcher.rank, " is set (", launcher.name, ") but ", launcher.size,
                   " is not");
    }
    launch_info info;
    info.launcher = launcher.id;
    info.rank = static_cast<int>(detail::parse_env_int(launcher.rank, *rank, int_min, int_max));
    info.world_size = static_cast<int>(detail::parse_env_int(launcher.size, *size, int_min, int_max));
    if (info.world_size < 1) {
      detail::fail(errc::invalid_argument, launcher.size, "=", info.world_size, " must be at least 1 (", launcher.name,
                   ", ", launcher.rank, "=", info.rank, ")");
    }
    if (info.rank < 0 || info.rank >= info.world_size) {
      detail::fail(errc::invalid_argument, launcher.rank, "=", info.rank, " is out of range for ", launcher.size, "=",
                   info.world_size, " (", launcher.name, "): ranks are 0..", info.world_size - 1);
    }
    if (const auto local = env(launcher.local_rank)) {
      info.local_rank = static_cast<int>(detail::parse_env_int(launcher.local_rank, *local, int_min, int_max));
      if (info.local_rank < 0 || info.local_rank >= info.world_size) {
        detail::fail(errc::invalid_argument, launcher.local_rank, "=", info.local_rank, " is out of range for ",
                     launcher.size, "=", info.world_size, " (", launcher.name, ")");
      }
    }
    info.store = detail::launch_store(launcher, env);
    return info;
  }
  std::string looked;
  for (const auto& launcher : detail::launchers) looked += detail::concat(looked.empty() ? "" : ", ", launcher.rank);
  detail::fail(errc::unavailable, "no launcher found: none of ", looked,
               " is set; run under torchrun, srun, mpirun or mpiexec, or set TUTTI_RANK, TUTTI_WORLD_SIZE and",
               " TUTTI_STORE (TUTTI_RANK=0 TUTTI_WORLD_SIZE=1 for a single process)");
}

}  // namespace tutti
