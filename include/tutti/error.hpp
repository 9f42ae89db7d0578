// tutti::error: the one exception type tutti throws, with a code a program can
// branch on and the blame (rank, peer, collective, step) a person needs to find
// the culprit among thousands of ranks.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace tutti {

enum class errc {
  invalid_argument = 1,  // the caller passed something wrong; nothing was sent
  timeout,               // a wait passed its deadline
  remote_failure,        // a peer died, closed, or reported an error
  transport,             // the local transport failed (socket, verbs, shm)
  mismatch,              // ranks called different collectives, sizes or types
  aborted,               // the communicator was aborted
  unavailable,           // a requested feature or device is not present
  internal,              // a bug in tutti: please report it
};

constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::timeout: return "timeout";
    case errc::remote_failure: return "remote_failure";
    case errc::transport: return "transport";
    case errc::mismatch: return "mismatch";
    case errc::aborted: return "aborted";
    case errc::unavailable: return "unavailable";
    case errc::internal: return "internal";
  }
  return "unknown";
}

// Where an error happened. Fields left at their defaults are unknown or do
// not apply, and are left out of what().
struct blame {
  static constexpr int no_rank = -1;
  static constexpr std::int64_t no_step = -1;

  int rank = no_rank;           // the rank that raised the error
  int peer = no_rank;           // the remote rank involved
  std::string collective;       // e.g. "all_reduce"
  std::int64_t step = no_step;  // index of the schedule step
};

class error : public std::runtime_error {
 public:
  error(errc code, std::string message, blame where = {})
      : std::runtime_error(format(code, message, where)),
        code_(code),
        message_(std::move(message)),
        where_(std::move(where)) {}

  [[nodiscard]] errc code() const noexcept { return code_; }
  // The message without the code and blame decorations of what().
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  [[nodiscard]] const blame& where() const noexcept { return where_; }

 private:
  static std::string format(errc code, const std::string& message, const blame& where) {
    std::ostringstream out;
    out << "tutti: " << to_string(code) << ": " << message;
    std::string_view sep = " [";
    auto field = [&](auto&&... parts) {
      out << sep;
      (out << ... << parts);
      sep = ", ";
    };
    if (where.rank != blame::no_rank) field("rank ", where.rank);
    if (where.peer != blame::no_rank) field("peer ", where.peer);
    if (!where.collective.empty()) field(where.collective);
    if (where.step != blame::no_step) field("step ", where.step);
    if (sep != " [") out << ']';
    return std::move(out).str();
  }

  errc code_;
  std::string message_;
  blame where_;
};

namespace detail {

// Builds a message from streamable parts: detail::concat("got ", n, " bytes").
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return std::move(out).str();
}

template <class... Parts>
[[noreturn]] void fail(errc code, const Parts&... parts) {
  throw error(code, concat(parts...));
}

}  // namespace detail
}  // namespace tutti
