// tutti-sim: runs a collective's schedules for N virtual ranks in one
// process, without payload, and prints whether the result is proven right
// (symbolic mode) and what it would cost on a cluster (timing mode):
//
//   tutti-sim --collective all_reduce --ranks 4096 --ranks-per-host 8 --bytes 256M --algo auto
//
// --algo all prints one line per algorithm. The proof runs on a reduced
// count (a few elements per rank's block, see sim::proof_count) of larger
// elements, each standing for as many real ones as it takes to keep the
// bytes: so a schedule decides chunks, slices and rounds as it does for
// the real size, and the line says how many elements of what size it used. --bytes is what nccl-tests calls the
// size: the vector of all_reduce, reduce and broadcast, the whole output of
// all_gather and gather, the whole input of reduce_scatter, scatter and
// all_to_all.
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/cost_model.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/error.hpp>
#include <tutti/sim/program.hpp>
#include <tutti/sim/symbolic.hpp>
#include <tutti/sim/timing.hpp>
#include <tutti/topology/cluster.hpp>

namespace {

namespace ta = tutti::algorithm;
namespace ts = tutti::sim;

constexpr const char* usage =
    "usage: tutti-sim [options]\n"
    "  --collective NAME     all_reduce (default), reduce, broadcast, all_gather, all_gather_v, reduce_scatter,\n"
    "                        reduce_scatter_v, gather, scatter, all_to_all, all_to_all_v, barrier\n"
    "  --ranks N             world size (default 8)\n"
    "  --ranks-per-host N    ranks per host (default 1)\n"
    "  --nics-per-host N     NICs per host (default: ranks per host)\n"
    "  --bytes SIZE          nccl-tests size, with K/M/G suffixes (default 256M)\n"
    "  --algo NAME|auto|all  algorithm (default auto: the cost model's choice)\n"
    "  --mode symbolic|timing|both   (default both)\n"
    "  --dtype-bytes N       element size (default 4)\n"
    "  --chunk-bytes SIZE    pipelining chunk (default: the cost model's choice for auto, else the algorithm's)\n"
    "  --intra-gbps X        intra-host bandwidth per rank, GB/s (default 450)\n"
    "  --intra-alpha-us X    intra-host latency (default 1)\n"
    "  --nic-gbps X          NIC bandwidth, GB/s (default 50: 400 Gb/s)\n"
    "  --nic-alpha-us X      NIC latency (default 2)\n"
    "  --reduce-gbps X       reduction throughput per rank (default 1000)\n"
    "  --copy-gbps X         local copy throughput per rank (default 1000)\n"
    "  --connection-bytes SIZE   transport memory per connection (default 256K: verbs, 16 slots of 8 KiB each\n"
    "                        for the receive ring and the send staging)\n"
    "  --proof-elements N    elements per rank's block in the proof (default 2)\n"
    "  --seed N              symbolic execution order (default 1)\n"
    "  --threads N           symbolic mode threads (default 0: every core, one per 256 ranks at most);\n"
    "                        with 1, each seed runs one order of steps, so a problem found shows again\n"
    "  --list-algorithms     print the algorithm table (as the README shows it) and exit\n";

// The algorithm table as a Markdown table: the README's copy is checked
// against this output.
void list_algorithms() {
  std::printf("| collectives | algorithm | default chunk | what it does |\n|---|---|---|---|\n");
  for (const auto& entry : ta::algorithm_table) {
    std::string kinds;
    for (int k = 0; k <= static_cast<int>(ta::collective::barrier); ++k) {
      const auto kind = static_cast<ta::collective>(k);
      if (entry.kinds.contains(kind)) kinds += tutti::detail::concat(kinds.empty() ? "" : ", ", ta::to_string(kind));
    }
    const std::string chunk = entry.chunk_bytes == 0 ? "-" : tutti::detail::concat(entry.chunk_bytes >> 10, " KiB");
    std::printf("| %s | `%.*s` | %s | %.*s |\n", kinds.c_str(), static_cast<int>(entry.name.size()), entry.name.data(),
                chunk.c_str(), static_cast<int>(entry.summary.size()), entry.summary.data());
  }
}

[[noreturn]] void bad(const std::string& what) {
  std::fprintf(stderr, "tutti-sim: %s\n%s", what.c_str(), usage);
  std::exit(2);
}

std::uint64_t parse_size(std::string_view option, std::string_view text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || stop == text.data())
    bad(std::string(option) + ": '" + std::string(text) + "' is not a size");
  std::string_view suffix(stop, static_cast<std::size_t>(end - stop));
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b')) suffix.remove_suffix(1);
  if (suffix.size() == 2 && (suffix[1] == 'i' || suffix[1] == 'I')) suffix.remove_suffix(1);
  int shift = 0;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else if (!suffix.empty()) {
    bad(std::string(option) + ": unknown suffix in '" + std::string(text) + "' (K, M or G)");
  }
  return value << shift;
}

