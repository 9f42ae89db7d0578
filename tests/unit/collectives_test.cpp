// Collectives through the communicator: every algorithm forced in turn,
// worlds of 1 to 9 ranks as threads (inproc), and a smaller set over shm and
// tcp processes; results against a serial reference.
#include <tutti/communicator.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>

#include "../support/collective_suite.hpp"
#include "../support/ports.hpp"
#include "../support/subprocess.hpp"
#include "../support/thread_world.hpp"

using namespace std::chrono_literals;
using tutti::test::exercise;
using tutti::test::expect;

namespace {

// Runs body(comm) on `size` threads forming one communicator.
template <class Body>
std::vector<std::string> thread_world(int size, const std::string& algorithms, Body body, bool check = false) {
  auto shared = std::make_shared<tutti::memory_store>();
  return tutti::test::run_threads(size, [&](int r) {
    tutti::options config;
    config.timeout = 20s;
    config.algorithms = algorithms;
    config.check = check;
    tutti::communicator comm(shared, r, size, config);
    body(comm);
  });
}

void check_passed(const std::vector<std::string>& failures) {
  for (const auto& f : failures) CHECK(f == std::string{});
}

}  // namespace

// TUTTI_ALGO settings that together force every registered algorithm: set k
// picks each collective's k-th algorithm (its last, when it has fewer). The
// last set is empty: chosen by the cost model.
std::vector<std::string> every_algorithm() {
  namespace ta = tutti::algorithm;
  constexpr int kinds = static_cast<int>(ta::collective::barrier) + 1;
  std::size_t most = 0;
  for (int k = 0; k < kinds; ++k) most = std::max(most, ta::algorithms_for(static_cast<ta::collective>(k)).size());
  std::vector<std::string> sets;
  for (std::size_t i = 0; i < most; ++i) {
    std::string set;
    for (int k = 0; k < kinds; ++k) {
      const auto kind = static_cast<ta::collective>(k);
      const auto names = ta::algorithms_for(kind);
      set +=
          tutti::detail::concat(set.empty() ? "" : ",", ta::to_string(kind), "=", names[std::min(i, names.size() - 1)]);
    }
    sets.push_back(set);
  }
  sets.emplace_back();
  return sets;
}

TEST_CASE("every collective and algorithm on thread worlds of 1 to 9 ranks", "[collectives]") {
  for (const auto& algorithms : every_algorithm()) {
    for (int size : {1, 2, 3, 4, 5, 7, 8, 9}) {
      // Check mode adds a header before every message: the same calls must
      // give the same results with it (on a subset, to keep the test short).
      for (const bool check : {false, true}) {
        if (check && size % 3 != 2) continue;
        INFO("TUTTI_ALGO=" << algorithms << " ranks " << size << " check " << check);
        check_passed(thread_world(
            size, algorithms,
            [](tutti::communicator& comm) {
              for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{13}, std::size_t{1000}}) {
                exercise(comm, count);
              }
            },
            check));
      }
    }
  }
}

TEST_CASE("large all_reduce pipelines many chunks", "[collectives]") {
  check_passed(thread_world(4, "all_reduce=ring", [](tutti::communicator& comm) {
    std::vector<float> data(std::size_t{3} << 20, static_cast<float>(comm.rank() + 1));
    comm.all_reduce(std::span<float>(data));
    for (const float x : data) expect(x == 10.0f, "large ring all_reduce");
    std::vector<tutti::bfloat16> grads(100003, tutti::bfloat16(0.5f));
    comm.all_reduce(std::span<tutti::bfloat16>(grads), tutti::avg{});
    for (const auto g : grads) expect(static_cast<float>(g) == 0.5f, "bf16 avg");
  }));
}

