// Ranks as threads: runs one body per rank and collects what each threw.
// Catch2's assertions are not for threads, so the ranks report failures as
// text and the test checks the texts on its own thread afterwards.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace tutti::test {

// Runs body(rank) on `size` threads; returns each rank's failure text (the
// what() of the exception it threw, empty when it passed).
template <class Body>
std::vector<std::string> run_threads(int size, Body body) {
  std::vector<std::string> failures(static_cast<std::size_t>(size));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        failures[static_cast<std::size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return failures;
}

// Checks that every rank of run_threads passed, naming the rank that did not.
inline void check_all_passed(const std::vector<std::string>& failures) {
  for (std::size_t r = 0; r < failures.size(); ++r) {
    INFO("rank " << r);
    CHECK(failures[r] == std::string{});
  }
}

}  // namespace tutti::test
