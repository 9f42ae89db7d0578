// The collective benchmark harness (bench/harness): nccl-tests' geometry and
// bus bandwidth factors, the size steps, the iteration plans, the options,
// the CSV round trip, and that --check's verification finds a wrong element
// wherever it is.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <tutti/types.hpp>

#include "../../bench/harness/buffers.hpp"
#include "../../bench/harness/options.hpp"
#include "../../bench/harness/report.hpp"

namespace tb = tutti::bench;
using tb::operation;

TEST_CASE("geometry rounds S to whole elements per rank, as nccl-tests sizes them", "[bench]") {
  const auto ar = tb::geometry_of(operation::all_reduce, 1001, 4, 4);
  CHECK(ar.bytes == 1000);
  CHECK(ar.in == 250);
  CHECK(ar.out == 250);
  const auto ag = tb::geometry_of(operation::all_gather, 1024, 4, 3);
  CHECK(ag.block == 85);
  CHECK(ag.in == 85);
  CHECK(ag.out == 255);
  CHECK(ag.bytes == 1020);
  const auto rs = tb::geometry_of(operation::reduce_scatter, 1024, 4, 3);
  CHECK(rs.in == 255);
  CHECK(rs.out == 85);
  const auto a2a = tb::geometry_of(operation::all_to_all, 64, 8, 4);
  CHECK(a2a.block == 2);
  CHECK(a2a.in == 8);
  CHECK(a2a.out == 8);
  CHECK(tb::geometry_of(operation::all_gather, 8, 4, 4).bytes == 0);  // under one element per rank
}

TEST_CASE("bus bandwidth factors are nccl-tests'", "[bench]") {
  CHECK(tb::bus_factor(operation::all_reduce, 4) == Approx(1.5));
  CHECK(tb::bus_factor(operation::all_gather, 4) == Approx(0.75));
  CHECK(tb::bus_factor(operation::reduce_scatter, 2) == Approx(0.5));
  CHECK(tb::bus_factor(operation::all_to_all, 8) == Approx(0.875));
  CHECK(tb::bus_factor(operation::broadcast, 8) == 1);
  CHECK(tb::bus_factor(operation::send_recv, 2) == 1);
  tb::result r;
  r.op = operation::all_reduce;
  r.ranks = 4;
  r.bytes = 1 << 20;
  r.time_us = 100;
  CHECK(r.algbw_gbps() == Approx(10.48576));
  CHECK(r.busbw_gbps() == Approx(15.72864));
}

TEST_CASE("sizes step by the factor and iteration plans depend on the size only", "[bench]") {
  CHECK(tb::sizes_between(8, 64, 2) == std::vector<std::size_t>{8, 16, 32, 64});
  CHECK(tb::sizes_between(8, 100, 4) == std::vector<std::size_t>{8, 32});
  CHECK(tb::sizes_between(1, 1, 2) == std::vector<std::size_t>{1});
  const auto small = tb::plan_for(8);
  CHECK(small.batch == 64);
  CHECK(small.iterations == 50);
  const auto large = tb::plan_for(std::size_t{64} << 20);
  CHECK(large.batch == 1);
  CHECK(large.iterations == 5);
  const auto capped = tb::plan_for(8, 8);
  CHECK(capped.operations() == 8);
  CHECK(tb::plan_for(std::size_t{64} << 20, 3).operations() == 3);
}

