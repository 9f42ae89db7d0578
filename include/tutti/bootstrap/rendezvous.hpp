// Rendezvous: every rank publishes its address card and reads everyone's.
//
// Store traffic per rank is a constant number of round trips plus one
// batched read of all cards, whatever the world size (keys below are under
// the communicator's prefix):
//   1. compare_set("card/<rank>", "", card): claims the rank; finding another
//      card there means two processes were given the same rank.
//   2. add("arrived", 1): the rank that brings the count to the world size
//      publishes "ready" = "ok <size>"; a rank that sees the count overshoot
//      its world size publishes a fault instead.
//   3. get("ready"): waits for the last arrival (or the first fault). On
//      timeout, one contains() over the card keys names the ranks that never
//      arrived, after checking the cards of those that did.
//   4. multi_get(all cards): the batched read; then every card is checked for
//      world size and library version.
// Four round trips per rank, one more for the rank that completes the
// arrival count.
#pragma once

#include <charconv>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/error.hpp>

namespace tutti::detail {

// A fault travels through the "ready" key as "<errc>:<message>", so every
// waiting rank raises the error the faulty rank found.
inline std::string encode_fault(errc code, std::string_view message) {
  return concat(static_cast<int>(code), ':', message);
}

[[noreturn]] inline void raise_fault(std::string_view fault) {
  int code = static_cast<int>(errc::internal);
  const auto colon = fault.find(':');
  std::from_chars(fault.data(), fault.data() + colon, code);
  fail(static_cast<errc>(code), fault.substr(colon + 1));
}

inline std::string card_key(int rank) { return concat("card/", rank); }

inline void check_card(const address_card& card, const address_card& mine, int index) {
  if (card.rank != index) {
    fail(errc::internal, "rendezvous: the card under rank ", index, " says rank ", card.rank);
  }
  if (card.world_size != mine.world_size) {
    fail(errc::mismatch, "rendezvous: rank ", index, " (", card.describe(), ") has world size ", card.world_size,
         " but rank ", mine.rank, " (", mine.describe(), ") has ", mine.world_size);
  }
  // Before 1.0 every minor version may change the wire formats.
  if (card.library.major != mine.library.major || card.library.minor != mine.library.minor) {
    fail(errc::mismatch, "rendezvous: rank ", index, " (", card.describe(), ") runs tutti ", card.library.major, '.',
         card.library.minor, '.', card.library.patch, " but rank ", mine.rank, " (", mine.describe(), ") runs ",
         mine.library.major, '.', mine.library.minor, '.', mine.library.patch);
  }
}

// After a timeout: a disagreement among the ranks that did arrive (world
// size, version) explains the stall better than the ranks that did not.
[[noreturn]] inline void report_stall(store& s, const address_card& mine, store::timeout_type timeout) {
  const int size = mine.world_size;
  std::vector<std::string> keys;
  for (int r = 0; r < size; ++r) keys.push_back(card_key(r));
  const auto present = s.contains(keys);
  std::vector<std::string> arrived_keys;
  std::string missing;
  int count = 0;
  for (int r = 0; r < size; ++r) {
    if (present[static_cast<std::size_t>(r)]) {
      arrived_keys.push_back(keys[static_cast<std::size_t>(r)]);
    } else if (++count <= 32) {
      missing += concat(count == 1 ? "" : ", ", r);
    }
  }
  const auto texts = s.multi_get(arrived_keys, timeout);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto card = address_card::parse(texts[i], arrived_keys[i]);
    check_card(card, mine, card.rank);
  }
  if (count > 32) missing += concat(" and ", count - 32, " more");
  fail(errc::timeout, "rendezvous: ", count, " of ", size, " ranks never arrived within ",
       static_cast<double>(timeout.count()) / 1000.0, " s: rank", count == 1 ? " " : "s ", missing);
}

// Returns every rank's card, indexed by rank. `s` is already scoped to this
// communicator (a prefix_store).
inline std::vector<address_card> rendezvous(store& s, const address_card& mine, store::timeout_type timeout) {
  const int size = mine.world_size;
  const std::string serialized = mine.serialize();

  const std::string claimed = s.compare_set(card_key(mine.rank), "", serialized);
  if (claimed != serialized) {
    const auto other = address_card::parse(claimed, card_key(mine.rank));
    const std::string message = concat("rendezvous: rank ", mine.rank,
                                       " was given to two processes: ", other.describe(), " and ", mine.describe());
    s.compare_set("ready", "", encode_fault(errc::invalid_argument, message));
    fail(errc::invalid_argument, message);
  }

  const std::int64_t arrived = s.add("arrived", 1);
  const std::string ok = concat("ok ", size);
  if (arrived == size) {
    s.compare_set("ready", "", ok);
  } else if (arrived > size) {
    const std::string message = concat("rendezvous: ", arrived, " ranks arrived but rank ", mine.rank, " (",
                                       mine.describe(), ") has world size ", size, ": ranks disagree on the size");
    s.compare_set("ready", "", encode_fault(errc::mismatch, message));
    fail(errc::mismatch, message);
  }

  std::string ready;
  try {
    ready = s.get("ready", timeout);
  } catch (const error& e) {
    if (e.code() != errc::timeout) throw;
    report_stall(s, mine, timeout);
  }
  if (ready != ok) {
    if (ready.starts_with("ok ")) {
      fail(errc::mismatch, "rendezvous: all ranks of a world of ", ready.substr(3), " arrived, but rank ", mine.rank,
           " (", mine.describe(), ") has world size ", size);
    }
    raise_fault(ready);
  }

  std::vector<std::string> keys;
  keys.reserve(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) keys.push_back(card_key(r));
  const auto texts = s.multi_get(keys, timeout);
  std::vector<address_card> cards;
  cards.reserve(texts.size());
  for (int r = 0; r < size; ++r) {
    cards.push_back(address_card::parse(texts[static_cast<std::size_t>(r)], keys[static_cast<std::size_t>(r)]));
    check_card(cards.back(), mine, r);
  }
  return cards;
}

}  // namespace tutti::detail
