#include <tutti/bootstrap/file_store.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

// A fresh directory per test, removed with everything in it.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string name = (std::filesystem::temp_directory_path() / "tutti_file_store_XXXXXX").string();
    REQUIRE(::mkdtemp(name.data()) != nullptr);
    path = name;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(size, '\0');
  for (auto& byte : out) byte = static_cast<char>(gen() & 0xffU);
  return out;
}

template <class Fn>
tutti::error catch_error(Fn&& fn) {
  try {
    fn();
  } catch (const tutti::error& e) {
    return e;
  }
  FAIL("no tutti::error thrown");
  throw std::logic_error("unreachable");
}

double seconds_since(steady_clock::time_point start) {
  return std::chrono::duration<double>(steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("file_store round-trips binary values under odd keys", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path / "nested" / "store");

  const std::string long_a(300, 'x');
  std::string long_b = long_a;
  long_b.back() = 'y';
  std::string long_odd;
  for (int i = 0; i < 100; ++i) long_odd += "\xc3\xa9/";  // escapes far past a file name's length
  std::vector<std::string> keys = {
      "a/b", "..", ".", "", "/", "%41", "A", "k_A", ".lock", "a\nb", "../../escape", "\xe2\x9c\x93 caf\xc3\xa9"};
  keys.insert(keys.end(), {long_a, long_b, long_odd});
  std::vector<std::string> values;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    values.push_back(std::string("v\0", 2) + std::to_string(i) + random_bytes(i * 7, static_cast<unsigned>(i)));
  }
  values[3] = random_bytes(1 << 20, 99);  // 1 MiB under the empty key
  values[12] = random_bytes(1 << 20, 7);  // and under a hashed one
  for (std::size_t i = 0; i < keys.size(); ++i) store.set(keys[i], values[i]);

  for (std::size_t i = 0; i < keys.size(); ++i) {
    INFO("key " << i);
    CHECK(store.get(keys[i], 1s) == values[i]);
  }
  CHECK(store.contains(keys) == std::vector<bool>(keys.size(), true));

  // Every key is one file (plus the lock) inside the store's directory.
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(store.directory())) {
    const std::string name = entry.path().filename().string();
    CHECK(entry.is_regular_file());
    CHECK((name == ".lock" || name.starts_with("k_") || name.starts_with("h_")));
    CHECK(name.size() < 255);
    ++files;
  }
  CHECK(files == keys.size() + 1);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path), {}) == 1);

  store.set("a/b", "");  // an empty value exists
  CHECK(store.get("a/b", 1s).empty());
  CHECK(store.contains(std::vector<std::string>{"a/b"}) == std::vector<bool>{true});
}

TEST_CASE("file_store get blocks until another thread sets the key", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  const auto start = steady_clock::now();
  std::thread writer([&] {
    std::this_thread::sleep_for(100ms);
    store.set("late", "here");
  });
  CHECK(store.get("late", 5s) == "here");
  CHECK(seconds_since(start) >= 0.09);
  writer.join();
}

TEST_CASE("file_store timeouts name the missing keys and arrive on time", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  store.set("present", "1");

  const std::vector<std::string> keys = {"present", "missing-1", "missing\n2"};
  auto start = steady_clock::now();
  auto e = catch_error([&] { (void)store.multi_get(keys, 300ms); });
  double elapsed = seconds_since(start);
  CHECK(e.code() == tutti::errc::timeout);
  CHECK_THAT(e.message(), Catch::Contains("\"missing-1\", \"missing\\x0A2\"") && Catch::Contains("0.3 s") &&
                              Catch::Contains("2 of 3 keys") && !Catch::Contains("present"));
  CHECK(elapsed >= 0.3);
  CHECK(elapsed < 0.45);

  std::vector<std::string> many;
  for (int i = 0; i < 25; ++i) many.push_back("rank-" + std::to_string(i));
  start = steady_clock::now();
  e = catch_error([&] { store.wait(many, 200ms); });
  elapsed = seconds_since(start);
  CHECK(e.code() == tutti::errc::timeout);
  CHECK_THAT(e.message(), Catch::Contains("\"rank-9\" and 15 more") && !Catch::Contains("rank-10"));
  CHECK(elapsed >= 0.2);
  CHECK(elapsed < 0.3);

  e = catch_error([&] { (void)store.get("absent", 0ms); });
  CHECK(e.code() == tutti::errc::timeout);
  CHECK_THAT(e.message(), Catch::Contains("\"absent\""));
}

