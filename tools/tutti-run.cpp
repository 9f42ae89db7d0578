// tutti-run: starts N local ranks of a program with the TUTTI_* variables
// set, like a minimal mpirun for one host.
//
//   tutti-run -n 4 [--store tcp|file] [--grace SECONDS] -- program [args...]
//
// Every rank gets TUTTI_RANK, TUTTI_WORLD_SIZE, TUTTI_LOCAL_RANK and a
// TUTTI_STORE on this host (a free loopback port, or a fresh directory). When
// a rank fails, the others get --grace seconds (default 10) to report their
// own view of the failure, then are killed. The exit status is the first
// failing rank's, or 0.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "local_ranks.hpp"

namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tutti-run: %s\nusage: tutti-run -n N [--store tcp|file] [--grace SECONDS] -- program [args...]\n", why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int ranks = 0;
  std::string store_kind = "tcp";
  double grace_seconds = 10;
  int first = 1;
  for (; first < argc; ++first) {
    const std::string_view arg = argv[first];
    auto value = [&] {
      if (first + 1 >= argc) usage("missing value");
      return std::string(argv[++first]);
    };
    if (arg == "--") {
      ++first;
      break;
    }
    if (arg == "-n") {
      ranks = std::atoi(value().c_str());
    } else if (arg == "--store") {
      store_kind = value();
    } else if (arg == "--grace") {
      grace_seconds = std::atof(value().c_str());
    } else {
      break;
    }
  }
  if (ranks < 1) usage("-n must be a positive number of ranks");
  if (first >= argc) usage("no program given");
  if (store_kind != "tcp" && store_kind != "file") usage("--store is tcp or file");

  std::filesystem::path store_dir;
  std::string store;
  if (store_kind == "file") {
    std::string pattern = (std::filesystem::temp_directory_path() / "tutti-run-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) usage("cannot create a store directory");
    store_dir = pattern;
    store = "file://" + store_dir.string();
  } else {
    store = tutti::tools::free_loopback_store();
  }

  const std::vector<std::string> program(argv + first, argv + argc);
  const int result = tutti::tools::run_local_ranks(
      program, ranks, store, std::chrono::milliseconds(static_cast<std::int64_t>(grace_seconds * 1000)), "tutti-run");
  if (!store_dir.empty()) std::filesystem::remove_all(store_dir);
  return result;
}
