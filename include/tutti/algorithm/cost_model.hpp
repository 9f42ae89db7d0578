// The alpha-beta-gamma cost model the selector ranks algorithms with: its
// constants and how TUTTI_COST_MODEL overrides them. A message of b bytes
// over one link costs alpha + b beta; combining b bytes with the reduction
// op costs b gamma. The formulas that price each algorithm with these
// constants are in costs.hpp; the default figures of each class of link
// come from the transports that make such links (transport/descriptor.hpp).
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <tutti/detail/list_text.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

// Microseconds per byte at a bandwidth in GB/s (10^9 bytes per second).
constexpr double us_per_byte(double gigabytes_per_second) noexcept { return 1.0 / (gigabytes_per_second * 1e3); }

struct link_cost {
  double alpha_us = 1.0;                       // per message: latency and software overhead
  double beta_us_per_byte = us_per_byte(6.0);  // per byte on the link

  friend constexpr bool operator==(const link_cost&, const link_cost&) = default;
};

struct cost_model {
  // The link flat algorithms are priced on: the slowest any pair of ranks
  // uses (between hosts, on a cluster of several). Defaults: shm.
  link_cost link{};
  // Combining bytes with the reduction op: about one pass over memory.
  double gamma_us_per_byte = us_per_byte(6.0);
  // The link between ranks of one host, for the intra-host phases of the
  // hierarchical algorithms. Defaults: shm.
  link_cost local{};

  friend constexpr bool operator==(const cost_model&, const cost_model&) = default;
};

// A class of link by name, with its default figures: what the key `link`
// of parse_cost_model may name. The transports declare theirs
// (transport/descriptor.hpp); the algorithm layer knows none by itself.
struct named_link {
  std::string_view name;
  link_cost cost;
};

// The chunk sizes choose() tries for the pipelined algorithms.
inline constexpr std::array<std::size_t, 7> chunk_candidates{
    std::size_t{16} << 10,  std::size_t{32} << 10,  std::size_t{64} << 10, std::size_t{128} << 10,
    std::size_t{256} << 10, std::size_t{512} << 10, std::size_t{1} << 20};

namespace detail {

// Parses all of `value` as a finite decimal number; fails naming key=value.
inline double parse_cost_number(std::string_view key, std::string_view value) {
  double out = 0;
  const char* const end = value.data() + value.size();
  const auto [stop, ec] = std::from_chars(value.data(), end, out);
  if (value.empty() || ec != std::errc{} || stop != end || !std::isfinite(out)) {
    tutti::detail::fail(errc::invalid_argument, "cost model: ", key, "='", value, "' is not a finite number");
  }
  return out;
}

// The figures of the link class `name` among `links`; fails naming it and
// the known ones.
inline link_cost link_named(std::string_view name, std::span<const named_link> links) {
  std::string known;
  for (const auto& link : links) {
    if (link.name == name) return link.cost;
    known += tutti::detail::concat(known.empty() ? "" : ", ", link.name);
  }
  tutti::detail::fail(errc::invalid_argument, "cost model: unknown link class '", name, "' (known: ", known, ")");
}

}  // namespace detail

// Applies "key=value,..." to `base`, left to right. Keys: link (one of
// `links` by name: replaces alpha and beta), alpha_us,
// beta_us_per_byte, bandwidth_gbps (GB/s; sets beta), local_alpha_us,
// local_bandwidth_gbps (the same for the link inside a host),
// gamma_us_per_byte, reduce_gbps (GB/s; sets gamma). Costs must not be
// negative and bandwidths must be positive.
inline cost_model parse_cost_model(std::string_view text, cost_model base, std::span<const named_link> links) {
  tutti::detail::for_each_item(text, [&](std::string_view item) {
    const auto [key, value] = tutti::detail::split_assignment(item, "cost model", "key=value");
    if (key == "link") {
      base.link = detail::link_named(value, links);
      return;
    }
    double* target = nullptr;
    bool bandwidth = false;
    if (key == "alpha_us") {
      target = &base.link.alpha_us;
    } else if (key == "beta_us_per_byte") {
      target = &base.link.beta_us_per_byte;
    } else if (key == "bandwidth_gbps") {
      target = &base.link.beta_us_per_byte;
      bandwidth = true;
    } else if (key == "local_alpha_us") {
      target = &base.local.alpha_us;
    } else if (key == "local_bandwidth_gbps") {
      target = &base.local.beta_us_per_byte;
      bandwidth = true;
    } else if (key == "gamma_us_per_byte") {
      target = &base.gamma_us_per_byte;
    } else if (key == "reduce_gbps") {
      target = &base.gamma_us_per_byte;
      bandwidth = true;
    } else {
      tutti::detail::fail(errc::invalid_argument, "cost model: unknown key '", key,
                          "' (known: link, alpha_us, beta_us_per_byte, bandwidth_gbps, local_alpha_us, "
                          "local_bandwidth_gbps, gamma_us_per_byte, reduce_gbps)");
    }
    const double number = detail::parse_cost_number(key, value);
    if (bandwidth && !(number > 0)) {
      tutti::detail::fail(errc::invalid_argument, "cost model: ", key, "=", value, " is not a positive bandwidth");
    }
    if (number < 0) tutti::detail::fail(errc::invalid_argument, "cost model: ", key, "=", value, " is negative");
    *target = bandwidth ? us_per_byte(number) : number;
  });
  return base;
}

}  // namespace tutti::algorithm
