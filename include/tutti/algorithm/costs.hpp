// The formulas that price each algorithm under the alpha-beta-gamma cost
// model (cost_model.hpp); the algorithm table (registry.hpp) names one per
// algorithm. A message of b bytes over one link costs alpha + b beta;
// combining b bytes with the reduction op costs b gamma. A link carries its messages one after
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
// honour collective_args::chunk_bytes (their table entry has a chunk): besides the ones above,
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
#include <cstddef>
#include <optional>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/cost_model.hpp>
#include <tutti/algorithm/hierarchical.hpp>
#include <tutti/algorithm/partition.hpp>

namespace tutti::algorithm::detail::costs {

inline double real(std::size_t value) noexcept { return static_cast<double>(value); }
inline double real(int value) noexcept { return static_cast<double>(value); }

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

// What every formula reads: the arguments and the model, and the notation's
// quantities derived from them once.
struct pricing {
  const collective_args& a;
  const cost_model& model;
  std::size_t chunk_bytes;  // as asked: 0 for what the schedule would use
  std::size_t per_chunk;    // elements per chunk of a chunked schedule
  terms t;
  int n;
  std::size_t es;
  bool v;
  std::size_t elements;  // per rank, or all blocks for the _v forms
  int lg;
  int levels;
  bool folds;
  double ranks;
  double active;  // p, the largest power of two <= n
  // One rank, or nothing to send: the schedules send nothing, so the
  // formula's figure is replaced by 0.
  bool trivial;
};

// A formula: the model's time in microseconds, or nothing where the
// algorithm cannot run these arguments (the hierarchical ones on hosts of
// unequal sizes).
using formula = std::optional<double> (*)(const pricing&);

// The time of `price` for `a`, where `default_chunk` is what the schedule
// cuts messages into when neither `chunk_bytes` nor a.chunk_bytes says
// (0 for schedules that do not chunk). `a` must have passed validate().
inline std::optional<double> time_us(formula price, std::size_t default_chunk, const collective_args& a,
                                     const cost_model& model, std::size_t chunk_bytes) {
  const int n = a.size;
  const bool v = is_v(a.kind);
  const std::size_t elements = v ? total(a.counts) : a.count;
  const int p = floor_pow2(n);
  const std::size_t bytes = chunk_bytes != 0 ? chunk_bytes : (a.chunk_bytes != 0 ? a.chunk_bytes : default_chunk);
  const pricing at{a,
                   model,
                   chunk_bytes,
                   std::max<std::size_t>(1, bytes / a.element_size),
                   {model.link.alpha_us, model.link.beta_us_per_byte, model.gamma_us_per_byte},
                   n,
                   a.element_size,
                   v,
                   elements,
                   ceil_log2(n),
                   log2_floor(n),
                   p != n,
                   real(n),
                   real(p),
                   n == 1 || (elements == 0 && !sends_when_empty(a.kind))};
  const auto us = price(at);
  if (!us) return us;
  return at.trivial ? 0.0 : *us;
}

// --- all_reduce ---------------------------------------------------------

// A rank folded in when n is not a power of two: its whole vector arrives
// and is combined, and the result goes back.
inline double all_reduce_fold(const pricing& at) noexcept {
  const double m = real(at.a.count * at.es);
  return at.folds ? 2 * at.t.message(m) + m * at.t.gamma : 0.0;
}

inline std::optional<double> all_reduce_ring(const pricing& at) {
  const std::size_t block = even_block(at.a.count, at.n);
  return ring_phase(at.t, at.n - 1, block, at.es, at.per_chunk, true) +
         ring_phase(at.t, at.n - 1, block, at.es, at.per_chunk, false);
}

inline std::optional<double> all_reduce_recursive_doubling(const pricing& at) {
  const double m = real(at.a.count * at.es);
  return real(at.levels) * (at.t.message(m) + m * at.t.gamma) + all_reduce_fold(at);
}

inline std::optional<double> all_reduce_rabenseifner(const pricing& at) {
  const double share = (at.active - 1) / at.active * real(at.a.count * at.es);
  return 2 * real(at.levels) * at.t.alpha + 2 * share * at.t.beta + share * at.t.gamma + all_reduce_fold(at);
}

// Two trees, each carrying half of the vector: up the tree with a
// reduction, then down. A rank is inner in one tree and a leaf in the
// other, so once the pipeline is full it sends four chunks (one up, two
// down in its inner tree, one up in the other) and combines two per chunk
// index: about 2 m bytes sent in all.
inline std::optional<double> all_reduce_double_binary_tree(const pricing& at) {
  const std::size_t half = at.a.count - at.a.count / 2;
  const std::size_t k = chunks_of(half, at.per_chunk);
  const double c = real(half * at.es) / real(k);
  const double hop = at.t.message(c);
  const double first = real(at.levels) * (4 * hop + c * at.t.gamma);
  return first + real(k - 1) * std::max(4 * hop, 2 * c * at.t.gamma);
}

// --- reduce, broadcast --------------------------------------------------

inline std::optional<double> reduce_binomial(const pricing& at) {
  const double m = real(at.a.count * at.es);
  return real(at.lg) * (at.t.message(m) + m * at.t.gamma);
}

// The ring reduce-scatter, then every rank's block to the root.
inline std::optional<double> reduce_ring(const pricing& at) {
  const std::size_t block = even_block(at.a.count, at.n);
  return ring_phase(at.t, at.n - 1, block, at.es, at.per_chunk, true) +
         real(at.n - 1) * at.t.message(real(block * at.es));
}

inline std::optional<double> broadcast_binomial(const pricing& at) {
  return real(at.lg) * at.t.message(real(at.a.count * at.es));
}

inline std::optional<double> broadcast_chain(const pricing& at) {
  const std::size_t k = chunks_of(at.a.count, at.per_chunk);
  return (real(at.n - 1) + real(k) - 1) * at.t.message(real(at.a.count * at.es) / real(k));
}

// --- all_gather, reduce_scatter (and their _v forms) ---------------------

// m: the whole output of all_gather, the whole input of reduce_scatter.
inline double gathered_bytes(const pricing& at) noexcept {
  return real(at.v ? at.elements * at.es : at.a.count * at.es * uz(at.n));
}
// b: the largest block a ring step moves.
inline std::size_t largest_block(const pricing& at) noexcept {
  return at.v ? *std::max_element(at.a.counts.begin(), at.a.counts.end()) : at.a.count;
}

inline std::optional<double> all_gather_ring(const pricing& at) {
  return ring_phase(at.t, at.n - 1, largest_block(at), at.es, at.per_chunk, false);
}

// Recursive doubling and bruck both send (n-1)/n m in lg rounds
// (recursive_doubling builds bruck's schedule off powers of two); bruck's
// local rotation is not priced.
inline std::optional<double> all_gather_doubling(const pricing& at) {
  return real(at.lg) * at.t.alpha + (at.ranks - 1) / at.ranks * gathered_bytes(at) * at.t.beta;
}

inline std::optional<double> reduce_scatter_ring(const pricing& at) {
  return ring_phase(at.t, at.n - 1, largest_block(at), at.es, at.per_chunk, true);
}

inline std::optional<double> reduce_scatter_recursive_halving(const pricing& at) {
  const double m = gathered_bytes(at);
  const double fold = at.folds ? at.t.message(m) + m * at.t.gamma + at.t.message(m / at.ranks) : 0.0;
  return real(at.levels) * at.t.alpha + (at.active - 1) / at.active * m * (at.t.beta + at.t.gamma) + fold;
}

// --- gather, scatter, all_to_all, barrier --------------------------------

inline std::optional<double> gather_scatter_binomial(const pricing& at) {
  return real(at.lg) * at.t.alpha + real(at.n - 1) * real(at.a.count * at.es) * at.t.beta;
}

// all_to_all_v: this rank's own counts, step k sending to r + k and
// receiving from r - k.
inline std::optional<double> all_to_all_pairwise(const pricing& at) {
  if (!at.v) return real(at.n - 1) * at.t.message(real(at.a.count * at.es));
  double us = 0;
  for (int k = 1; k < at.n; ++k) {
    const std::size_t out = at.a.counts[uz(wrap(at.a.rank + k, at.n))];
    const std::size_t in = at.a.recv_counts[uz(wrap(at.a.rank - k, at.n))];
    us += at.t.message(real(std::max(out, in) * at.es));
  }
  return us;
}

inline std::optional<double> all_to_all_bruck(const pricing& at) {
  const double b = real(at.a.count * at.es);
  double us = 0;
  for (int bit = 0; bit < at.lg; ++bit) us += at.t.message(real(ranks_with_bit(at.n, bit)) * b);
  return us;
}

inline std::optional<double> barrier_dissemination(const pricing& at) { return real(at.lg) * at.t.alpha; }

// --- hierarchical (hierarchical.hpp) on H hosts of L ranks ---------------
//
// Their intra-host phases on model.local, their inter-host phases on
// model.link, each rail with a link of its own, phases added up (they
// overlap per block in the schedule, so this errs high). Without a cluster
// view of several hosts, all ranks are one host on model.link, like the
// flat algorithms: the schedule then is the ring (binomial for broadcast)
// and costs the same. Nothing for hosts with different numbers of ranks,
// which the hierarchical algorithms reject.

struct host_shape {
  int hosts;
  int per_host;
  terms inter;
  terms intra;
};

inline std::optional<host_shape> host_shape_of(const pricing& at) {
  const collective_args& a = at.a;
  const int hosts = a.cluster ? a.cluster->host_count() : 1;
  const int per_host = a.cluster ? a.cluster->ranks_per_host() : a.size;
  if (per_host == 0) return std::nullopt;
  const link_cost& host_link = hosts > 1 ? at.model.local : at.model.link;
  return host_shape{hosts, per_host, at.t, {host_link.alpha_us, host_link.beta_us_per_byte, at.t.gamma}};
}

// The all_reduce among each rail group is `Rail` (cutting its messages into
// `RailChunk` by default); `Sliced` when the vector is cut into slices that
// pipeline through the phases because the rail algorithm does not stream
// chunks by itself. Slices pipeline: the first is reduced inside the host
// alone, then the rails and the host links work at once, the slower setting
// the pace.
template <formula Rail, std::size_t RailChunk, bool Sliced>
std::optional<double> hierarchical_all_reduce(const pricing& at) {
  const auto shape = host_shape_of(at);
  if (!shape) return std::nullopt;
  const std::size_t share = even_block(at.a.count, shape->per_host);
  const std::size_t slices =
      hierarchical::detail::pipeline_slices(at.a.count * at.es, shape->per_host, at.per_chunk * at.es, !Sliced);
  collective_args rail;
  rail.kind = collective::all_reduce;
  rail.size = shape->hosts;
  rail.count = even_block(share, static_cast<int>(slices));
  rail.element_size = at.es;
  rail.chunk_bytes = at.a.chunk_bytes;
  const auto across = time_us(Rail, RailChunk, rail, at.model, at.chunk_bytes);
  if (!across) return std::nullopt;
  const double inside = ring_phase(shape->intra, shape->per_host - 1, share, at.es, at.per_chunk, true) +
                        ring_phase(shape->intra, shape->per_host - 1, share, at.es, at.per_chunk, false);
  const double p = real(slices);
  return inside / p + std::max(inside * (p - 1) / p, p * *across);
}

inline std::optional<double> hierarchical_all_gather(const pricing& at) {
  const auto s = host_shape_of(at);
  if (!s) return std::nullopt;
  const std::size_t block = largest_block(at);
  return ring_phase(s->inter, s->hosts - 1, block, at.es, at.per_chunk, false) +
         real(s->hosts) * ring_phase(s->intra, s->per_host - 1, block, at.es, at.per_chunk, false);
}

inline std::optional<double> hierarchical_reduce_scatter(const pricing& at) {
  const auto s = host_shape_of(at);
  if (!s) return std::nullopt;
  const std::size_t block = largest_block(at);
  return real(s->hosts) * ring_phase(s->intra, s->per_host - 1, block, at.es, at.per_chunk, true) +
         ring_phase(s->inter, s->hosts - 1, block, at.es, at.per_chunk, true);
}

inline std::optional<double> hierarchical_broadcast(const pricing& at) {
  const auto s = host_shape_of(at);
  if (!s) return std::nullopt;
  const double m = real(at.a.count * at.es);
  return real(ceil_log2(s->hosts)) * s->inter.message(m) + real(ceil_log2(s->per_host)) * s->intra.message(m);
}

}  // namespace tutti::algorithm::detail::costs
