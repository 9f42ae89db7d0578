// tutti-info: what tutti sees for the current launch. Run it like the job:
//
//   tutti-run -n 4 tutti-info        (or srun / mpirun / torchrun ...)
//
// Rank 0 prints every rank's host and the transport it uses to reach each
// peer (its name's first letter: i = inproc, s = shm, ...), the cost model's constants (and the
// hosts and the link inside them, on several hosts), then the
// algorithm each collective would use at a range of message sizes, with its
// chunk size and predicted time.
#include <tutti/tutti.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

int main() {
  try {
    auto comm = tutti::communicator::from_env();
    const int n = comm.size();

    // One letter per peer, gathered to every rank (all_gather: small and simple).
    std::vector<char> mine(static_cast<std::size_t>(n));
    for (int peer = 0; peer < n; ++peer) mine[static_cast<std::size_t>(peer)] = comm.transport_to(peer).name().front();
    std::vector<char> all(mine.size() * static_cast<std::size_t>(n));
    comm.all_gather(std::span<const char>(mine), std::span<char>(all));
    // Connections are made on first use: what that all_gather needed.
    const auto held = comm.transport_footprint();
    const std::int64_t footprint[2] = {held.connections, static_cast<std::int64_t>(held.memory_bytes)};
    std::vector<std::int64_t> footprints(2 * static_cast<std::size_t>(n));
    comm.all_gather(std::span<const std::int64_t>(footprint), std::span<std::int64_t>(footprints));
    if (comm.rank() != 0) return 0;

    std::printf("tutti %s: %d ranks (TUTTI_TRANSPORT=%s, TUTTI_CHECK=%d)\n\n", tutti::version_string, n,
                comm.config().transport.c_str(), comm.config().check ? 1 : 0);
    std::printf("%-6s %-24s %-8s  %-*s  %s\n", "rank", "host", "pid", std::max(n, 5), "peers",
                "connections, transport memory (after one all_gather)");
    for (int r = 0; r < n; ++r) {
      const auto& card = comm.card(r);
      const auto at = 2 * static_cast<std::size_t>(r);
      std::printf("%-6d %-24s %-8lld  %-*.*s  %lld, %.1f KiB\n", r, card.hostname.c_str(),
                  static_cast<long long>(card.pid), std::max(n, 5), n,
                  all.data() + static_cast<std::size_t>(r) * static_cast<std::size_t>(n),
                  static_cast<long long>(footprints[at]), static_cast<double>(footprints[at + 1]) / 1024.0);
    }
    std::string legend;
    for (const auto& d : tutti::transport::descriptors)
      legend += tutti::detail::concat(", ", d.name.front(), ' ', d.name);
    std::printf("(peers: the transport to rank 0..%d%s)\n", n - 1, legend.c_str());

    const auto& model = comm.cost_model();
    std::printf("\ncost model over %s links (%s): alpha %.2f us, beta %.2f GB/s, gamma (reduce) %.2f GB/s\n",
                comm.link_class().c_str(),
                !comm.config().cost_model.empty() ? "given in TUTTI_COST_MODEL"
                : comm.config().calibrate         ? "calibrated at start-up"
                                                  : "defaults",
                model.link.alpha_us, 1e-3 / model.link.beta_us_per_byte, 1e-3 / model.gamma_us_per_byte);
    const auto& cluster = comm.cluster();
    if (cluster.host_count() > 1) {
      std::printf("%d hosts, %s ranks per host; inside a host: alpha %.2f us, beta %.2f GB/s\n", cluster.host_count(),
                  cluster.ranks_per_host() > 0 ? std::to_string(cluster.ranks_per_host()).c_str() : "uneven",
                  model.local.alpha_us, 1e-3 / model.local.beta_us_per_byte);
    }
    const std::vector<std::size_t> sizes{8, 1024, 64 << 10, 1 << 20, 64 << 20};
    std::printf("\nalgorithm per collective and size%s; chunk where pipelined; predicted time\n",
                comm.config().algorithms.empty() ? "" : " (TUTTI_ALGO forces some)");
    std::printf("%-15s", "collective");
    for (const auto bytes : sizes) std::printf(" %27zu B", bytes);
    std::printf("\n");
    using tutti::algorithm::collective;
    for (const auto kind :
         {collective::all_reduce, collective::broadcast, collective::all_gather, collective::reduce_scatter,
          collective::reduce, collective::all_to_all, collective::barrier}) {
      std::printf("%-15s", std::string(tutti::algorithm::to_string(kind)).c_str());
      for (const auto bytes : sizes) {
        // all_gather's count is per rank, reduce_scatter's per block: show
        // the total size in the column, as nccl-tests does.
        const bool per_rank =
            kind == collective::all_gather || kind == collective::reduce_scatter || kind == collective::all_to_all;
        const auto count = per_rank ? std::max<std::size_t>(1, bytes / static_cast<std::size_t>(n)) : bytes;
        const auto choice = comm.plan(kind, count);
        std::string cell = choice.algorithm;
        if (choice.chunk_bytes != 0) cell += tutti::detail::concat("/", choice.chunk_bytes >> 10, "K");
        cell += tutti::detail::concat(" ", static_cast<long long>(choice.predicted_us + 0.5), "us");
        std::printf(" %29s", cell.c_str());
      }
      std::printf("\n");
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "tutti-info: %s\n", e.what());
    return 1;
  }
}
