// The alpha-beta-gamma cost model the selector ranks algorithms with. A
// message of b bytes over one link costs alpha + b beta; combining b bytes
// with the reduction op costs b gamma. A link carries its messages one after
// another, and every rank may send one message and receive one at the same
// time (full duplex). The model prices an algorithm from the structure its
// header describes, not by building its schedule, so a choice costs a few
// dozen multiplications.
//
// Notation: n ranks; m bytes: the vector of all_reduce, reduce, broadcast,
// the whole output of all_gather, the whole input of reduce_scatter (for the
// _v forms the sum of counts); b the largest block a ring step moves, or one
// rank's block for gather, scatter and all_to_all; p the largest power of
// two <= n, L = log2 p, lg = ceil(log2 n); k chunks per block, of c bytes.
//
//   all_reduce ring                (n-1) max(k max(t, g), t + g) + (n-1) k t,
//                                  t = alpha + c beta, g = c gamma
//   all_reduce recursive_doubling  L (alpha + m beta + m gamma) + fold
//   all_reduce rabenseifner        2 L alpha + 2 (p-1)/p m beta + (p-1)/p m gamma + fold
//   all_reduce double_binary_tree  L (4 h + c gamma) + (k-1) max(4 h, 2 c gamma),
//                                  h = alpha + c beta, c = (m/2)/k
//   reduce binomial                lg (alpha + m beta + m gamma)
//   reduce ring                    (n-1) max(k max(t, g), t + g) + (n-1) (alpha + b beta)
//   broadcast binomial             lg (alpha + m beta)
//   broadcast chain                (n-1 + k-1) (alpha + c beta), c = m/k
//   all_gather ring                (n-1) k (alpha + c beta) = (n-1) (k alpha + b beta)
//   all_gather recursive_doubling  lg alpha + (n-1)/n m beta (off powers of two it
//                                  builds bruck's schedule)
//   all_gather bruck               lg alpha + (n-1)/n m beta (its rotation is a
//                                  local copy, not priced; ties go to the
//                                  registry's earlier recursive_doubling)
//   reduce_scatter ring            (n-1) max(k max(t, g), t + g)
//   reduce_scatter recursive_halving
//                                  L alpha + (p-1)/p m (beta + gamma) + fold
//   gather, scatter binomial       lg alpha + (n-1) b beta
//   all_to_all pairwise            (n-1) (alpha + b beta); all_to_all_v: the sum
//                                  over steps of alpha + max(sent, received) beta
//   all_to_all bruck               the sum over lg rounds of alpha + j b beta,
//                                  j = the indices in [1, n) with the round's
//                                  bit set (n/2 on powers of two)
//   barrier dissemination          lg alpha
//   hierarchical (H hosts of L)    intra-host ring phases on the local link
//                                  plus the rail phase on the link (see
//                                  hierarchical_time_us)
//
// fold (n not a power of two, see detail::fold): the folded rank's whole
// vector arrives and is combined, and the result goes back: 2 alpha +
// 2 m beta + m gamma for all_reduce; recursive_halving sends back one block
// instead: alpha + m beta + m gamma + alpha + (m/n) beta.
//
// Pipelining: what was chosen, and why. The broadcast chain has a different
// link at every stage, so its chunks overlap across stages: the textbook
// (stages + chunks - 1) x per-chunk cost. The double binary tree is that
// pipeline over 2 L hops (up a tree of depth L, then down), except that every
// rank serves both trees (inner node of one, leaf of the other): the first
// chunk takes L (4 h + c gamma) (up: a parent hears two children and
// combines; down: it sends to two), and each further chunk index adds the
// four chunks every rank sends per index (or the two it combines, if that is
// slower), so every rank sends about 2 m in all. A ring is different: every
// link is busy from the first step and carries all k chunks of every step
// one after another, so chunking cannot shorten the ring's transfers, and a
// (steps + chunks - 1) formula would price it below the 2 (n-1)/n m beta an
// all_reduce must send. What chunking buys a ring is that combining one
// chunk overlaps receiving the next, and that is what the ring formulas
// model: with k = 1 they are the textbook 2 (n-1) (alpha + b beta) +
// (n-1) b gamma for all_reduce; with k >= 2 a reduce-scatter step costs
// k t while combining keeps up (g <= (k-1) t) and k g once the reducer is
// the bottleneck. An all_gather ring has nothing to overlap, so there more
// chunks only add alpha. The chunked algorithms are those whose schedules
// honour collective_args::chunk_bytes (is_chunked): besides the ones above,
// the ring reduce-scatter (alone, or as the first phase of reduce ring).
//
// Sizes mirror the schedules: the all_reduce ring's block is ceil(count / n)
// elements, chunks are whole elements (detail::chunk_elements), and a
// payload of zero bytes costs nothing, since the schedules then send nothing
// (barrier and all_to_all_v excepted). Nothing here reads the rank or the
// root except all_to_all_v's prediction, whose counts are this rank's own;
// select.hpp never ranks by it, so every rank given the same model and
// arguments makes the same choice. The arithmetic is +, -, *, / and
// comparisons (no libm), so it rounds alike on every rank.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <tutti/algorithm/all_gather.hpp>
#include <tutti/algorithm/all_reduce.hpp>
#include <tutti/algorithm/broadcast.hpp>
#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/hierarchical.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/reduce.hpp>
#include <tutti/algorithm/reduce_scatter.hpp>
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

  // Figures for a class of link: "shm" (same host: ~1 us, ~6 GB/s), "tcp"
  // (~25 us, ~1.5 GB/s), "verbs" (RDMA: ~3 us, ~12 GB/s), and "inproc"
  // (threads of one process), which gets shm's. Rough defaults for ranking
  // algorithms, not measurements; parse_cost_model overrides them.
  static cost_model for_links(std::string_view link_class) {
    cost_model out;
    if (link_class == "shm" || link_class == "inproc") {
      out.link = {1.0, us_per_byte(6.0)};
    } else if (link_class == "tcp") {
      out.link = {25.0, us_per_byte(1.5)};
    } else if (link_class == "verbs") {
      out.link = {3.0, us_per_byte(12.0)};
    } else {
      tutti::detail::fail(errc::invalid_argument, "cost model: unknown link class '", link_class,
                          "' (known: shm, tcp, verbs, inproc)");
    }
    return out;
  }
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

}  // namespace detail

