// Mismatch detection (TUTTI_CHECK): in check mode every message of a
// collective is preceded on its channel by a small header describing the
// call that sent it (collective, call number, element count, dtype, op,
// root, message bytes). The receiver compares it with its own call before
// accepting the data, so ranks that call different collectives, counts,
// dtypes, ops or roots get errc::mismatch naming both ranks and both calls,
// instead of a hang or silently wrong data. A ring exchange of the same
// header before the schedule catches calls whose schedules would never make
// the two disagreeing ranks talk (a broadcast with different roots).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include <tutti/algorithm/collective.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/types.hpp>

namespace tutti::runtime {

// What one rank is doing, as far as its peers must agree.
struct call_signature {
  algorithm::collective kind = algorithm::collective::barrier;
  std::uint8_t element_type = no_type;  // a tutti::dtype, or no_type for untyped calls
  std::uint8_t op = no_op;              // a tutti::op_kind, or no_op
  std::int32_t root = 0;
  std::uint64_t sequence = 0;  // this communicator's call number
  std::uint64_t count = 0;

  static constexpr std::uint8_t no_type = 0xff;
  static constexpr std::uint8_t no_op = 0xff;

  friend bool operator==(const call_signature&, const call_signature&) = default;

  [[nodiscard]] std::string describe() const {
    std::string out = detail::concat(algorithm::to_string(kind), " #", sequence, " of ", count, ' ');
    out += element_type == no_type ? std::string("elements")
                                   : std::string(to_string(static_cast<dtype>(element_type))) + " elements";
    if (op != no_op) out += detail::concat(" with ", to_string(static_cast<op_kind>(op)));
    out += detail::concat(", root ", root);
    return out;
  }
};

// The header on the wire: fixed size, so that a header receive always
// matches a header send whatever the two calls are.
struct message_header {
  static constexpr std::uint32_t expected_magic = 0x4b48'4354;  // "TCHK"
  std::uint32_t magic = expected_magic;
  std::uint8_t kind = 0;
  std::uint8_t element_type = 0;
  std::uint8_t op = 0;
  std::uint8_t reserved = 0;
  std::int32_t root = 0;
  std::uint32_t reserved2 = 0;
  std::uint64_t sequence = 0;
  std::uint64_t count = 0;
  std::uint64_t bytes = 0;  // of the data message that follows

  static message_header of(const call_signature& call, std::uint64_t bytes) {
    message_header h;
    h.kind = static_cast<std::uint8_t>(call.kind);
    h.element_type = call.element_type;
    h.op = call.op;
    h.root = call.root;
    h.sequence = call.sequence;
    h.count = call.count;
    h.bytes = bytes;
    return h;
  }

  [[nodiscard]] call_signature call() const {
    call_signature c;
    c.kind = static_cast<algorithm::collective>(kind);
    c.element_type = element_type;
    c.op = op;
    c.root = root;
    c.sequence = sequence;
    c.count = count;
    return c;
  }
};
static_assert(sizeof(message_header) == 40);

// Compares what `peer` sent with what this rank expects; throws mismatch
// naming both ranks and both calls.
inline void check_header(const message_header& got, const call_signature& mine, std::uint64_t expected_bytes, int rank,
                         int peer) {
  if (got.magic != message_header::expected_magic ||
      got.kind > static_cast<std::uint8_t>(algorithm::collective::barrier)) {
    detail::fail(errc::mismatch, "rank ", peer, " sent data where rank ", rank, " expected the check header of ",
                 mine.describe(), " (is TUTTI_CHECK set on every rank?)");
  }
  if (got.call() != mine) {
    detail::fail(errc::mismatch, "rank ", peer, " called ", got.call().describe(), " but rank ", rank, " called ",
                 mine.describe());
  }
  if (got.bytes != expected_bytes) {
    detail::fail(errc::mismatch, "in ", mine.describe(), " rank ", peer, " sent ", got.bytes, " bytes where rank ",
                 rank, " expected ", expected_bytes);
  }
}

}  // namespace tutti::runtime
