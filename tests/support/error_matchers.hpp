// Matching a tutti::error by its code and a fragment of its message, the way
// tests state an expected failure without pinning the whole text.
#pragma once

#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include <tutti/error.hpp>

namespace tutti::test {

// Whether `e` has `code` and its message contains `fragment`.
inline bool is_error(const tutti::error& e, tutti::errc code, std::string_view fragment) {
  return e.code() == code && e.message().find(fragment) != std::string::npos;
}

}  // namespace tutti::test

// CHECKs that `expr` throws a tutti::error with `code` whose message contains
// `fragment`.
#define CHECK_TUTTI_ERROR(expr, code, fragment)                                              \
  CHECK_THROWS_MATCHES(                                                                      \
      expr, tutti::error,                                                                    \
      Catch::Matchers::Predicate<tutti::error>(                                              \
          [&](const tutti::error& e) { return ::tutti::test::is_error(e, code, fragment); }, \
          std::string("tutti::error ") + std::string(tutti::to_string(code)) + " containing '" + fragment + "'"))
