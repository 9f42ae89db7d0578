// The store contract, checked against every implementation, plus what is
// specific to the TCP store: authentication, malformed input, lost servers.
#include <tutti/bootstrap/file_store.hpp>
#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/error_matchers.hpp"
#include "../support/subprocess.hpp"

using namespace std::chrono_literals;

namespace {

struct memory_fixture {
  std::shared_ptr<tutti::memory_store> shared = std::make_shared<tutti::memory_store>();
  std::shared_ptr<tutti::store> client() { return shared; }
};

struct tcp_fixture {
  tutti::tcp_store_server server{{"127.0.0.1", 0}, "s3cret"};
  std::shared_ptr<tutti::store> client() {
    return std::make_shared<tutti::tcp_store>(server.address(), "s3cret", std::chrono::milliseconds(5000));
  }
};

struct file_fixture {
  std::filesystem::path dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "tutti-store-XXXXXX").string();
    return std::filesystem::path(::mkdtemp(pattern.data()));
  }();
  ~file_fixture() { std::filesystem::remove_all(dir); }
  std::shared_ptr<tutti::store> client() { return std::make_shared<tutti::file_store>(dir); }
};

}  // namespace

TEMPLATE_TEST_CASE("store contract", "[store]", memory_fixture, tcp_fixture, file_fixture) {
  TestType fixture;
  auto store = fixture.client();
  auto other = fixture.client();

  SECTION("set and get binary values") {
    const std::string binary("a\0b\xff", 4);
    store->set("k", binary);
    CHECK(other->get("k", 1s) == binary);
    store->set("k", "");
    CHECK(other->get("k", 1s).empty());
    const std::string big(1 << 20, 'x');
    store->set("big", big);
    CHECK(other->get("big", 1s) == big);
  }
  SECTION("get waits for a later set") {
    std::thread writer([&] {
      std::this_thread::sleep_for(50ms);
      other->set("late", "value");
    });
    CHECK(store->get("late", 5s) == "value");
    writer.join();
  }
  SECTION("timeouts name the missing keys and come on time") {
    store->set("present", "1");
    const std::vector<std::string> keys{"present", "missing-a", "missing-b"};
    const auto start = std::chrono::steady_clock::now();
    CHECK_TUTTI_ERROR(store->multi_get(keys, 200ms), tutti::errc::timeout, "2 of 3 keys: \"missing-a\", \"missing-b\"");
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 200ms);
    CHECK(waited < 300ms);
    CHECK_TUTTI_ERROR(store->wait(keys, 50ms), tutti::errc::timeout, "0.05 s");
    // The connection stays usable after a timeout.
    CHECK(store->get("present", 1s) == "1");
  }
  SECTION("multi_get keeps order") {
    for (int i = 0; i < 50; ++i) store->set("key" + std::to_string(i), std::to_string(i * i));
    std::vector<std::string> keys;
    for (int i = 49; i >= 0; --i) keys.push_back("key" + std::to_string(i));
    const auto values = other->multi_get(keys, 1s);
    REQUIRE(values.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(values[static_cast<std::size_t>(i)] == std::to_string((49 - i) * (49 - i)));
  }
  SECTION("add counts and rejects non-counters") {
    CHECK(store->add("n", 5) == 5);
    CHECK(other->add("n", -7) == -2);
    CHECK(store->get("n", 1s) == "-2");
    store->set("text", "hello");
    CHECK_TUTTI_ERROR(store->add("text", 1), tutti::errc::invalid_argument,
                      "add(\"text\"): value \"hello\" is not a decimal integer");
    CHECK(store->add("n", 0) == -2);
  }
  SECTION("compare_set") {
    CHECK(store->compare_set("c", "", "first") == "first");   // missing key equals ""
    CHECK(other->compare_set("c", "", "second") == "first");  // lost
    CHECK(other->compare_set("c", "first", "third") == "third");
    CHECK(store->compare_set("absent", "x", "y").empty());
    CHECK(store->contains(std::vector<std::string>{"absent"}) == std::vector<bool>{false});
  }
  SECTION("contains and erase") {
    store->set("a", "1");
    CHECK(other->contains(std::vector<std::string>{"a", "b"}) == std::vector<bool>{true, false});
    CHECK(other->erase("a"));
    CHECK_FALSE(other->erase("a"));
    CHECK(store->contains(std::vector<std::string>{"a"}) == std::vector<bool>{false});
  }
  SECTION("prefix views do not collide") {
    tutti::prefix_store left(store, "left/");
    tutti::prefix_store right(other, "right/");
    left.set("x", "L");
    right.set("x", "R");
    CHECK(left.get("x", 1s) == "L");
    CHECK(right.get("x", 1s) == "R");
    CHECK(store->get("left/x", 1s) == "L");
  }
  SECTION("16 threads hammering one counter and keys") {
    constexpr int threads = 16;
    constexpr int increments = 200;
    std::vector<std::thread> pool;
    std::vector<std::vector<std::int64_t>> seen(threads);
    std::vector<std::shared_ptr<tutti::store>> clients;
    for (int t = 0; t < threads; ++t) clients.push_back(t % 2 == 0 ? fixture.client() : store);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        auto& mine = *clients[static_cast<std::size_t>(t)];
        for (int i = 0; i < increments; ++i) {
          seen[static_cast<std::size_t>(t)].push_back(mine.add("counter", 1));
          mine.set(tutti::detail::concat("t", t, "/", i % 7), std::to_string(i));
        }
        mine.compare_set("winner", "", std::to_string(t));
      });
    }
    for (auto& thread : pool) thread.join();
    std::set<std::int64_t> unique;
    for (const auto& list : seen) unique.insert(list.begin(), list.end());
    CHECK(unique.size() == threads * increments);
    CHECK(*unique.begin() == 1);
    CHECK(*unique.rbegin() == threads * increments);
    CHECK(store->get("counter", 1s) == std::to_string(threads * increments));
    const auto winner = std::stoi(store->get("winner", 1s));
    CHECK((winner >= 0 && winner < threads));
    CHECK(store->get("t3/6", 1s) == "195");
  }
}

