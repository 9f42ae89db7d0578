// Algorithms by name: what the selector and the TUTTI_ALGO_* overrides pick
// from, and what tests enumerate so that no algorithm goes untested.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <tutti/algorithm/all_gather.hpp>
#include <tutti/algorithm/all_reduce.hpp>
#include <tutti/algorithm/all_to_all.hpp>
#include <tutti/algorithm/barrier.hpp>
#include <tutti/algorithm/broadcast.hpp>
#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/gather_scatter.hpp>
#include <tutti/algorithm/hierarchical.hpp>
#include <tutti/algorithm/reduce.hpp>
#include <tutti/algorithm/reduce_scatter.hpp>
#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

// The algorithms that can build `kind`, the usual large-message choice first.
inline std::vector<std::string_view> algorithms_for(collective kind) {
  switch (kind) {
    case collective::all_reduce:
      return {"ring",
              "recursive_doubling",
              "rabenseifner",
              "double_binary_tree",
              "hierarchical",
              "hierarchical_tree",
              "hierarchical_rabenseifner"};
    case collective::reduce: return {"binomial", "ring"};
    case collective::broadcast: return {"binomial", "chain", "hierarchical"};
    case collective::all_gather:
    case collective::all_gather_v: return {"ring", "recursive_doubling", "bruck", "hierarchical"};
    case collective::reduce_scatter:
    case collective::reduce_scatter_v: return {"ring", "recursive_halving", "hierarchical"};
    case collective::gather:
    case collective::scatter: return {"binomial"};
    case collective::all_to_all: return {"pairwise", "bruck"};
    case collective::all_to_all_v: return {"pairwise"};
    case collective::barrier: return {"dissemination"};
  }
  return {};
}

namespace detail {

inline schedule dispatch(std::string_view name, const collective_args& a) {
  switch (a.kind) {
    case collective::all_reduce:
      if (name == "ring") return all_reduce::ring(a);
      if (name == "recursive_doubling") return all_reduce::recursive_doubling(a);
      if (name == "rabenseifner") return all_reduce::rabenseifner(a);
      if (name == "double_binary_tree") return all_reduce::double_binary_tree(a);
      if (name == "hierarchical") return hierarchical::all_reduce(a, all_reduce::ring, true);
      if (name == "hierarchical_tree") return hierarchical::all_reduce(a, all_reduce::double_binary_tree, true);
      if (name == "hierarchical_rabenseifner") return hierarchical::all_reduce(a, all_reduce::rabenseifner, false);
      break;
    case collective::reduce:
      if (name == "binomial") return reduce::binomial(a);
      if (name == "ring") return reduce::ring(a);
      break;
    case collective::broadcast:
      if (name == "binomial") return broadcast::binomial(a);
      if (name == "chain") return broadcast::chain(a);
      if (name == "hierarchical") return hierarchical::broadcast(a);
      break;
    case collective::all_gather:
    case collective::all_gather_v:
      if (name == "ring") return all_gather::ring(a);
      if (name == "recursive_doubling") return all_gather::recursive_doubling(a);
      if (name == "bruck") return all_gather::bruck(a);
      if (name == "hierarchical") return hierarchical::all_gather(a);
      break;
    case collective::reduce_scatter:
    case collective::reduce_scatter_v:
      if (name == "ring") return reduce_scatter::ring(a);
      if (name == "recursive_halving") return reduce_scatter::recursive_halving(a);
      if (name == "hierarchical") return hierarchical::reduce_scatter(a);
      break;
    case collective::gather:
      if (name == "binomial") return gather::binomial(a);
      break;
    case collective::scatter:
      if (name == "binomial") return scatter::binomial(a);
      break;
    case collective::all_to_all:
      if (name == "pairwise") return all_to_all::pairwise(a);
      if (name == "bruck") return all_to_all::bruck(a);
      break;
    case collective::all_to_all_v:
      if (name == "pairwise") return all_to_all::pairwise(a);
      break;
    case collective::barrier:
      if (name == "dissemination") return barrier::dissemination(a);
      break;
  }
  std::string valid;
  for (const std::string_view known : algorithms_for(a.kind)) {
    if (!valid.empty()) valid += ", ";
    valid += known;
  }
  tutti::detail::fail(errc::invalid_argument, "unknown ", to_string(a.kind), " algorithm '", name, "'; valid: ", valid);
}

}  // namespace detail

// This rank's schedule for `a` with the named algorithm. Checks the
// arguments first, so a bad call fails before any byte moves.
inline schedule build(std::string_view algorithm, const collective_args& a) {
  validate(a);
  return detail::dispatch(algorithm, a);
}

}  // namespace tutti::algorithm
