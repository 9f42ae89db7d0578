// libFuzzer target for every decoder of untrusted bytes: the TCP store's wire
// protocol (requests, responses, handshake messages, frame prefixes) and the
// address cards ranks exchange at rendezvous.
//
// Input: one selector byte, then the bytes handed to the decoder it picks.
// Decoders must either succeed or throw tutti::error(invalid_argument), or
// errc::mismatch for a protocol version mismatch in a hello; anything else
// escapes so libFuzzer reports it. A decoded value is encoded again and
// decoded a second time: the value must survive unchanged, and where the
// format has one encoding per value the bytes must too.
//
// Run with `--write-seeds DIR` to write one valid input per decoder into DIR
// and exit: tests/fuzz/run_fuzz.cmake seeds the corpus that way.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/store_protocol.hpp>
#include <tutti/error.hpp>

namespace {

namespace sw = tutti::detail::store_wire;

enum class target : std::uint8_t {
  request,
  response,
  server_hello,
  client_hello,
  verdict,
  address_card,
  frame_length,
  count
};

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "wire_fuzz: %s\n", what);
  std::abort();
}

void require(bool ok, const char* what) {
  if (!ok) broken(what);
}

// The body of a frame encode() built, after checking its length prefix.
std::vector<std::byte> body_of(const std::vector<std::byte>& frame) {
  require(frame.size() >= 4, "encoded frame shorter than its prefix");
  const std::size_t length = sw::frame_length(std::span<const std::byte, 4>(frame.data(), 4));
  require(length == frame.size() - 4, "frame prefix disagrees with the body encode() wrote");
  return {frame.begin() + 4, frame.end()};
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool equal(const sw::request& a, const sw::request& b) {
  return a.op == b.op && a.timeout_ms == b.timeout_ms && a.number == b.number && a.keys == b.keys &&
         a.values == b.values;
}
bool equal(const sw::response& a, const sw::response& b) {
  return a.code == b.code && a.number == b.number && a.items == b.items;
}
bool equal(const sw::server_hello& a, const sw::server_hello& b) {
  return a.auth_required == b.auth_required && a.server_nonce == b.server_nonce;
}
bool equal(const sw::client_hello& a, const sw::client_hello& b) {
  return a.client_nonce == b.client_nonce && a.proof == b.proof;
}
bool equal(const sw::verdict& a, const sw::verdict& b) { return a.accepted == b.accepted && a.proof == b.proof; }
bool equal(const tutti::address_card& a, const tutti::address_card& b) {
  return a.rank == b.rank && a.world_size == b.world_size && a.host_id == b.host_id && a.hostname == b.hostname &&
         a.pid == b.pid && a.library.major == b.library.major && a.library.minor == b.library.minor &&
         a.library.patch == b.library.patch && a.endpoints == b.endpoints;
}

// Once a decoder accepted the input, encoding the value and decoding it again
// must not throw: a tutti::error there is a bug, not a rejection.
template <class Check>
void after_decode(Check check) {
  try {
    check();
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "wire_fuzz: accepted input, but its re-encoding was rejected: %s\n", e.what());
    std::abort();
  }
}

// Decodes `input`, re-encodes the value, decodes that and compares. With
// `canonical`, the re-encoded body must also equal the input byte for byte
// (false where the decoder normalises a field: any nonzero u8 flag to 1).
template <class Decode>
void round_trip(std::span<const std::byte> input, Decode decode, bool canonical) {
  const auto value = decode(input);
  after_decode([&] {
    const auto body = body_of(sw::encode(value));
    require(body.size() == input.size(), "re-encoding changed the length");
    if (canonical) require(same_bytes(input, body), "re-encoding changed the bytes");
    const auto again = decode(body);
    require(equal(value, again), "value changed across encode and decode");
    require(same_bytes(body, body_of(sw::encode(again))), "second encoding differs from the first");
  });
}

void card_round_trip(std::span<const std::byte> input) {
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  const auto card = tutti::address_card::parse(text, "fuzz");
  after_decode([&] {
    const std::string serialized = card.serialize();
    require(serialized == text, "re-serializing the address card changed the bytes");
    const auto again = tutti::address_card::parse(serialized, "fuzz");
    require(equal(card, again), "address card changed across serialize and parse");
    require(again.serialize() == serialized, "second serialization differs from the first");
  });
}

void check_frame_length(std::span<const std::byte> input) {
  if (input.size() < 4) return;
  std::uint32_t expected = 0;
  std::memcpy(&expected, input.data(), 4);
  bool threw = false;
  std::size_t got = 0;
  try {
    got = sw::frame_length(input.first<4>());
  } catch (const tutti::error& e) {
    require(e.code() == tutti::errc::invalid_argument, "frame_length threw a code other than invalid_argument");
    threw = true;
  }
  if (expected > sw::max_frame) {
    require(threw, "frame_length accepted a frame longer than max_frame");
  } else {
    require(!threw, "frame_length rejected a frame within max_frame");
    require(got == expected, "frame_length misread the prefix");
  }
}