// --- TCP store: processes, authentication, malformed input -----------------

TUTTI_TEST_WORKER(store_hammer) {
  const tutti::detail::endpoint server{"127.0.0.1", static_cast<std::uint16_t>(std::stoi(args.at(0)))};
  const int rank = std::stoi(args.at(1));
  tutti::tcp_store store(server, "s3cret", std::chrono::milliseconds(10000));
  for (int i = 0; i < 250; ++i) store.add("counter", 1);
  store.set("rank/" + std::to_string(rank), std::to_string(rank * 11));
  const auto won = store.compare_set("winner", "", std::to_string(rank)) == std::to_string(rank);
  store.add("winners", won ? 1 : 0);
  return 0;
}

TEST_CASE("tcp_store: 8 processes hammering counters get exact results", "[store][tcp]") {
  tutti::tcp_store_server server({"127.0.0.1", 0}, "s3cret");
  std::vector<tutti::tools::process> workers;
  for (int rank = 0; rank < 8; ++rank) {
    workers.push_back(
        tutti::test::subprocess::spawn("store_hammer", {std::to_string(server.port()), std::to_string(rank)}));
  }
  for (auto& worker : workers) CHECK(worker.wait(30s) == 0);
  tutti::tcp_store store(server.address(), "s3cret", std::chrono::milliseconds(5000));
  CHECK(store.get("counter", 1s) == "2000");
  CHECK(store.get("winners", 1s) == "1");
  for (int rank = 0; rank < 8; ++rank)
    CHECK(store.get("rank/" + std::to_string(rank), 1s) == std::to_string(rank * 11));
}

TEST_CASE("tcp_store: a wrong or missing token is refused and learns nothing", "[store][tcp]") {
  tutti::tcp_store_server server({"127.0.0.1", 0}, "right token");
  tutti::tcp_store good(server.address(), "right token", std::chrono::milliseconds(2000));
  good.set("secret", "the value");

  CHECK_TUTTI_ERROR(tutti::tcp_store(server.address(), "wrong token", std::chrono::milliseconds(2000)),
                    tutti::errc::remote_failure, "wrong TUTTI_STORE_TOKEN");
  CHECK_TUTTI_ERROR(tutti::tcp_store(server.address(), "", std::chrono::milliseconds(2000)),
                    tutti::errc::remote_failure, "requires a token");

  // A raw client that skips the handshake and sends a request gets nothing
  // but the server's hello, then a closed connection.
  auto fd = tutti::detail::connect_to(server.address(), std::chrono::steady_clock::now() + 2s);
  tutti::detail::store_wire::request read_secret;
  read_secret.op = tutti::detail::store_wire::opcode::multi_get;
  read_secret.keys = {"secret"};
  read_secret.timeout_ms = 100;
  tutti::detail::send_all(fd.get(), tutti::detail::store_wire::encode(read_secret),
                          std::chrono::steady_clock::now() + 1s, "server");
  std::vector<std::byte> received;
  std::byte buffer[4096];
  while (true) {
    const auto n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.insert(received.end(), buffer, buffer + n);
  }
  const std::string text(reinterpret_cast<const char*>(received.data()), received.size());
  CHECK(text.find("the value") == std::string::npos);
  CHECK(received.size() <= 64);  // the hello only

  // And the server still serves the authenticated client.
  CHECK(good.get("secret", 1s) == "the value");
}

TEST_CASE("tcp_store: a client with a token refuses a server without one", "[store][tcp]") {
  tutti::tcp_store_server open_server({"127.0.0.1", 0});
  CHECK_TUTTI_ERROR(tutti::tcp_store(open_server.address(), "token", std::chrono::milliseconds(2000)),
                    tutti::errc::remote_failure, "does not ask for a token");
  tutti::tcp_store plain(open_server.address(), "", std::chrono::milliseconds(2000));
  plain.set("k", "v");
  CHECK(plain.get("k", 1s) == "v");
}

