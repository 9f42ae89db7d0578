// Which algorithm runs a collective: the one named in options (TUTTI_ALGO,
// e.g. "all_reduce=ring,broadcast=binomial"), else the one the cost model
// (cost_model.hpp) predicts to be fastest, with the chunk size it predicts
// to be best for the pipelined ones. The choice is a pure function of the
// arguments every rank shares (never of rank or root), the overrides and the
// model, so ranks that agree on those pick the same schedule.
#pragma once

#include <cstddef>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/cost_model.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/detail/list_text.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

// Parses "collective=algorithm,..." and checks every name.
inline std::map<collective, std::string> parse_algorithm_overrides(std::string_view text) {
  std::map<collective, std::string> out;
  tutti::detail::for_each_item(text, [&](std::string_view item) {
    const auto [name, algorithm] = tutti::detail::split_assignment(item, "TUTTI_ALGO", "collective=algorithm");
    bool known = false;
    for (int k = 0; k <= static_cast<int>(collective::barrier); ++k) {
      const auto kind = static_cast<collective>(k);
      if (to_string(kind) != name) continue;
      known = true;
      bool valid = false;
      std::string listing;
      for (const auto candidate : algorithms_for(kind)) {
        valid = valid || candidate == algorithm;
        listing += tutti::detail::concat(listing.empty() ? "" : ", ", candidate);
      }
      if (!valid) {
        tutti::detail::fail(errc::invalid_argument, "TUTTI_ALGO: ", name, " has no algorithm '", algorithm,
                            "' (known: ", listing, ")");
      }
      out[kind] = std::string(algorithm);
    }
    if (!known) tutti::detail::fail(errc::invalid_argument, "TUTTI_ALGO: unknown collective '", name, "'");
  });
  return out;
}

struct selection {
  std::string algorithm;
  // For the chunked algorithms (is_chunked), the chunk size to build with;
  // 0 for the others (nothing to choose).
  std::size_t chunk_bytes = 0;
  // The model's time for the choice; NaN where the model has no formula
  // for a forced algorithm.
  double predicted_us = 0;
};

namespace detail {

struct plan {
  std::size_t chunk_bytes = 0;
  double predicted_us = 0;
};

// `algorithm`'s best chunk: a.chunk_bytes when the caller set one, else the
// candidate with the lowest predicted time, the smallest on ties (equal
// times mean equal chunk counts, hence the same schedule). Nothing when the
// model has no formula for it.
inline std::optional<plan> plan_for(std::string_view algorithm, const collective_args& a, const cost_model& model) {
  if (!is_chunked(a.kind, algorithm) || a.chunk_bytes != 0) {
    const auto us = time_us(algorithm, a, model, 0);
    if (!us) return std::nullopt;
    return plan{is_chunked(a.kind, algorithm) ? a.chunk_bytes : 0, *us};
  }
  std::optional<plan> best;
  for (const std::size_t chunk : chunk_candidates) {
    const auto us = time_us(algorithm, a, model, chunk);
    if (!us) return std::nullopt;
    if (!best || *us < best->predicted_us) best = plan{chunk, *us};
  }
  return best;
}

}  // namespace detail

// The algorithm for `a`: forced[a.kind] if there is one, else the one of
// algorithms_for(a.kind) with the lowest predicted time, the earlier in the
// registry's order on ties; with the chunk size for it the model predicts
// best. Algorithms the model has no formula for are passed over (a test
// checks there are none). all_to_all_v is the exception: its counts are
// this rank's own and differ between ranks, so ranking by them could split
// the ranks between algorithms; it gets the registry's first (pairwise,
// which moves any counts in size - 1 steps), predicted from this rank's
// counts.
inline selection choose(const collective_args& a, const std::map<collective, std::string>& forced,
                        const cost_model& model) {
  validate(a);
  const auto candidates = algorithms_for(a.kind);
  std::string_view only;
  if (const auto found = forced.find(a.kind); found != forced.end()) {
    only = found->second;
  } else if (a.kind == collective::all_to_all_v && !candidates.empty()) {
    only = candidates.front();
  }
  if (!only.empty()) {
    const auto planned = detail::plan_for(only, a, model);
    if (!planned) return {std::string(only), 0, std::numeric_limits<double>::quiet_NaN()};
    return {std::string(only), planned->chunk_bytes, planned->predicted_us};
  }
  std::string_view best_name;
  std::optional<detail::plan> best;
  for (const std::string_view name : candidates) {
    const auto planned = detail::plan_for(name, a, model);
    if (planned && (!best || planned->predicted_us < best->predicted_us)) {
      best_name = name;
      best = planned;
    }
  }
  if (best) return {std::string(best_name), best->chunk_bytes, best->predicted_us};
  return {candidates.empty() ? std::string() : std::string(candidates.front()), 0,
          std::numeric_limits<double>::quiet_NaN()};
}

}  // namespace tutti::algorithm
