// Which algorithm runs a collective: the one named in options (TUTTI_ALGO,
// e.g. "all_reduce=ring,broadcast=binomial"), else a size rule — latency-bound
// algorithms (logarithmic rounds) for small messages, bandwidth-optimal ones
// (each byte crosses each link about once) for large. The crossover below is
// a fixed first cut; the alpha-beta cost model replaces it.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

// Parses "collective=algorithm,..." and checks every name.
inline std::map<collective, std::string> parse_algorithm_overrides(std::string_view text) {
  std::map<collective, std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      tutti::detail::fail(errc::invalid_argument, "TUTTI_ALGO: '", item, "' is not collective=algorithm");
    }
    const std::string_view name = item.substr(0, eq);
    const std::string_view algorithm = item.substr(eq + 1);
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
  }
  return out;
}

inline std::string_view choose_algorithm(const collective_args& a, const std::map<collective, std::string>& forced) {
  if (const auto found = forced.find(a.kind); found != forced.end()) return found->second;
  constexpr std::size_t small = std::size_t{64} << 10;
  const std::size_t bytes = std::max(input_bytes(a), output_bytes(a));
  switch (a.kind) {
    case collective::all_reduce: return bytes < small ? "recursive_doubling" : "ring";
    case collective::all_gather:
    case collective::all_gather_v: return bytes < small ? "bruck" : "ring";
    case collective::broadcast: return bytes < small ? "binomial" : "chain";
    default: return algorithms_for(a.kind).front();
  }
}

}  // namespace tutti::algorithm
