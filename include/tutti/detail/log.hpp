// The one logging sink: TUTTI_LOG=error|warn|info|debug|trace (default warn)
// selects what reaches stderr. Used off the hot path only: a disabled level
// costs one relaxed load and a compare, and formats nothing.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <string_view>

#include <tutti/detail/env.hpp>
#include <tutti/error.hpp>

namespace tutti::detail {

enum class log_level : int { error = 0, warn, info, debug, trace };

inline log_level parse_log_level(std::string_view text) {
  constexpr std::string_view names[] = {"error", "warn", "info", "debug", "trace"};
  for (int i = 0; i < 5; ++i) {
    if (text == names[i]) return static_cast<log_level>(i);
  }
  fail(errc::invalid_argument, "TUTTI_LOG='", text, "' is not one of error, warn, info, debug, trace");
}

inline std::atomic<int>& log_threshold() {
  // A bad TUTTI_LOG must not turn a log call (possibly in a destructor) into
  // an exception: it is reported once and the default applies.
  static std::atomic<int> threshold = [] {
    const auto value = process_env("TUTTI_LOG");
    if (!value) return static_cast<int>(log_level::warn);
    try {
      return static_cast<int>(parse_log_level(*value));
    } catch (const error& e) {
      std::fprintf(stderr, "%s; using warn\n", e.what());
      return static_cast<int>(log_level::warn);
    }
  }();
  return threshold;
}

inline bool log_enabled(log_level level) noexcept {
  return static_cast<int>(level) <= log_threshold().load(std::memory_order_relaxed);
}

template <class... Parts>
void log(log_level level, const Parts&... parts) {
  if (!log_enabled(level)) return;
  constexpr const char* names[] = {"error", "warn", "info", "debug", "trace"};
  // One write per line, so lines of concurrent ranks do not interleave.
  const std::string line = concat("tutti[", ::getpid(), "] ", names[static_cast<int>(level)], ": ", parts..., '\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace tutti::detail