TEST_CASE("tcp_store: malformed frames close only the offending connection", "[store][tcp]") {
  tutti::tcp_store_server server({"127.0.0.1", 0});
  tutti::tcp_store good(server.address(), "", std::chrono::milliseconds(2000));
  good.set("k", "v");

  auto attack = [&](std::vector<std::byte> bytes) {
    auto fd = tutti::detail::connect_to(server.address(), std::chrono::steady_clock::now() + 2s);
    [[maybe_unused]] const auto sent = ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    // The server must close the connection, not wait for more or crash.
    std::byte buffer[256];
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() < deadline) {
      if (!tutti::detail::poll_until(fd.get(), POLLIN, deadline)) break;
      closed = ::recv(fd.get(), buffer, sizeof buffer, 0) <= 0;
    }
    return closed;
  };
  auto u32 = [](std::uint32_t v) {
    std::vector<std::byte> out(4);
    std::memcpy(out.data(), &v, 4);
    return out;
  };

  SECTION("oversized length before authentication") { CHECK(attack(u32(0xffff'ffffu))); }
  SECTION("handshake with a bad magic") {
    auto frame = u32(70);
    frame.resize(4 + 70, std::byte{0x41});
    CHECK(attack(frame));
  }
  SECTION("random bytes") {
    std::vector<std::byte> noise(300);
    for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<std::byte>((i * 7919) % 251);
    CHECK(attack(noise));
  }
  CHECK(good.get("k", 1s) == "v");
}

TEST_CASE("store protocol: the decoder rejects malformed requests", "[store][protocol]") {
  namespace wire = tutti::detail::store_wire;
  wire::request valid;
  valid.op = wire::opcode::compare_set;
  valid.keys = {"key"};
  valid.values = {"expected", "desired"};
  const auto frame = wire::encode(valid);
  const std::span<const std::byte> body(frame.data() + 4, frame.size() - 4);

  const auto decoded = wire::decode_request(body);
  CHECK(decoded.keys == valid.keys);
  CHECK(decoded.values == valid.values);

  for (std::size_t cut = 0; cut < body.size(); ++cut) {
    CHECK_TUTTI_ERROR(wire::decode_request(body.first(cut)), tutti::errc::invalid_argument, "malformed");
  }
  auto corrupt = [&](std::size_t offset, std::uint32_t value) {
    std::vector<std::byte> copy(body.begin(), body.end());
    std::memcpy(copy.data() + offset, &value, 4);
    return copy;
  };
  // Key count claims more strings than bytes present: rejected before reserving.
  CHECK_TUTTI_ERROR(wire::decode_request(corrupt(13, 0x4000'0000u)), tutti::errc::invalid_argument, "cannot fit");
  // A key length beyond the limit.
  CHECK_TUTTI_ERROR(wire::decode_request(corrupt(17, 0x0100'0000u)), tutti::errc::invalid_argument, "exceeds");
  // Trailing garbage and wrong shapes.
  std::vector<std::byte> trailing(body.begin(), body.end());
  trailing.push_back(std::byte{0});
  CHECK_TUTTI_ERROR(wire::decode_request(trailing), tutti::errc::invalid_argument, "trailing");
  valid.values.pop_back();
  const auto wrong_shape = wire::encode(valid);
  CHECK_TUTTI_ERROR(wire::decode_request(std::span<const std::byte>(wrong_shape).subspan(4)),
                    tutti::errc::invalid_argument, "1 keys and 1 values");
  std::vector<std::byte> bad_op(body.begin(), body.end());
  bad_op[0] = std::byte{99};
  CHECK_TUTTI_ERROR(wire::decode_request(bad_op), tutti::errc::invalid_argument, "unknown opcode 99");
  const std::byte huge[4] = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0x7f}};
  CHECK_TUTTI_ERROR(wire::frame_length(std::span<const std::byte, 4>(huge)), tutti::errc::invalid_argument, "exceeds");
}

TEST_CASE("tcp_store: a lost server fails pending and later calls", "[store][tcp]") {
  auto server = std::make_unique<tutti::tcp_store_server>(tutti::detail::endpoint{"127.0.0.1", 0});
  tutti::tcp_store client(server->address(), "", std::chrono::milliseconds(2000));
  client.set("k", "v");
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    server.reset();
  });
  const auto start = std::chrono::steady_clock::now();
  CHECK_TUTTI_ERROR(client.get("never", 10s), tutti::errc::remote_failure, "closed the connection");
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  stopper.join();
  CHECK_TUTTI_ERROR(client.get("k", 1s), tutti::errc::remote_failure, "failed earlier");
}

TEST_CASE("tcp_store: connecting to nothing fails within the timeout naming the address", "[store][tcp]") {
  tutti::detail::endpoint nowhere;
  {
    tutti::tcp_store_server probe({"127.0.0.1", 0});
    nowhere = probe.address();
  }
  const auto start = std::chrono::steady_clock::now();
  CHECK_TUTTI_ERROR(tutti::tcp_store(nowhere, "", std::chrono::milliseconds(300)), tutti::errc::timeout,
                    nowhere.to_string());
  CHECK(std::chrono::steady_clock::now() - start < 450ms);
}