TEST_CASE("file_store multi_get returns values in key order", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  const std::vector<std::string> keys = {"c", "a", "b", "later"};
  store.set("a", "A");
  store.set("b", "B");
  store.set("c", "C");
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    store.set("later", "L");
  });
  CHECK(store.multi_get(keys, 5s) == std::vector<std::string>{"C", "A", "B", "L"});
  writer.join();
  store.wait(keys, 0ms);
}

TEST_CASE("file_store compare_set wins loses and treats missing as empty", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  CHECK(store.compare_set("k", "x", "y").empty());  // missing is not "x": nothing written
  CHECK(store.contains(std::vector<std::string>{"k"}) == std::vector<bool>{false});
  CHECK(store.compare_set("k", "", "first") == "first");  // missing equals empty: win
  CHECK(store.compare_set("k", "", "second") == "first");
  CHECK(store.compare_set("k", "other", "second") == "first");
  CHECK(store.compare_set("k", "first", "second") == "second");
  CHECK(store.get("k", 0ms) == "second");
  const std::string binary("\0\1\0", 3);
  CHECK(store.compare_set("k", "second", binary) == binary);
  CHECK(store.compare_set("k", binary, "") == "");
  CHECK(store.get("k", 0ms).empty());
}

TEST_CASE("file_store erase and contains", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  const std::string long_key(300, 'q');
  store.set("x", "1");
  store.set(long_key, "2");
  const std::vector<std::string> keys = {"x", "y", long_key};
  CHECK(store.contains(keys) == std::vector<bool>{true, false, true});
  CHECK(store.erase("x"));
  CHECK_FALSE(store.erase("x"));
  CHECK_FALSE(store.erase("y"));
  CHECK(store.erase(long_key));
  CHECK(store.contains(keys) == std::vector<bool>{false, false, false});
  CHECK(catch_error([&] { (void)store.get("x", 10ms); }).code() == tutti::errc::timeout);
}

TEST_CASE("file_store add counts from zero and rejects non-numbers", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  CHECK(store.add("n", 5) == 5);
  CHECK(store.add("n", -7) == -2);
  CHECK(store.get("n", 0ms) == "-2");
  store.set("text", "12abc");
  const auto e = catch_error([&] { (void)store.add("text", 1); });
  CHECK(e.code() == tutti::errc::invalid_argument);
  CHECK_THAT(e.message(), Catch::Contains("\"text\"") && Catch::Contains("12abc"));
  CHECK(store.get("text", 0ms) == "12abc");
  store.set("big", std::to_string(INT64_MAX));
  CHECK(catch_error([&] { (void)store.add("big", 1); }).code() == tutti::errc::invalid_argument);
}

TEST_CASE("file_store add is atomic across 16 threads and two store objects", "[file_store]") {
  temp_dir dir;
  tutti::file_store first(dir.path);
  tutti::file_store second(dir.path);
  constexpr int threads = 16;
  constexpr int increments = 500;
  std::vector<std::vector<std::int64_t>> seen(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& store = t % 2 == 0 ? first : second;
      for (int i = 0; i < increments; ++i) seen[static_cast<std::size_t>(t)].push_back(store.add("counter", 1));
    });
  }
  for (auto& thread : pool) thread.join();
  std::set<std::int64_t> all;
  for (const auto& values : seen) all.insert(values.begin(), values.end());
  CHECK(all.size() == threads * increments);
  CHECK(*all.begin() == 1);
  CHECK(*all.rbegin() == threads * increments);
  CHECK(first.get("counter", 0ms) == "8000");
}

