// What the shm transport's attach does before any message moves: learn the
// peers on this host from their address cards, lay out this rank's segment,
// map and check each peer's segment, and meet the peers at the store
// barriers between those steps. It runs once per transport, so it lives
// apart from the channel protocol and the transport's progress loop.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/shm/layout.hpp>
#include <tutti/transport/shm/peer_process.hpp>
#include <tutti/transport/shm/segment.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail::shm {

// A peer on this host, as its address card describes it.
struct peer_info {
  int rank = 0;
  std::int64_t pid = 0;
  std::string segment;
};

// The segment name in `card`'s shm endpoint ("<segment name> <pid>").
inline std::string parse_endpoint(const address_card& card, int peer) {
  for (const auto& [transport_name, address] : card.endpoints) {
    if (transport_name != "shm") continue;
    const auto space = address.find(' ');
    const std::string_view segment = std::string_view(address).substr(0, space);
    std::int64_t pid = 0;
    const std::string_view pid_text =
        space == std::string::npos ? std::string_view{} : std::string_view(address).substr(space + 1);
    const auto [end, status] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (!segment.starts_with("/tutti-") || segment.find('/', 1) != std::string_view::npos || segment.size() > 200 ||
        status != std::errc{} || end != pid_text.data() + pid_text.size() || pid != card.pid) {
      tutti::detail::fail(errc::invalid_argument, "shm: rank ", peer, " (", card.describe(),
                          ") published a malformed endpoint ", tutti::detail::printable(address));
    }
    return std::string(segment);
  }
  tutti::detail::fail(errc::invalid_argument, "shm: rank ", peer, " (", card.describe(),
                      ") has no shm endpoint in its address card");
}

// The peers' segment names and pids from their cards, sorted by rank.
[[nodiscard]] inline std::vector<peer_info> describe_peers(const tutti::transport::context& ctx,
                                                           std::span<const address_card> cards,
                                                           std::span<const int> peers) {
  if (cards.size() != static_cast<std::size_t>(ctx.size)) {
    tutti::detail::fail(errc::invalid_argument, "shm: ", cards.size(), " address cards for a world of ", ctx.size);
  }
  const address_card& mine = cards[static_cast<std::size_t>(ctx.rank)];
  std::vector<peer_info> infos;
  for (const int peer : peers) {
    if (peer < 0 || peer >= ctx.size || peer == ctx.rank) {
      tutti::detail::fail(errc::invalid_argument, "shm: rank ", ctx.rank, " cannot serve peer ", peer,
                          " in a world of ", ctx.size);
    }
    const address_card& card = cards[static_cast<std::size_t>(peer)];
    if (card.host_id != mine.host_id) {
      tutti::detail::fail(errc::invalid_argument, "shm: rank ", peer, " (", card.describe(),
                          ") is not on this host (rank ", ctx.rank, ", ", mine.describe(), ")");
    }
    peer_info info;
    info.rank = peer;
    info.pid = card.pid;
    info.segment = parse_endpoint(card, peer);
    infos.push_back(std::move(info));
  }
  std::sort(infos.begin(), infos.end(), [](const auto& a, const auto& b) { return a.rank < b.rank; });
  for (std::size_t i = 1; i < infos.size(); ++i) {
    if (infos[i].rank == infos[i - 1].rank) {
      tutti::detail::fail(errc::invalid_argument, "shm: peer ", infos[i].rank, " listed twice");
    }
  }
  return infos;
}

// Lays out this rank's new segment at `base`: the header, the table of the
// ring producers' ranks (`infos`, in ring order), and empty rings.
inline segment_header* format_segment(std::byte* base, int rank, const geometry& layout,
                                      const std::vector<peer_info>& infos) {
  auto* header = new (base) segment_header{};
  header->magic = segment_magic;
  header->version = layout_version;
  header->rank = rank;
  header->pid = ::getpid();
  header->owner_address = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(base));
  header->segment_bytes = layout.total_bytes();
  header->ring_bytes = layout.ring_bytes;
  header->slot_bytes = static_cast<std::uint32_t>(slot_bytes);
  header->ring_count = layout.ring_count;
  auto* table = reinterpret_cast<std::int32_t*>(base + geometry::table_offset());
  for (std::uint32_t i = 0; i < layout.ring_count; ++i) {
    table[i] = infos[i].rank;
    new (base + layout.ring_offset(i)) ring_control{};
  }
  return header;
}

