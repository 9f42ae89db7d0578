// Calibration of the cost model at start-up: rank 0 times round trips with
// one peer (on another host if there is one: the slowest link class; then
// with a peer on its own host too, for the hierarchical algorithms' local
// link) and a reduction, then broadcasts what it measured, so every rank
// ranks algorithms alike. Slopes leave per-message costs out; gamma comes
// from summing floats. Best cases, so that noise from other processes does
// not skew the ratios. A few milliseconds on shm.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <tutti/algorithm/cost_model.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/ops.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail {

// Microseconds per byte of a float sum, best of a few 1 MiB passes.
inline double measure_gamma() {
  constexpr std::size_t elements = std::size_t{256} << 10;
  std::vector<float> dst(elements, 1.0f), src(elements, 0.5f);
  const auto reduce = tutti::detail::reduction::make<float>(sum{});
  double best = 0;
  for (int i = 0; i < 4; ++i) {
    const auto started = transport::clock::now();
    reduce(dst.data(), src.data(), elements * sizeof(float));
    const double us = std::chrono::duration<double, std::micro>(transport::clock::now() - started).count();
    best = i == 0 ? us : std::min(best, us);
  }
  return std::max(best, 1e-3) / static_cast<double>(elements * sizeof(float));
}

}  // namespace tutti::detail

namespace tutti::runtime {

// `model` with the figures rank 0 measured over `comm` (a communicator:
// send, recv and broadcast of its own). Collective over `comm`.
template <class Comm>
algorithm::cost_model calibrated(Comm& comm, const topology::cluster& cluster, algorithm::cost_model model,
                                 std::string_view link_class) {
  const int rank = comm.rank();
  const int size = comm.size();
  const auto& here = cluster.ranks_on(0);
  int partner = 1;
  for (int r = 1; r < size; ++r) {
    if (!cluster.same_host(0, r)) {
      partner = r;
      break;
    }
  }
  // Across hosts, the link inside them is measured too, with rank 0's
  // first neighbour on its host.
  const int neighbour = !cluster.same_host(0, partner) && here.size() > 1 ? here[1] : -1;
  const auto started = transport::clock::now();
  // alpha, beta, gamma, local alpha, local beta
  double figures[5] = {model.link.alpha_us, model.link.beta_us_per_byte, model.gamma_us_per_byte, model.local.alpha_us,
                       model.local.beta_us_per_byte};
  // Sizes past L2, so the slope is not a cache's.
  constexpr std::size_t medium = std::size_t{256} << 10;
  constexpr std::size_t large = std::size_t{1} << 20;
  std::vector<std::uint8_t> payload;
  // Half the fastest of `rounds` round trips of `bytes` between rank 0
  // and `peer`, after one to warm up.
  auto one_way_us = [&](int peer, std::size_t bytes, int rounds) {
    const auto message = std::span(payload).first(bytes);
    const int other = rank == 0 ? peer : 0;
    double best = 0;
    for (int i = 0; i <= rounds; ++i) {
      const auto sent = transport::clock::now();
      if (rank == 0) {
        comm.send(std::span<const std::uint8_t>(message), other);
        comm.recv(message, other);
      } else {
        comm.recv(message, other);
        comm.send(std::span<const std::uint8_t>(message), other);
      }
      const double us = std::chrono::duration<double, std::micro>(transport::clock::now() - sent).count() / 2;
      if (i == 1 || (i > 1 && us < best)) best = us;
    }
    return best;
  };
  // alpha is half the fastest 8-byte round trip; beta the slope between
  // medium and large ones (a slope lost in noise keeps the default).
  auto measure = [&](int peer, double* alpha_beta) {
    if (rank != 0 && rank != peer) return;
    payload.resize(large);
    // Large first: by the time the small ones run, the other ranks have
    // stopped spinning and sleep, as they would in a real job's call.
    const double medium_us = one_way_us(peer, medium, 3);
    const double large_us = one_way_us(peer, large, 3);
    const double alpha = one_way_us(peer, 8, 16);
    if (rank != 0) return;
    alpha_beta[0] = alpha;
    if (large_us > medium_us) alpha_beta[1] = (large_us - medium_us) / static_cast<double>(large - medium);
  };
  measure(partner, figures);
  if (neighbour > 0) measure(neighbour, figures + 3);
  if (rank == 0) figures[2] = tutti::detail::measure_gamma();
  comm.broadcast(std::span<double>(figures), 0);
  model.link = {figures[0], figures[1]};
  model.gamma_us_per_byte = figures[2];
  model.local = {figures[3], figures[4]};
  tutti::detail::log(tutti::detail::log_level::info, "rank ", rank, ": cost model over ", link_class, ": alpha ",
                     figures[0], " us, ", 1e-3 / figures[1], " GB/s, reduce ", 1e-3 / figures[2],
                     " GB/s; inside a host: alpha ", figures[3], " us, ", 1e-3 / figures[4], " GB/s (calibrated in ",
                     std::chrono::duration<double, std::milli>(transport::clock::now() - started).count(), " ms)");
  return model;
}

}  // namespace tutti::runtime