TEST_CASE("collectives reject bad arguments before any byte moves", "[collectives]") {
  check_passed(thread_world(2, "", [](tutti::communicator& comm) {
    std::vector<int> a(10), b(12);
    auto expect_error = [](auto&& call, const std::string& fragment) {
      try {
        call();
      } catch (const tutti::error& e) {
        if (e.code() != tutti::errc::invalid_argument || e.message().find(fragment) == std::string::npos) {
          throw std::runtime_error("wrong error: " + std::string(e.what()));
        }
        return;
      }
      throw std::runtime_error("no error for " + fragment);
    };
    expect_error([&] { comm.all_reduce(std::span<const int>(a), std::span<int>(b)); },
                 "all_reduce: output has 12 elements but rank " + std::to_string(comm.rank()) + " needs 10");
    expect_error([&] { comm.broadcast(std::span<int>(a), 2); }, "broadcast: root 2 is outside [0, 2)");
    expect_error([&] { comm.all_gather(std::span<const int>(a), std::span<int>(b)); },
                 "all_gather: output has 12 elements but rank " + std::to_string(comm.rank()) + " needs 20");
    expect_error([&] { comm.all_reduce(std::span<const int>(a.data(), 8), std::span<int>(a.data() + 2, 8)); },
                 "all_reduce: input and output overlap; they must be the same span or disjoint");
    expect_error([&] { comm.reduce_scatter(std::span<const int>(b), std::span<int>(b.data(), 6)); },
                 "reduce_scatter: input and output overlap; they must be disjoint");
    expect_error([&] { comm.send(std::span<const int>(a), 5); }, "send: rank 5 is outside [0, 2)");
    const std::size_t counts[] = {1, 2, 3};
    expect_error([&] { comm.all_gather_v(std::span<const int>(a), std::span<int>(b), counts); },
                 "all_gather_v: counts has 3 entries for 2 ranks");
    // The communicator still works afterwards: nothing was sent.
    comm.all_reduce(std::span<int>(a));
  }));
}

// --- processes over shm and tcp ---------------------------------------------

TUTTI_TEST_WORKER(collectives_round) {
  try {
    auto comm = tutti::communicator::from_env();
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{100003}}) {
      exercise(comm, count);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return 3;
  }
}

TEST_CASE("collectives over shm and tcp processes", "[collectives][processes]") {
  for (const std::string transport : {"shm", "tcp"}) {
    for (const std::string algorithms : {"all_reduce=ring,broadcast=chain,reduce=ring",
                                         "all_reduce=rabenseifner,all_to_all=bruck", "all_reduce=double_binary_tree"}) {
      INFO(transport << " " << algorithms);
      const auto store = tutti::test::free_store_address();
      std::vector<tutti::tools::process> ranks;
      for (int r = 0; r < 4; ++r) {
        ranks.push_back(tutti::test::subprocess::spawn("collectives_round", {},
                                                       {{"TUTTI_RANK", std::to_string(r)},
                                                        {"TUTTI_WORLD_SIZE", "4"},
                                                        {"TUTTI_STORE", store},
                                                        {"TUTTI_TIMEOUT", "30"},
                                                        {"TUTTI_TRANSPORT", transport},
                                                        {"TUTTI_ALGO", algorithms}}));
      }
      for (auto& r : ranks) CHECK(r.wait(90s) == 0);
    }
  }
}

// A mismatch between processes: rank 0 disagrees with the others in the way
// args[0] names. Exit 5 on a mismatch error, 6 on another tutti::error, 0 if
// the call (wrongly) succeeded.
TUTTI_TEST_WORKER(mismatched_call) {
  try {
    auto comm = tutti::communicator::from_env();
    const bool odd_one = comm.rank() == 0;
    std::vector<float> v(odd_one && args.at(0) == "count" ? 1000 : 1200, 1.0f);
    if (odd_one && args.at(0) == "collective") {
      comm.broadcast(std::span<float>(v), 0);
    } else if (odd_one && args.at(0) == "dtype") {
      std::vector<std::int32_t> i(v.size());
      comm.all_reduce(std::span<std::int32_t>(i));
    } else {
      comm.all_reduce(std::span<float>(v));
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "rank failed: %s\n", e.what());
    return e.code() == tutti::errc::mismatch ? 5 : 6;
  }
}