TEST_CASE("options parse nccl-tests' spellings and refuse nonsense", "[bench]") {
  std::vector<std::string> args{"tutti-bench", "-c",  "all_reduce,allgather",
                                "-b",          "1K",  "-e",
                                "4M",          "-f",  "4",
                                "-n",          "3",   "--algo",
                                "ring,auto",   "-d",  "int32",
                                "-o",          "max", "--check"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  const auto o = tb::parse_options(static_cast<int>(argv.size()), argv.data());
  CHECK(o.operations == std::vector<operation>{operation::all_reduce, operation::all_gather});
  CHECK(o.min_bytes == 1024);
  CHECK(o.max_bytes == std::size_t{4} << 20);
  CHECK(o.step_factor == 4);
  CHECK(o.ranks == 3);
  CHECK(o.algorithms == std::vector<std::string>{"ring", "auto"});
  CHECK(o.dtype == "int32");
  CHECK(o.op == "max");
  CHECK(o.check);
  // What a rank is given parses back to the same options.
  auto again_args = tb::options_argv(o);
  again_args.insert(again_args.begin(), "tutti-bench");
  std::vector<char*> again;
  for (auto& a : again_args) again.push_back(a.data());
  const auto back = tb::parse_options(static_cast<int>(again.size()), again.data());
  CHECK(back.operations == o.operations);
  CHECK(back.max_bytes == o.max_bytes);
  CHECK(back.algorithms == o.algorithms);
  CHECK(back.op == o.op);
  CHECK(back.check);
}

TEST_CASE("CSV rows round-trip in the peers' columns", "[bench]") {
  tb::result r;
  r.lib = "tutti";
  r.op = operation::reduce_scatter;
  r.ranks = 4;
  r.bytes = 4096;
  r.iterations = 3200;
  r.time_us = 12.5;
  const auto path = (std::filesystem::temp_directory_path() / "tutti-bench-harness-test.csv").string();
  REQUIRE(tb::write_csv(path, {r}));
  const auto rows = tb::read_csv(path);
  std::filesystem::remove(path);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].lib == "tutti");
  CHECK(rows[0].op == operation::reduce_scatter);
  CHECK(rows[0].ranks == 4);
  CHECK(rows[0].bytes == 4096);
  CHECK(rows[0].iterations == 3200);
  CHECK(rows[0].time_us == Approx(12.5));
}

namespace {

// Computes what every rank's output of `op` must be the slow way, from the
// inputs of all ranks, so that the check can be run without a library.
template <class T>
std::vector<tb::buffers<T>> serial_results(operation op, const std::string& redop, int ranks, const tb::geometry& g) {
  std::vector<tb::buffers<T>> b(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    b[static_cast<std::size_t>(r)].reserve(g.in + g.out + 1);
    b[static_cast<std::size_t>(r)].fill(op, redop, r, g);
  }
  const auto reduce_at = [&](std::size_t i) {
    double v = redop == "prod" ? 1 : redop == "min" ? 1e30 : redop == "max" ? -1e30 : 0;
    for (int r = 0; r < ranks; ++r) {
      const double x = static_cast<float>(b[static_cast<std::size_t>(r)].in[i]);
      v = redop == "prod" ? v * x : redop == "min" ? std::min(v, x) : redop == "max" ? std::max(v, x) : v + x;
    }
    return T(static_cast<float>(v));
  };
  for (int r = 0; r < ranks; ++r) {
    auto& out = b[static_cast<std::size_t>(r)].out;
    for (std::size_t i = 0; i < g.out; ++i) {
      switch (op) {
        case operation::all_reduce:
        case operation::reduce: out[i] = reduce_at(i); break;
        case operation::reduce_scatter: out[i] = reduce_at(static_cast<std::size_t>(r) * g.block + i); break;
        case operation::broadcast:
        case operation::send_recv: out[i] = b[0].in[i]; break;
        case operation::all_gather: out[i] = b[i / g.block].in[i % g.block]; break;
        case operation::all_to_all:
          out[i] = b[i / g.block].in[static_cast<std::size_t>(r) * g.block + i % g.block];
          break;
      }
    }
  }
  return b;
}

}  // namespace

TEMPLATE_TEST_CASE("the check accepts the right result and counts each wrong element", "[bench]", float, double,
                   std::int32_t, tutti::half) {
  for (const operation op : tb::all_operations) {
    for (const std::string redop : {"sum", "prod", "min", "max"}) {
      if (!tb::reduces(op) && redop != "sum") continue;
      INFO(tb::name_of(op) << " " << redop);
      const int ranks = 4;
      const auto g = tb::geometry_of(op, 4000, sizeof(TestType), ranks);
      auto b = serial_results<TestType>(op, redop, ranks, g);
      for (int r = 0; r < ranks; ++r) {
        CHECK(b[static_cast<std::size_t>(r)].wrong(op, redop, r, ranks, g) == 0);
      }
      // One element off, on a rank whose output is checked: found, once.
      const int victim = op == operation::reduce || op == operation::send_recv ? 0 : 2;
      auto& out = b[static_cast<std::size_t>(victim)].out;
      out[g.out / 2] = TestType(static_cast<float>(out[g.out / 2]) + 1.0F);
      CHECK(b[static_cast<std::size_t>(victim)].wrong(op, redop, victim, ranks, g) == 1);
    }
  }
}