// Applies "key=value,..." to `base`, left to right. Keys: link (a class for
// cost_model::for_links: replaces alpha and beta), alpha_us,
// beta_us_per_byte, bandwidth_gbps (GB/s; sets beta), local_alpha_us,
// local_bandwidth_gbps (the same for the link inside a host),
// gamma_us_per_byte, reduce_gbps (GB/s; sets gamma). Costs must not be
// negative and bandwidths must be positive.
inline cost_model parse_cost_model(std::string_view text, cost_model base) {
  tutti::detail::for_each_item(text, [&](std::string_view item) {
    const auto [key, value] = tutti::detail::split_assignment(item, "cost model", "key=value");
    if (key == "link") {
      base.link = cost_model::for_links(value).link;
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

// Whether `algorithm` cuts its messages into chunks of collective_args::
// chunk_bytes, so that choose() picks a chunk size for it.
inline bool is_chunked(collective kind, std::string_view algorithm) noexcept {
  switch (kind) {
    case collective::all_reduce:
      return algorithm == "ring" || algorithm == "double_binary_tree" || algorithm.starts_with("hierarchical");
    case collective::reduce: return algorithm == "ring";
    case collective::broadcast: return algorithm == "chain";
    case collective::all_gather:
    case collective::all_gather_v:
    case collective::reduce_scatter:
    case collective::reduce_scatter_v: return algorithm == "ring" || algorithm == "hierarchical";
    default: return false;
  }
}

namespace detail::costs {

inline double real(std::size_t value) noexcept { return static_cast<double>(value); }
inline double real(int value) noexcept { return static_cast<double>(value); }

// What a chunked schedule uses when collective_args::chunk_bytes is 0.
inline std::size_t default_chunk_bytes(collective kind, std::string_view algorithm) noexcept {
  switch (kind) {
    case collective::all_reduce:
      return algorithm == "double_binary_tree" ? all_reduce::tree_chunk_bytes : all_reduce::default_chunk_bytes;
    case collective::reduce: return reduce::default_chunk_bytes;
    case collective::broadcast: return broadcast::default_chunk_bytes;
    case collective::all_gather:
    case collective::all_gather_v: return all_gather::default_chunk_bytes;
    default: return reduce_scatter::default_chunk_bytes;
  }
}

// The chunk a chunked schedule uses for `a` given `chunk_bytes` (0:
// a.chunk_bytes, else the algorithm's default), in whole elements, as
// detail::chunk_elements computes it.
inline std::size_t per_chunk_elements(std::string_view algorithm, const collective_args& a,
                                      std::size_t chunk_bytes) noexcept {
  const std::size_t fallback = default_chunk_bytes(a.kind, algorithm);
  const std::size_t bytes = chunk_bytes != 0 ? chunk_bytes : (a.chunk_bytes != 0 ? a.chunk_bytes : fallback);
  return std::max<std::size_t>(1, bytes / a.element_size);
}

// At least one, so that the formulas stay finite on empty payloads (whose
// cost is zero anyway).
inline std::size_t chunks_of(std::size_t elements, std::size_t per_chunk) noexcept {
  return std::max<std::size_t>(1, (elements + per_chunk - 1) / per_chunk);
}

struct terms {
  double alpha;
  double beta;
  double gamma;

  [[nodiscard]] double message(double bytes) const noexcept { return alpha + bytes * beta; }
};

// `steps` ring steps, each moving a block of `block_elements` in chunks of
// `per_chunk`, each received chunk combined before it is forwarded when
// `reducing` (see the header comment).
inline double ring_phase(const terms& t, int steps, std::size_t block_elements, std::size_t element_size,
                         std::size_t per_chunk, bool reducing) noexcept {
  if (steps <= 0 || block_elements == 0) return 0;
  const std::size_t k = chunks_of(block_elements, per_chunk);
  const double chunk = real(block_elements * element_size) / real(k);
  const double transfer = t.message(chunk);
  if (!reducing) return real(steps) * real(k) * transfer;
  const double combine = chunk * t.gamma;
  return real(steps) * std::max(real(k) * std::max(transfer, combine), transfer + combine);
}

// Largest block of `count` elements split evenly over `parts`.
inline std::size_t even_block(std::size_t count, int parts) noexcept {
  const auto n = static_cast<std::size_t>(parts);
  return count / n + (count % n != 0 ? 1 : 0);
}

inline int log2_floor(int n) noexcept {
  int rounds = 0;
  while ((2 << rounds) <= n) ++rounds;
  return rounds;
}

// Ranks in [1, n) whose index has `bit` set: the blocks a bruck all_to_all
// round moves.
inline std::size_t ranks_with_bit(int n, int bit) noexcept {
  std::size_t blocks = 0;
  for (int i = 1; i < n; ++i) {
    if (((i >> bit) & 1) != 0) ++blocks;
  }
  return blocks;
}

inline bool sends_when_empty(collective kind) noexcept {
  return kind == collective::barrier || kind == collective::all_to_all_v;
}

inline std::optional<double> time_us(std::string_view algorithm, const collective_args& a, const cost_model& model,
                                     std::size_t chunk_bytes);

// The hierarchical algorithms (hierarchical.hpp) on H hosts of L ranks:
// their intra-host phases on model.local, their inter-host phases on
// model.link, each rail with a link of its own, phases added up (they
// overlap per block in the schedule, so this errs high). Without a cluster
// view of several hosts, all ranks are one host on model.link, like the
// flat algorithms: the schedule then is the ring (binomial for broadcast)
// and costs the same. Nothing for hosts with different numbers of ranks,
// which the hierarchical algorithms reject.
inline std::optional<double> hierarchical_time_us(std::string_view algorithm, const collective_args& a,
                                                  const cost_model& model, std::size_t chunk_bytes) {
  const int hosts = a.cluster ? a.cluster->host_count() : 1;
  const int per_host = a.cluster ? a.cluster->ranks_per_host() : a.size;
  if (per_host == 0) return std::nullopt;
  const terms inter{model.link.alpha_us, model.link.beta_us_per_byte, model.gamma_us_per_byte};
  const link_cost& host_link = hosts > 1 ? model.local : model.link;
  const terms intra{host_link.alpha_us, host_link.beta_us_per_byte, model.gamma_us_per_byte};
  const std::size_t es = a.element_size;
  const std::size_t per_chunk = per_chunk_elements(algorithm, a, chunk_bytes);
  const std::size_t block = is_v(a.kind) ? *std::max_element(a.counts.begin(), a.counts.end()) : a.count;
  switch (a.kind) {
    case collective::all_reduce: {
      const std::size_t share = even_block(a.count, per_host);
      collective_args rail;
      rail.kind = collective::all_reduce;
      rail.size = hosts;
      rail.count = share;
      rail.element_size = es;
      rail.chunk_bytes = a.chunk_bytes;
      const bool sliced = algorithm == "hierarchical_rabenseifner";
      const std::size_t slices = hierarchical::detail::pipeline_slices(a.count * es, per_host, per_chunk * es, !sliced);
      rail.count = even_block(share, static_cast<int>(slices));
      const std::string_view rail_algorithm = algorithm == "hierarchical"        ? "ring"
                                              : algorithm == "hierarchical_tree" ? "double_binary_tree"
                                                                                 : "rabenseifner";
      const auto across = time_us(rail_algorithm, rail, model, chunk_bytes);
      if (!across) return std::nullopt;
      // Slices pipeline: the first is reduced inside the host alone, then
      // the rails and the host links work at once, the slower setting the pace.
      const double inside = ring_phase(intra, per_host - 1, share, es, per_chunk, true) +
                            ring_phase(intra, per_host - 1, share, es, per_chunk, false);
      const double p = real(slices);
      return inside / p + std::max(inside * (p - 1) / p, p * *across);
    }
    case collective::all_gather:
    case collective::all_gather_v:
      return ring_phase(inter, hosts - 1, block, es, per_chunk, false) +
             real(hosts) * ring_phase(intra, per_host - 1, block, es, per_chunk, false);
    case collective::reduce_scatter:
    case collective::reduce_scatter_v:
      return real(hosts) * ring_phase(intra, per_host - 1, block, es, per_chunk, true) +
             ring_phase(inter, hosts - 1, block, es, per_chunk, true);
    case collective::broadcast: {
      const double m = real(a.count * es);
      return real(ceil_log2(hosts)) * inter.message(m) + real(ceil_log2(per_host)) * intra.message(m);
    }
    default: return std::nullopt;
  }
}

// The formula for (a.kind, algorithm), or nothing when the model has none.
// `a` must have passed validate().
inline std::optional<double> time_us(std::string_view algorithm, const collective_args& a, const cost_model& model,
                                     std::size_t chunk_bytes) {
  const terms t{model.link.alpha_us, model.link.beta_us_per_byte, model.gamma_us_per_byte};
  const int n = a.size;
  const std::size_t es = a.element_size;
  const bool v = is_v(a.kind);
  const std::size_t elements = v ? total(a.counts) : a.count;  // per rank, or all blocks for the _v forms
  const bool trivial = n == 1 || (elements == 0 && !sends_when_empty(a.kind));
  const int lg = ceil_log2(n);
  const int levels = log2_floor(n);
  const int p = floor_pow2(n);
  const bool folds = p != n;
  const double ranks = real(n);
  const double active = real(p);
  const auto result = [&](double us) -> std::optional<double> { return trivial ? 0.0 : us; };
  const auto is = [&](std::string_view name) { return algorithm == name; };
  const std::size_t per_chunk = per_chunk_elements(algorithm, a, chunk_bytes);
  if (algorithm.starts_with("hierarchical")) {
    const auto us = hierarchical_time_us(algorithm, a, model, chunk_bytes);
    return us ? result(*us) : us;
  }

  switch (a.kind) {
    case collective::all_reduce: {
      const double m = real(a.count * es);
      const double fold = folds ? 2 * t.message(m) + m * t.gamma : 0.0;
      if (is("ring")) {
        const std::size_t block = even_block(a.count, n);
        return result(ring_phase(t, n - 1, block, es, per_chunk, true) +
                      ring_phase(t, n - 1, block, es, per_chunk, false));
      }
      if (is("recursive_doubling")) return result(real(levels) * (t.message(m) + m * t.gamma) + fold);
      if (is("rabenseifner")) {
        const double share = (active - 1) / active * m;
        return result(2 * real(levels) * t.alpha + 2 * share * t.beta + share * t.gamma + fold);
      }
      if (is("double_binary_tree")) {
        // Two trees, each carrying half of the vector: up the tree with a
        // reduction, then down. A rank is inner in one tree and a leaf in
        // the other, so once the pipeline is full it sends four chunks (one
        // up, two down in its inner tree, one up in the other) and combines
        // two per chunk index: about 2 m bytes sent in all.
        const std::size_t half = a.count - a.count / 2;
        const std::size_t k = chunks_of(half, per_chunk);
        const double c = real(half * es) / real(k);
        const double hop = t.message(c);
        const double first = real(levels) * (4 * hop + c * t.gamma);
        return result(first + real(k - 1) * std::max(4 * hop, 2 * c * t.gamma));
      }
      break;
    }
    case collective::reduce: {
      const double m = real(a.count * es);
      if (is("binomial")) return result(real(lg) * (t.message(m) + m * t.gamma));
      if (is("ring")) {
        // The ring reduce-scatter, then every rank's block to the root.
        const std::size_t block = even_block(a.count, n);
        return result(ring_phase(t, n - 1, block, es, per_chunk, true) + real(n - 1) * t.message(real(block * es)));
      }
      break;
    }
    case collective::broadcast: {
      const double m = real(a.count * es);
      if (is("binomial")) return result(real(lg) * t.message(m));
      if (is("chain")) {
        const std::size_t k = chunks_of(a.count, per_chunk);
        return result((real(n - 1) + real(k) - 1) * t.message(m / real(k)));
      }
      break;
    }
    case collective::all_gather:
    case collective::all_gather_v: {
      const double m = real(v ? elements * es : a.count * es * uz(n));
      if (is("ring")) {
        const std::size_t block = v ? *std::max_element(a.counts.begin(), a.counts.end()) : a.count;
        return result(ring_phase(t, n - 1, block, es, per_chunk, false));
      }
      // Both send (n-1)/n m in lg rounds (recursive_doubling builds bruck's
      // schedule off powers of two); bruck's local rotation is not priced.
      if (is("recursive_doubling") || is("bruck")) return result(real(lg) * t.alpha + (ranks - 1) / ranks * m * t.beta);
      break;
    }
    case collective::reduce_scatter:
    case collective::reduce_scatter_v: {
      const double m = real(v ? elements * es : a.count * es * uz(n));
      if (is("ring")) {
        const std::size_t block = v ? *std::max_element(a.counts.begin(), a.counts.end()) : a.count;
        return result(ring_phase(t, n - 1, block, es, per_chunk, true));
      }
      if (is("recursive_halving")) {
        const double fold = folds ? t.message(m) + m * t.gamma + t.message(m / ranks) : 0.0;
        return result(real(levels) * t.alpha + (active - 1) / active * m * (t.beta + t.gamma) + fold);
      }
      break;
    }
    case collective::gather:
    case collective::scatter:
      if (is("binomial")) return result(real(lg) * t.alpha + real(n - 1) * real(a.count * es) * t.beta);
      break;
    case collective::all_to_all:
    case collective::all_to_all_v: {
      if (is("pairwise")) {
        if (!v) return result(real(n - 1) * t.message(real(a.count * es)));
        // This rank's own counts: step k sends to r + k and receives from r - k.
        double us = 0;
        for (int k = 1; k < n; ++k) {
          const std::size_t out = a.counts[uz(wrap(a.rank + k, n))];
          const std::size_t in = a.recv_counts[uz(wrap(a.rank - k, n))];
          us += t.message(real(std::max(out, in) * es));
        }
        return result(us);
      }
      if (is("bruck") && !v) {
        const double b = real(a.count * es);
        double us = 0;
        for (int bit = 0; bit < lg; ++bit) us += t.message(real(ranks_with_bit(n, bit)) * b);
        return result(us);
      }
      break;
    }
    case collective::barrier:
      if (is("dissemination")) return result(real(lg) * t.alpha);
      break;
  }
  return std::nullopt;
}

}  // namespace detail::costs

// The model's time for `algorithm` to run `a`, in microseconds, with
// `chunk_bytes` for the chunked algorithms (0: what build() would use, i.e.
// a.chunk_bytes, else the algorithm's default; ignored by the others).
// Fails with invalid_argument on bad arguments or an algorithm the model
// has no formula for.
inline double predict(std::string_view algorithm, const collective_args& a, const cost_model& model,
                      std::size_t chunk_bytes) {
  validate(a);
  if (const auto us = detail::costs::time_us(algorithm, a, model, chunk_bytes)) return *us;
  tutti::detail::fail(errc::invalid_argument, "cost model: no formula for ", to_string(a.kind), " algorithm '",
                      algorithm, "'");
}

}  // namespace tutti::algorithm