TEST_CASE("file_store writers time out instead of waiting forever for the lock", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path, 200ms);
  store.set("k", "v");
  // Another client holding the lock, as the documented layout names it.
  const int fd = ::open((dir.path / ".lock").c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  const auto start = steady_clock::now();
  const auto e = catch_error([&] { (void)store.add("k2", 1); });
  const double elapsed = seconds_since(start);
  ::close(fd);
  CHECK(e.code() == tutti::errc::timeout);
  CHECK_THAT(e.message(), Catch::Contains("add(\"k2\")"));
  CHECK(elapsed >= 0.2);
  CHECK(elapsed < 0.3);
  CHECK(store.get("k", 0ms) == "v");  // readers never needed the lock
  CHECK(store.add("k2", 1) == 1);
}

TEST_CASE("file_store names the directory it cannot create", "[file_store]") {
  temp_dir dir;
  std::ofstream(dir.path / "file") << "not a directory";
  const auto e = catch_error([&] { tutti::file_store store(dir.path / "file" / "store"); });
  CHECK(e.code() == tutti::errc::transport);
  CHECK_THAT(e.message(), Catch::Contains((dir.path / "file" / "store").string()));
}

TEST_CASE("file_store readers never see a torn value", "[file_store]") {
  temp_dir dir;
  tutti::file_store store(dir.path);
  const std::string a = random_bytes(64 << 10, 1);
  const std::string b = random_bytes(64 << 10, 2);
  store.set("v", a);
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      store.set("v", i % 2 == 0 ? b : a);
      writes.fetch_add(1);
    }
  });
  std::vector<std::thread> readers;
  std::atomic<int> reads{0};
  std::atomic<int> torn{0};
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      const auto end = steady_clock::now() + 400ms;
      while (steady_clock::now() < end) {
        const std::string value = store.get("v", 1s);
        if (value != a && value != b) torn.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  for (auto& reader : readers) reader.join();
  stop = true;
  writer.join();
  CHECK(torn.load() == 0);
  CHECK(reads.load() > 10);
  CHECK(writes.load() > 10);
}

// A rank of the multi-process test: args are the directory and the rank.
TUTTI_TEST_WORKER(file_store_hammer) {
  try {
    tutti::file_store store(args.at(0));
    const std::string rank = args.at(1);
    std::vector<std::string> ready;
    for (int r = 0; r < 8; ++r) ready.push_back("ready-" + std::to_string(r));
    // Start together, or the first rank could finish before the last starts.
    store.set("ready-" + rank, "");
    store.wait(ready, 20s);

    std::ostringstream seen;
    int wins = 0;
    std::int64_t last = 0;
    for (int i = 0; i < 300; ++i) {
      const std::int64_t value = store.add("counter", 1);
      if (value <= last || value > 2400) return 3;
      last = value;
      seen << value << ' ';
      // Each attempt offers a value of its own, so that only a win returns it.
      const std::string mine = "rank-" + rank + "-try-" + std::to_string(i);
      if (i % 6 == 0 && store.compare_set("winner", "", mine) == mine) ++wins;
    }
    store.set("seen-" + rank, seen.str());
    store.add("wins", wins);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "file_store_hammer: %s\n", e.what());
    return 2;
  }
}

TEST_CASE("file_store add and compare_set are atomic across 8 processes", "[file_store]") {
  temp_dir dir;
  std::vector<tutti::tools::process> ranks;
  for (int r = 0; r < 8; ++r) {
    ranks.push_back(tutti::test::subprocess::spawn("file_store_hammer", {dir.path.string(), std::to_string(r)}));
  }
  for (auto& rank : ranks) CHECK(rank.wait(60s) == 0);

  tutti::file_store store(dir.path);
  CHECK(store.get("counter", 0ms) == "2400");
  CHECK(store.get("wins", 0ms) == "1");
  CHECK_THAT(store.get("winner", 0ms), Catch::StartsWith("rank-"));
  std::set<std::int64_t> all;
  std::size_t count = 0;
  for (int r = 0; r < 8; ++r) {
    std::istringstream seen(store.get("seen-" + std::to_string(r), 0ms));
    for (std::int64_t value = 0; seen >> value; ++count) all.insert(value);
  }
  CHECK(count == 2400);
  CHECK(all.size() == 2400);
}