// A peer's segment, mapped and checked.
struct peer_segment {
  std::shared_ptr<mapping> mapped;
  segment_header* header = nullptr;
  geometry layout;
  std::uint32_t ring = 0;  // the ring that carries rank `rank`'s messages to the peer
};

// Maps peer `info`'s segment and checks that it is a segment of this layout
// version, owned by that peer, with consistent sizes and a ring for `rank`.
inline peer_segment open_peer_segment(const peer_info& info, int rank) {
  auto mapped = open_segment(info.segment);
  auto bad = [&](std::string_view why) {
    tutti::detail::fail(errc::transport, "shm: segment ", info.segment, " of rank ", info.rank, " (pid ", info.pid,
                        "): ", why);
  };
  if (mapped->size() < sizeof(segment_header)) bad("too small");
  auto* peer_header = reinterpret_cast<segment_header*>(mapped->base());
  if (peer_header->magic != segment_magic || peer_header->version != layout_version) {
    bad("not a tutti segment of this version");
  }
  if (peer_header->rank != info.rank || peer_header->pid != info.pid) bad("belongs to another rank");
  const geometry theirs{peer_header->ring_bytes, peer_header->ring_count};
  if (peer_header->slot_bytes != slot_bytes || theirs.ring_bytes < 2 * slot_bytes ||
      (theirs.ring_bytes & (theirs.ring_bytes - 1)) != 0 || theirs.ring_bytes > (std::uint64_t{1} << 30U) ||
      theirs.total_bytes() != peer_header->segment_bytes || peer_header->segment_bytes > mapped->size()) {
    bad("inconsistent sizes");
  }
  const auto* table = reinterpret_cast<const std::int32_t*>(mapped->base() + geometry::table_offset());
  std::uint32_t slot = theirs.ring_count;
  for (std::uint32_t i = 0; i < theirs.ring_count; ++i) {
    if (table[i] == rank) slot = i;
  }
  if (slot == theirs.ring_count) bad(tutti::detail::concat("has no ring for rank ", rank));
  return {std::move(mapped), peer_header, theirs, slot};
}

// Whether the kernel lets us read the peer's memory: read its magic where
// the peer itself mapped its header.
inline bool probe(const peer_info& info, const segment_header& header) {
  std::uint64_t value = 0;
  const int code = read_process(static_cast<pid_t>(info.pid), &value, header.owner_address, sizeof value);
  if (code != 0 || value != segment_magic) {
    tutti::detail::log(tutti::detail::log_level::info, "shm: cannot read the memory of rank ", info.rank, " (pid ",
                       info.pid, "): ", code != 0 ? errno_message(code) : "unexpected contents",
                       "; large messages to it go through the ring");
    return false;
  }
  return true;
}

// Publishes in `ctx`'s store that the rank with segment `name` reached
// `stage`, and waits until every peer has.
inline void barrier(const tutti::transport::context& ctx, const std::string& name, std::string_view stage,
                    std::string_view doing, const std::vector<peer_info>& infos,
                    tutti::transport::clock::time_point deadline) {
  store& s = *ctx.scoped_store;
  auto key = [&](const std::string& segment) { return tutti::detail::concat("shm/", stage, segment); };
  s.set(key(name), "1");
  std::vector<std::string> keys;
  keys.reserve(infos.size());
  for (const auto& info : infos) keys.push_back(key(info.segment));
  const auto left =
      std::max(std::chrono::milliseconds(1),
               std::chrono::duration_cast<std::chrono::milliseconds>(deadline - tutti::transport::clock::now()));
  try {
    s.wait(keys, left);
  } catch (const error& e) {
    if (e.code() != errc::timeout) throw;
    const auto present = s.contains(keys);
    std::string missing;
    int count = 0;
    for (std::size_t i = 0; i < infos.size(); ++i) {
      if (present[i]) continue;
      missing += tutti::detail::concat(count++ == 0 ? "" : ", ", infos[i].rank, " (pid ", infos[i].pid, ")");
    }
    tutti::detail::fail(errc::timeout, "shm: rank ", ctx.rank, " waited ",
                        std::chrono::duration<double>(ctx.config.timeout).count(), " s for rank",
                        count == 1 ? " " : "s ", missing, " to ", doing);
  }
}

}  // namespace tutti::detail::shm