int parse_int(std::string_view option, std::string_view text, int lo, int hi) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || stop != end || value < lo || value > hi) {
    bad(std::string(option) + ": '" + std::string(text) + "' is not an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "]");
  }
  return value;
}

double parse_positive(std::string_view option, std::string_view text, bool zero_ok) {
  char* stop = nullptr;
  const std::string copy(text);
  const double value = std::strtod(copy.c_str(), &stop);
  if (copy.empty() || *stop != '\0' || !(value > 0 || (zero_ok && value == 0))) {
    bad(std::string(option) + ": '" + copy + "' is not a " + (zero_ok ? "non-negative" : "positive") + " number");
  }
  return value;
}

struct options {
  ta::collective kind = ta::collective::all_reduce;
  int ranks = 8;
  int ranks_per_host = 1;
  int nics_per_host = 0;
  std::uint64_t bytes = std::uint64_t{256} << 20;
  std::string algo = "auto";
  bool symbolic = true;
  bool timing = true;
  std::size_t dtype_bytes = 4;
  std::size_t chunk_bytes = 0;
  std::size_t proof_elements = 2;
  std::uint64_t seed = 1;
  int threads = 0;
  ts::timing_model model;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view opt = argv[i];
    if (opt == "-h" || opt == "--help") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (opt == "--list-algorithms") {
      list_algorithms();
      std::exit(0);
    }
    if (i + 1 >= argc) bad(std::string(opt) + ": missing value (or unknown option)");
    const std::string_view v = argv[++i];
    if (opt == "--collective") {
      bool found = false;
      for (int k = 0; k <= static_cast<int>(ta::collective::barrier); ++k) {
        if (ta::to_string(static_cast<ta::collective>(k)) == v) {
          o.kind = static_cast<ta::collective>(k);
          found = true;
        }
      }
      if (!found) bad("--collective: unknown collective '" + std::string(v) + "'");
    } else if (opt == "--ranks") {
      o.ranks = parse_int(opt, v, 1, 1 << 20);
    } else if (opt == "--ranks-per-host") {
      o.ranks_per_host = parse_int(opt, v, 1, 1 << 20);
    } else if (opt == "--nics-per-host") {
      o.nics_per_host = parse_int(opt, v, 1, 1 << 10);
    } else if (opt == "--bytes") {
      o.bytes = parse_size(opt, v);
    } else if (opt == "--algo") {
      o.algo = v;
    } else if (opt == "--mode") {
      if (v != "symbolic" && v != "timing" && v != "both")
        bad("--mode: '" + std::string(v) + "' (symbolic, timing, both)");
      o.symbolic = v != "timing";
      o.timing = v != "symbolic";
    } else if (opt == "--dtype-bytes") {
      o.dtype_bytes = static_cast<std::size_t>(parse_int(opt, v, 1, 64));
    } else if (opt == "--chunk-bytes") {
      o.chunk_bytes = parse_size(opt, v);
    } else if (opt == "--intra-gbps") {
      o.model.intra.gigabytes_per_second = parse_positive(opt, v, false);
    } else if (opt == "--intra-alpha-us") {
      o.model.intra.alpha_us = parse_positive(opt, v, true);
    } else if (opt == "--nic-gbps") {
      o.model.nic.gigabytes_per_second = parse_positive(opt, v, false);
    } else if (opt == "--nic-alpha-us") {
      o.model.nic.alpha_us = parse_positive(opt, v, true);
    } else if (opt == "--reduce-gbps") {
      o.model.reduce_gbps = parse_positive(opt, v, false);
    } else if (opt == "--copy-gbps") {
      o.model.copy_gbps = parse_positive(opt, v, false);
    } else if (opt == "--connection-bytes") {
      o.model.connection_bytes = parse_size(opt, v);
    } else if (opt == "--proof-elements") {
      o.proof_elements = static_cast<std::size_t>(parse_int(opt, v, 1, 1 << 20));
    } else if (opt == "--seed") {
      o.seed = parse_size(opt, v);
    } else if (opt == "--threads") {
      o.threads = parse_int(opt, v, 0, 1024);
    } else {
      bad("unknown option " + std::string(opt));
    }
  }
  if (o.ranks_per_host > o.ranks) o.ranks_per_host = o.ranks;
  o.model.nics_per_host = o.nics_per_host != 0 ? o.nics_per_host : o.ranks_per_host;
  return o;
}