void run_one(target which, std::span<const std::byte> input) {
  switch (which) {
    case target::request: return round_trip(input, sw::decode_request, true);
    case target::response: return round_trip(input, sw::decode_response, true);
    case target::server_hello: return round_trip(input, sw::decode_server_hello, false);
    case target::client_hello: return round_trip(input, sw::decode_client_hello, true);
    case target::verdict: return round_trip(input, sw::decode_verdict, false);
    case target::address_card: return card_round_trip(input);
    case target::frame_length: return check_frame_length(input);
    case target::count: break;
  }
  broken("unknown target");
}

// --- seeds -----------------------------------------------------------------

sw::nonce pattern(std::uint8_t start) {
  sw::nonce out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(start + i);
  return out;
}

void write_seed(const std::string& dir, const std::string& name, target which, std::span<const std::byte> body) {
  std::ofstream out(dir + "/seed-" + name, std::ios::binary | std::ios::trunc);
  const char selector = static_cast<char>(which);
  out.write(&selector, 1);
  out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
  if (!out) broken("cannot write a seed file");
}

template <class Message>
void write_message_seed(const std::string& dir, const std::string& name, target which, const Message& message) {
  const auto frame = sw::encode(message);
  write_seed(dir, name, which, std::span(frame).subspan(4));
}

void write_seeds(const std::string& dir) {
  write_message_seed(dir, "set", target::request, sw::request{sw::opcode::set, 1000, 0, {"key"}, {"value"}});
  write_message_seed(dir, "multi_get", target::request,
                     sw::request{sw::opcode::multi_get, 0, 0, {"a", "bb", std::string(3, '\0')}, {}});
  // Many short strings, so that counts worth hundreds of allocations are in reach.
  write_message_seed(dir, "multi_get_many", target::request,
                     sw::request{sw::opcode::multi_get, 0, 0, std::vector<std::string>(300, "k"), {}});
  write_message_seed(dir, "add", target::request, sw::request{sw::opcode::add, 5, -7, {"counter"}, {}});
  write_message_seed(dir, "compare_set", target::request,
                     sw::request{sw::opcode::compare_set, 0, 0, {"k"}, {"expected", "desired"}});
  write_message_seed(dir, "wait", target::request, sw::request{sw::opcode::wait, 30000, 0, {"x", "y"}, {}});
  write_message_seed(dir, "contains", target::request, sw::request{sw::opcode::contains, 0, 0, {"x"}, {}});
  write_message_seed(dir, "erase", target::request, sw::request{sw::opcode::erase, 0, 0, {"gone"}, {}});
  write_message_seed(dir, "response_ok", target::response, sw::response{sw::status::ok, 42, {"one", "", "three"}});
  write_message_seed(dir, "response_error", target::response, sw::response{sw::status::error, -1, {"why"}});
  write_message_seed(dir, "server_hello", target::server_hello, sw::server_hello{true, pattern(1)});
  write_message_seed(dir, "client_hello", target::client_hello, sw::client_hello{pattern(2), pattern(100)});
  write_message_seed(dir, "verdict", target::verdict, sw::verdict{true, pattern(7)});

  tutti::address_card card;
  card.rank = 3;
  card.world_size = 8;
  card.host_id = "node-a/0123-4567";
  card.hostname = "node-a";
  card.pid = 4242;
  card.library = tutti::version;
  card.endpoints = {{"tcp", "10.0.0.1:29500"}, {"shm", "/tutti-3"}};
  const std::string text = card.serialize();
  write_seed(dir, "address_card", target::address_card, std::as_bytes(std::span(text.data(), text.size())));

  const std::uint32_t length = 1234;
  write_seed(dir, "frame_length", target::frame_length, std::as_bytes(std::span(&length, 1)));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  if (*argc == 3 && std::string_view((*argv)[1]) == "--write-seeds") {
    write_seeds((*argv)[2]);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto which = static_cast<target>(data[0] % static_cast<std::uint8_t>(target::count));
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  try {
    run_one(which, input);
  } catch (const tutti::error& e) {
    // A hello from another protocol version is a mismatch; every other
    // rejection is invalid_argument.
    const bool hello = which == target::server_hello || which == target::client_hello;
    const bool expected = e.code() == tutti::errc::invalid_argument || (hello && e.code() == tutti::errc::mismatch);
    if (!expected) {
      std::fprintf(stderr, "wire_fuzz: unexpected error code: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
