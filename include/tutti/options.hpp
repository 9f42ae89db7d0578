// Options of a communicator. Each field can be overridden by a TUTTI_*
// environment variable (listed in the README), applied by with_env().
#pragma once

#include <chrono>

#include <tutti/detail/env.hpp>

namespace tutti {

struct options {
  // One deadline for bootstrap and for every later wait (TUTTI_TIMEOUT, in
  // seconds, fractions allowed).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};

  // These options with the TUTTI_* variables of `env` applied on top.
  [[nodiscard]] options with_env(const detail::env_lookup& env = detail::process_env) const {
    options out = *this;
    if (auto value = env("TUTTI_TIMEOUT")) out.timeout = detail::parse_env_seconds("TUTTI_TIMEOUT", *value);
    return out;
  }
};

}  // namespace tutti
