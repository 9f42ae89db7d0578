// Options of a communicator. Each field can be overridden by a TUTTI_*
// environment variable (listed in the README), applied by with_env().
#pragma once

#include <chrono>
#include <string>

#include <tutti/detail/env.hpp>

// Builds configured with -DTUTTI_CHECK_DEFAULT=1 (the dev preset) check
// every collective call by default.
#ifndef TUTTI_CHECK_DEFAULT
#define TUTTI_CHECK_DEFAULT 0
#endif

namespace tutti {

struct options {
  // One deadline for bootstrap and for every later wait (TUTTI_TIMEOUT, in
  // seconds, fractions allowed).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};

  // Which transport carries traffic between ranks (TUTTI_TRANSPORT): "auto"
  // picks per peer, by the preferences the transports declare
  // (transport/registry.hpp: threads of one process, then one host, then
  // RDMA, then sockets); a transport's name forces it for every peer, and a
  // peer it cannot reach is an error (errc::unavailable). The name is
  // checked against the transport list when a communicator forms.
  std::string transport = "auto";

  // Mismatch detection (TUTTI_CHECK=1): every message carries a header
  // describing its call, so ranks that call different collectives, counts,
  // dtypes, ops or roots get errc::mismatch naming both calls. Costs a small
  // message per message; for debugging and CI.
  bool check = TUTTI_CHECK_DEFAULT != 0;

  // Forced algorithms per collective (TUTTI_ALGO, e.g.
  // "all_reduce=ring,broadcast=binomial"); the rest are chosen by size.
  std::string algorithms;

  // The alpha-beta-gamma constants algorithms are ranked with
  // (algorithm/cost_model.hpp). With `calibrate` (TUTTI_CALIBRATE, default
  // 1) a new world measures them at start-up: rank 0 times a few round trips
  // with one peer and a reduction, and every rank adopts rank 0's figures,
  // so every rank makes the same choices. TUTTI_COST_MODEL (e.g.
  // "alpha_us=2,bandwidth_gbps=10,reduce_gbps=8"; see parse_cost_model)
  // gives constants that win over measured ones.
  bool calibrate = true;
  std::string cost_model;

  // These options with the TUTTI_* variables of `env` applied on top.
  [[nodiscard]] options with_env(const detail::env_lookup& env = detail::process_env) const {
    options out = *this;
    if (auto value = env("TUTTI_TIMEOUT")) out.timeout = detail::parse_env_seconds("TUTTI_TIMEOUT", *value);
    if (auto value = env("TUTTI_TRANSPORT")) out.transport = *value;
    if (auto value = env("TUTTI_ALGO")) out.algorithms = *value;
    if (auto value = env("TUTTI_CHECK")) out.check = detail::parse_env_int("TUTTI_CHECK", *value, 0, 1) == 1;
    if (auto value = env("TUTTI_CALIBRATE")) {
      out.calibrate = detail::parse_env_int("TUTTI_CALIBRATE", *value, 0, 1) == 1;
    }
    if (auto value = env("TUTTI_COST_MODEL")) out.cost_model = *value;
    return out;
  }
};

}  // namespace tutti