// Rank r's arguments for `count` elements per rank (or per block).
ta::collective_args args_at(const options& o, std::size_t count, std::size_t chunk_bytes,
                            const std::shared_ptr<const tutti::topology::cluster>& cluster, int rank) {
  ta::collective_args a;
  a.kind = o.kind;
  a.rank = rank;
  a.size = o.ranks;
  a.count = count;
  a.element_size = o.dtype_bytes;
  a.chunk_bytes = chunk_bytes;
  a.cluster = cluster;
  const auto n = static_cast<std::size_t>(o.ranks);
  if (ta::detail::is_v(o.kind)) a.counts.assign(n, count);
  if (o.kind == ta::collective::all_to_all_v) a.recv_counts.assign(n, count);
  return a;
}

// Elements per rank (all_reduce, reduce, broadcast: of the vector; else of
// one rank's block) for an nccl-tests size.
std::size_t count_for(const options& o) {
  const std::uint64_t elements = o.bytes / o.dtype_bytes;
  switch (o.kind) {
    case ta::collective::all_reduce:
    case ta::collective::reduce:
    case ta::collective::broadcast: return elements;
    case ta::collective::barrier: return 0;
    default: return elements / static_cast<std::uint64_t>(o.ranks);
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", bytes, units[u]);
  return text;
}

long peak_rss_kib() {
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  return self.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    std::shared_ptr<const tutti::topology::cluster> cluster;
    if (o.ranks_per_host > 1) {
      cluster = std::make_shared<const tutti::topology::cluster>(
          tutti::topology::cluster::uniform(o.ranks, o.ranks_per_host));
    }
    const std::size_t count = count_for(o);
    ta::cost_model cost;
    cost.link = {o.model.nic.alpha_us, ta::us_per_byte(o.model.nic.gigabytes_per_second)};
    if (cluster == nullptr || cluster->host_count() == 1) {
      // One host: every link is an intra-host one.
      if (cluster != nullptr) cost.link = {o.model.intra.alpha_us, ta::us_per_byte(o.model.intra.gigabytes_per_second)};
    }
    cost.local = {o.model.intra.alpha_us, ta::us_per_byte(o.model.intra.gigabytes_per_second)};
    cost.gamma_us_per_byte = ta::us_per_byte(o.model.reduce_gbps);

    struct choice {
      std::string name;
      std::size_t chunk_bytes;
    };
    std::vector<choice> algorithms;
    const auto known = ta::algorithms_for(o.kind);
    if (o.algo == "auto") {
      const auto picked = ta::choose(args_at(o, count, o.chunk_bytes, cluster, 0), {}, cost);
      algorithms.push_back({picked.algorithm, o.chunk_bytes != 0 ? o.chunk_bytes : picked.chunk_bytes});
      std::printf("auto: the cost model picks %s (chunk %s)\n", picked.algorithm.c_str(),
                  picked.chunk_bytes != 0 ? human(static_cast<double>(picked.chunk_bytes)).c_str() : "-");
    } else if (o.algo == "all") {
      for (const auto name : known) algorithms.push_back({std::string(name), o.chunk_bytes});
    } else {
      if (std::find(known.begin(), known.end(), o.algo) == known.end()) {
        std::string listing;
        for (const auto name : known) listing += (listing.empty() ? "" : ", ") + std::string(name);
        bad("--algo: " + std::string(ta::to_string(o.kind)) + " has no algorithm '" + o.algo + "' (known: " + listing +
            ", auto, all)");
      }
      algorithms.push_back({o.algo, o.chunk_bytes});
    }

    const std::uint64_t size_bytes = ts::nccl_bytes(args_at(o, count, 0, cluster, 0));
    std::printf(
        "%s, %d ranks, %d per host, %d NICs per host, %s (%zu elements of %zu bytes%s)\n",
        std::string(ta::to_string(o.kind)).c_str(), o.ranks, o.ranks_per_host, o.model.nics_per_host,
        human(static_cast<double>(size_bytes)).c_str(), count, o.dtype_bytes,
        o.kind == ta::collective::all_reduce || o.kind == ta::collective::reduce || o.kind == ta::collective::broadcast
            ? ""
            : " per rank's block");
    std::printf("%-20s %-28s %12s %10s %10s %13s %10s %6s %12s %8s\n", "algorithm", "proof", "time_us", "algbw_GB/s",
                "busbw_GB/s", "nic_GB/s", "messages", "conns", "transport", "sim_s");
    bool all_proven = true;
    const double factor = ts::bus_factor(o.kind, o.ranks);
    for (const choice& c : algorithms) {
      const auto start = std::chrono::steady_clock::now();
      std::string proof = "-";
      if (o.symbolic) {
        const std::size_t proof_count = ts::proof_count(count, o.ranks, o.proof_elements);
        // Each proof element stands for count / proof_count real ones, so
        // blocks, chunks and whatever else a schedule decides by bytes
        // (slices, split rounds, doubling windows) come out as in the real
        // run, as far as a block has elements for them; proofs cost per
        // element, whatever its size.
        options bundled = o;
        bundled.dtype_bytes = o.dtype_bytes * std::max<std::size_t>(1, proof_count != 0 ? count / proof_count : 1);
        const ts::detail::args_function args_of = [&](int r) {
          return args_at(bundled, proof_count, c.chunk_bytes, cluster, r);
        };
        ts::world w = ts::build_world(c.name, args_of, o.ranks);
        const auto report = ts::prove(w, args_of, {.seed = o.seed, .threads = o.threads});
        all_proven = all_proven && report.proven;
        proof = (report.proven ? "proven" : "FAILED") + std::string(" (") + std::to_string(proof_count) + " x " +
                human(static_cast<double>(bundled.dtype_bytes)) + ")";
        if (!report.proven) std::fprintf(stderr, "%s: %s", c.name.c_str(), report.problems.c_str());
      }
      if (o.timing) {
        const ts::world w = ts::build_world(
            c.name, [&](int r) { return args_at(o, count, c.chunk_bytes, cluster, r); }, o.ranks);
        const auto t = ts::simulate(w, cluster.get(), o.model);
        const double algbw = t.time_us > 0 ? static_cast<double>(size_bytes) / (t.time_us * 1e3) : 0.0;
        // The busiest NIC's rate over the whole run, and its share of the
        // line rate: how close the algorithm keeps the rails to saturation.
        const double nic_rate = t.time_us > 0 ? static_cast<double>(t.busiest_nic_bytes) / (t.time_us * 1e3) : 0.0;
        const std::string nic =
            std::to_string(static_cast<int>(nic_rate * 10 + 0.5) / 10) + "." +
            std::to_string(static_cast<int>(nic_rate * 10 + 0.5) % 10) + " (" +
            std::to_string(static_cast<int>(100 * nic_rate / o.model.nic.gigabytes_per_second + 0.5)) + "%)";
        std::printf("%-20s %-28s %12.1f %10.2f %10.2f %13s %10zu %6zu %12s %8.2f\n", c.name.c_str(), proof.c_str(),
                    t.time_us, algbw, algbw * factor, nic.c_str(), t.messages, t.peak_connections,
                    human(static_cast<double>(t.peak_transport_bytes)).c_str(), seconds_since(start));
      } else {
        std::printf("%-20s %-28s %12s %10s %10s %13s %10s %6s %12s %8.2f\n", c.name.c_str(), proof.c_str(), "-", "-",
                    "-", "-", "-", "-", "-", seconds_since(start));
      }
      std::fflush(stdout);
    }
    std::printf(
        "(nic: the busiest NIC's bytes over the run time, and that as a share of the line rate; conns: the most "
        "distinct peers of one rank; transport: conns x %s per connection; peak memory of this run: %s)\n",
        human(static_cast<double>(o.model.connection_bytes)).c_str(),
        human(static_cast<double>(peak_rss_kib()) * 1024).c_str());
    if (o.symbolic) std::printf("%s\n", all_proven ? "result: proven correct" : "result: NOT proven (see above)");
    return all_proven ? 0 : 1;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "tutti-sim: %s\n", e.what());
    return e.code() == tutti::errc::invalid_argument ? 2 : 1;
  }
}