TEST_CASE("TUTTI_CHECK reports mismatched calls between shm and tcp processes", "[collectives][check][processes]") {
  for (const std::string transport : {"shm", "tcp"}) {
    for (const std::string kind : {"count", "collective", "dtype"}) {
      INFO(transport << ": ranks disagree on the " << kind);
      const auto store = tutti::test::free_store_address();
      std::vector<tutti::tools::process> ranks;
      for (int r = 0; r < 3; ++r) {
        ranks.push_back(tutti::test::subprocess::spawn("mismatched_call", {kind},
                                                       {{"TUTTI_RANK", std::to_string(r)},
                                                        {"TUTTI_WORLD_SIZE", "3"},
                                                        {"TUTTI_STORE", store},
                                                        {"TUTTI_TIMEOUT", "10"},
                                                        {"TUTTI_CHECK", "1"},
                                                        {"TUTTI_TRANSPORT", transport}}));
      }
      const auto started = std::chrono::steady_clock::now();
      int mismatches = 0;
      for (auto& r : ranks) {
        const int status = r.wait(60s);
        CHECK((status == 5 || status == 6));
        mismatches += status == 5 ? 1 : 0;
      }
      CHECK(mismatches >= 1);
      // Well before the 10 s timeout: the mismatch is seen, not waited out.
      CHECK(std::chrono::steady_clock::now() - started < 8s);
    }
  }
}

TEST_CASE("TUTTI_CHECK reports mismatched calls naming both ranks", "[collectives][check]") {
  struct scenario {
    const char* what;
    std::function<void(tutti::communicator&)> call;
    const char* fragment;
  };
  const std::vector<scenario> scenarios{
      {"different collectives",
       [](tutti::communicator& comm) {
         std::vector<float> v(64, 1.0f);
         if (comm.rank() == 0) {
           comm.all_reduce(std::span<float>(v));
         } else {
           comm.broadcast(std::span<float>(v), 0);
         }
       },
       "all_reduce #0 of 64 float32 elements with sum"},
      {"different counts",
       [](tutti::communicator& comm) {
         std::vector<int> v(comm.rank() == 0 ? 10 : 12);
         comm.all_reduce(std::span<int>(v));
       },
       "of 10 int32 elements"},
      {"different dtypes of the same size",
       [](tutti::communicator& comm) {
         std::vector<float> f(8);
         std::vector<int> i(8);
         if (comm.rank() == 0) {
           comm.all_reduce(std::span<float>(f));
         } else {
           comm.all_reduce(std::span<int>(i));
         }
       },
       "int32"},
      {"different roots",
       [](tutti::communicator& comm) {
         std::vector<int> v(100, comm.rank());
         comm.broadcast(std::span<int>(v), comm.rank() == 0 ? 0 : 1);
       },
       "root 1"},
      {"different ops",
       [](tutti::communicator& comm) {
         std::vector<int> v(5, 1);
         if (comm.rank() == 0) {
           comm.all_reduce(std::span<int>(v), tutti::max{});
         } else {
           comm.all_reduce(std::span<int>(v));
         }
       },
       "with max"},
  };
  for (const auto& sc : scenarios) {
    INFO(sc.what);
    const auto failures = thread_world(
        3, "", [&](tutti::communicator& comm) { sc.call(comm); }, true);
    int mismatches = 0;
    for (const auto& f : failures) {
      if (f.find("tutti: mismatch: ") == 0) {
        ++mismatches;
        CHECK_THAT(f, Catch::Contains(sc.fragment) && Catch::Contains("but rank"));
      } else {
        // A rank whose neighbours agreed with it may instead time out or see
        // the failure of a peer; it must not succeed with wrong data.
        CHECK_FALSE(f.empty());
      }
    }
    CHECK(mismatches >= 1);
  }
}

