#include <tutti/error.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("error carries code and message and blame into what()", "[error]") {
  const tutti::error plain(tutti::errc::timeout, "waited 2.5 s for rank 7");
  CHECK(plain.code() == tutti::errc::timeout);
  CHECK(plain.message() == "waited 2.5 s for rank 7");
  CHECK(std::string(plain.what()) == "tutti: timeout: waited 2.5 s for rank 7");

  const tutti::error blamed(tutti::errc::mismatch, "dtype float32 vs int32", {3, 5, "all_reduce", 7});
  CHECK(std::string(blamed.what()) == "tutti: mismatch: dtype float32 vs int32 [rank 3, peer 5, all_reduce, step 7]");
  CHECK(blamed.where().peer == 5);
  CHECK(blamed.where().collective == "all_reduce");

  tutti::blame only_peer;
  only_peer.peer = 2;
  const tutti::error partial(tutti::errc::remote_failure, "connection reset", only_peer);
  CHECK(std::string(partial.what()) == "tutti: remote_failure: connection reset [peer 2]");
}

TEST_CASE("every error code has a name", "[error]") {
  using tutti::errc;
  for (auto code : {errc::invalid_argument, errc::timeout, errc::remote_failure, errc::transport, errc::mismatch,
                    errc::aborted, errc::unavailable, errc::internal}) {
    CHECK(tutti::to_string(code) != "unknown");
  }
}

TEST_CASE("detail::fail throws a tutti::error usable as std::runtime_error", "[error]") {
  try {
    tutti::detail::fail(tutti::errc::invalid_argument, "count ", 12, " is not a multiple of ", 5);
    FAIL("fail() returned");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "tutti: invalid_argument: count 12 is not a multiple of 5");
  }
}
