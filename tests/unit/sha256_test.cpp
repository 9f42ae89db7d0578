#include <tutti/detail/sha256.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

using tutti::detail::constant_time_equal;
using tutti::detail::hmac_sha256;
using tutti::detail::sha256;
using tutti::detail::sha256_of;
using tutti::detail::to_hex;

namespace {

// Deterministic text of any length whose bytes differ along the message, so
// word-order or offset mistakes change the digest.
std::string pattern(std::size_t length) {
  constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string text;
  for (std::size_t i = 0; i < length; ++i) text += alphabet[i % alphabet.size()];
  return text;
}

std::string hex_of(std::string_view data) { return to_hex(sha256_of(data)); }

}  // namespace

TEST_CASE("sha256 matches the FIPS 180 examples", "[sha256]") {
  CHECK(hex_of("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex_of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(hex_of(std::string(1'000'000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Expected digests computed with coreutils sha256sum over pattern(length).
TEST_CASE("sha256 pads correctly around block boundaries", "[sha256]") {
  const auto [length, expected] = GENERATE(table<std::size_t, std::string_view>({
      {55, "82a01e3dd9cf63b32f2137747c00d92aeacfcea35dc58b37cf6b01fbcd7b5092"},  // length fits in the block
      {56, "24d78d38b3e044ec7100a06261c63a1e94f48928104858fe5576aea695db1e6f"},  // length needs a new block
      {63, "b499f29a5bed5082ce023ec3a5e7f7df025e37906d05391cdeea9b6a2d1f1a8e"},
      {64, "9811e1ddf569b14d62a237a466700c99034c0836d098a02b2bd146265489c068"},
      {65, "4e43e86934fadc32af139ed8d8dbd9cc1c1e9468ddcc136e0c64669f0b116bd2"},
      {119, "b1a702951b2223de0788c49ac9fdfd63cbc653a61e993245b709e8034d7c6366"},
      {120, "fb14a9865f771eb9c48c2d045bb57765d12f51d15e29cdb8e7c3d585048933fc"},
  }));
  CAPTURE(length);
  CHECK(hex_of(pattern(length)) == expected);
}

TEST_CASE("sha256 gives the same digest for every split of the input", "[sha256]") {
  const std::string message = pattern(200);
  const std::string whole = hex_of(message);
  REQUIRE(whole == "5ba0977698f2ca18e82ff78940a9a666d84f3dd612ca022b811e276e3e465789");

  for (std::size_t split = 0; split <= message.size(); ++split) {
    sha256 hash;
    hash.update(std::string_view(message).substr(0, split));
    hash.update(std::string_view(message).substr(split));
    CAPTURE(split);
    CHECK(to_hex(hash.finish()) == whole);
  }

  sha256 bytewise;
  for (const char c : message) bytewise.update(std::string_view(&c, 1));
  CHECK(to_hex(bytewise.finish()) == whole);

  sha256 as_bytes;
  as_bytes.update(std::as_bytes(std::span(message.data(), message.size())));
  CHECK(to_hex(as_bytes.finish()) == whole);
}

TEST_CASE("sha256 rejects use after finish", "[sha256]") {
  sha256 hash;
  hash.update("abc");
  (void)hash.finish();
  const auto code_is_internal = [](const tutti::error& e) { return e.code() == tutti::errc::internal; };
  CHECK_THROWS_MATCHES(hash.finish(), tutti::error, Catch::Predicate<tutti::error>(code_is_internal));
  CHECK_THROWS_MATCHES(hash.update("more"), tutti::error, Catch::Predicate<tutti::error>(code_is_internal));
}

// RFC 4231, test cases 1 to 7.
TEST_CASE("hmac_sha256 matches the RFC 4231 test cases", "[sha256][hmac]") {
  std::string counting_key;
  for (char c = 0x01; c <= 0x19; ++c) counting_key += c;
  const std::string long_key(131, '\xaa');

  CHECK(to_hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(to_hex(hmac_sha256(std::string(20, '\xaa'), std::string(50, '\xdd'))) ==
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  CHECK(to_hex(hmac_sha256(counting_key, std::string(50, '\xcd'))) ==
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  const auto truncated = hmac_sha256(std::string(20, '\x0c'), "Test With Truncation");
  CHECK(to_hex(std::span(truncated).first(16)) == "a3b6167473100ee06e0c796c2955552b");
  CHECK(to_hex(hmac_sha256(long_key, "Test Using Larger Than Block-Size Key - Hash Key First")) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(to_hex(hmac_sha256(long_key,
                           "This is a test using a larger than block-size key and a larger than block-size data. The "
                           "key needs to be hashed before being used by the HMAC algorithm.")) ==
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("hmac_sha256 over parts equals hmac_sha256 over their concatenation", "[sha256][hmac]") {
  CHECK(hmac_sha256("key", {"nonce-a", "nonce-b", "label"}) == hmac_sha256("key", "nonce-anonce-blabel"));
  CHECK(hmac_sha256("key", {}) == hmac_sha256("key", ""));
  // A key of exactly one block is used as is; one byte more is hashed first.
  CHECK(to_hex(hmac_sha256(std::string(64, 'k'), "x")) ==
        "f91c4c403625fb06910ef93999265bbd2d62baeaec6ff36455498cc124fe3e66");
  CHECK(to_hex(hmac_sha256(std::string(65, 'k'), "x")) ==
        "75092ca3ee2b307470c227697b42b3e65376aa3bae98fb5a1f7b7536daa9588a");
}

TEST_CASE("constant_time_equal compares contents and lengths", "[sha256]") {
  const auto digest = sha256_of("abc");
  auto first_differs = digest;
  first_differs[0] ^= 0x01u;
  auto last_differs = digest;
  last_differs[31] ^= 0x80u;

  CHECK(constant_time_equal(digest, sha256_of("abc")));
  CHECK_FALSE(constant_time_equal(digest, first_differs));
  CHECK_FALSE(constant_time_equal(digest, last_differs));
  CHECK_FALSE(constant_time_equal(digest, std::span(digest).first(31)));
  CHECK(constant_time_equal(std::span<const std::uint8_t>(), std::span<const std::uint8_t>()));
}

TEST_CASE("to_hex writes two lowercase digits per byte", "[sha256]") {
  const std::uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  CHECK(to_hex(bytes) == "000fa5ff");
  CHECK(to_hex(std::span<const std::uint8_t>()).empty());
}