TEST_CASE("every rank ranks algorithms with the same calibrated or given cost model", "[collectives][select]") {
  for (const std::string given : {"", "alpha_us=7,bandwidth_gbps=2,reduce_gbps=4"}) {
    INFO("TUTTI_COST_MODEL=" << given);
    std::vector<tutti::algorithm::cost_model> models(5);
    std::vector<std::string> choices(5);
    auto shared = std::make_shared<tutti::memory_store>();
    check_passed(tutti::test::run_threads(5, [&](int r) {
      tutti::options config;
      config.timeout = 20s;
      config.cost_model = given;
      tutti::communicator comm(shared, r, 5, config);
      models[static_cast<std::size_t>(r)] = comm.cost_model();
      expect(comm.link_class() == "inproc", "threads of one process are an inproc world");
      for (const std::size_t count :
           {std::size_t{1}, std::size_t{1} << 12, std::size_t{1} << 18, std::size_t{1} << 24}) {
        const auto choice = comm.plan(tutti::algorithm::collective::all_reduce, count, 4);
        choices[static_cast<std::size_t>(r)] += tutti::detail::concat(choice.algorithm, "/", choice.chunk_bytes, " ");
      }
      // The plan is what runs: a dup (inheriting the model) agrees.
      auto twin = comm.dup();
      expect(twin.cost_model() == comm.cost_model(), "dup inherits the cost model");
      // A dup with options forces what they say and leaves its parent alone;
      // it computes alike.
      tutti::options forced = comm.config();
      forced.algorithms = "all_reduce=ring";
      auto ring = comm.dup(forced);
      expect(ring.cost_model() == comm.cost_model(), "dup(options) inherits the cost model");
      expect(ring.plan(tutti::algorithm::collective::all_reduce, 1, 4).algorithm == "ring", "dup(options) forces");
      expect(comm.plan(tutti::algorithm::collective::all_reduce, 1, 4).algorithm != "ring", "the parent does not");
      std::vector<float> values(1000, static_cast<float>(r + 1));
      ring.all_reduce(std::span(values));
      expect(values[999] == 15.0F, "the forced ring sums");
    }));
    for (int r = 1; r < 5; ++r) {
      CHECK(models[static_cast<std::size_t>(r)] == models[0]);
      CHECK(choices[static_cast<std::size_t>(r)] == choices[0]);
    }
    const auto& m = models[0];
    CHECK(m.link.alpha_us > 0);
    CHECK(m.link.beta_us_per_byte > 0);
    CHECK(m.gamma_us_per_byte > 0);
    if (!given.empty()) {
      CHECK(m.link.alpha_us == 7.0);
      CHECK(m.link.beta_us_per_byte == tutti::algorithm::us_per_byte(2.0));
      CHECK(m.gamma_us_per_byte == tutti::algorithm::us_per_byte(4.0));
    }
  }
  // Without calibration, the link class's defaults.
  auto shared = std::make_shared<tutti::memory_store>();
  check_passed(tutti::test::run_threads(2, [&](int r) {
    tutti::options config;
    config.calibrate = false;
    tutti::communicator comm(shared, r, 2, config);
    expect(comm.cost_model() == tutti::transport::cost_model_for("inproc"), "defaults without calibration");
  }));
  tutti::options bad;
  CHECK_THROWS_WITH(tutti::communicator(std::make_shared<tutti::memory_store>(), 0, 1,
                                        [&] {
                                          bad.cost_model = "alpha_us=fast";
                                          return bad;
                                        }()),
                    Catch::Contains("alpha_us"));
}

namespace {

// A user-defined op with state: adding, saturating at `limit` (associative
// and commutative for non-negative inputs, as reductions must be).
struct capped_sum {
  std::int64_t limit;
  std::int64_t operator()(std::int64_t a, std::int64_t b) const { return std::min(a + b, limit); }
};

}  // namespace

TEST_CASE("user-defined ops with state reduce through blocking and async calls", "[collectives]") {
  for (const std::string algorithms : {"all_reduce=ring,reduce_scatter=ring", "all_reduce=recursive_doubling"}) {
    INFO(algorithms);
    check_passed(thread_world(3, algorithms, [](tutti::communicator& comm) {
      const std::size_t count = 5000;
      std::vector<std::int64_t> v(count), w(count);
      for (std::size_t i = 0; i < count; ++i) v[i] = w[i] = static_cast<std::int64_t>(i % 100) + comm.rank();
      comm.all_reduce(std::span<std::int64_t>(v), capped_sum{150});
      // The async call's op is a temporary: the queued call keeps its own copy.
      auto r = comm.all_reduce_async(std::span<std::int64_t>(w), capped_sum{120});
      r.wait();
      for (std::size_t i = 0; i < count; ++i) {
        const std::int64_t total = 3 * static_cast<std::int64_t>(i % 100) + 3;
        expect(v[i] == std::min<std::int64_t>(total, 150), "capped sum at 150");
        expect(w[i] == std::min<std::int64_t>(total, 120), "capped sum at 120 through a request");
      }
      std::vector<std::int64_t> blocks(3 * 10, 100), mine(10);
      comm.reduce_scatter(std::span<const std::int64_t>(blocks), std::span<std::int64_t>(mine), capped_sum{250});
      for (const auto x : mine) expect(x == 250, "capped reduce_scatter");
    }));
  }
}
