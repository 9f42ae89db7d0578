// Reading TUTTI_* and launcher environment variables, with errors that name
// the variable and the value that could not be parsed.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <tutti/error.hpp>

namespace tutti::detail {

// Looks a variable up; tests substitute a map for the process environment.
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

inline std::optional<std::string> process_env(std::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// A decimal integer in [min, max]; anything else names the variable.
inline std::int64_t parse_env_int(std::string_view name, std::string_view text, std::int64_t min, std::int64_t max) {
  std::int64_t value = 0;
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (status != std::errc{} || end != text.data() + text.size() || text.empty()) {
    fail(errc::invalid_argument, name, "='", text, "' is not an integer");
  }
  if (value < min || value > max) {
    fail(errc::invalid_argument, name, "=", value, " is out of range [", min, ", ", max, "]");
  }
  return value;
}

// Seconds, fractions allowed ("2.5"), positive and finite.
inline std::chrono::milliseconds parse_env_seconds(std::string_view name, std::string_view text) {
  double seconds = 0;
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (status != std::errc{} || end != text.data() + text.size() || text.empty() || !std::isfinite(seconds) ||
      seconds <= 0 || seconds > 1e9) {
    fail(errc::invalid_argument, name, "='", text, "' is not a positive number of seconds");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000.0)));
}

}  // namespace tutti::detail
