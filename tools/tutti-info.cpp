// tutti-info: what tutti sees for the current launch. Run it like the job:
//
//   tutti-run -n 4 tutti-info        (or srun / mpirun / torchrun ...)
//
// Rank 0 prints every rank's host and the transport it uses to reach each
// peer (i = inproc, s = shm, t = tcp), then the algorithm each collective
// would use at a range of message sizes.
#include <tutti/tutti.hpp>

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
    if (comm.rank() != 0) return 0;

    std::printf("tutti %s: %d ranks (TUTTI_TRANSPORT=%s, TUTTI_CHECK=%d)\n\n", tutti::version_string, n,
                comm.config().transport.c_str(), comm.config().check ? 1 : 0);
    std::printf("%-6s %-24s %-8s  peers 0..%d (i inproc, s shm, t tcp)\n", "rank", "host", "pid", n - 1);
    for (int r = 0; r < n; ++r) {
      const auto& card = comm.card(r);
      std::printf("%-6d %-24s %-8lld  %.*s\n", r, card.hostname.c_str(), static_cast<long long>(card.pid), n,
                  all.data() + static_cast<std::size_t>(r) * static_cast<std::size_t>(n));
    }

    const auto forced = tutti::algorithm::parse_algorithm_overrides(comm.config().algorithms);
    const std::vector<std::size_t> sizes{8, 1024, 64 << 10, 1 << 20, 64 << 20};
    std::printf("\n%-16s", "collective");
    for (const auto bytes : sizes) std::printf(" %17zu B", bytes);
    std::printf("\n");
    using tutti::algorithm::collective;
    for (const auto kind :
         {collective::all_reduce, collective::broadcast, collective::all_gather, collective::reduce_scatter,
          collective::reduce, collective::all_to_all, collective::barrier}) {
      std::printf("%-16s", std::string(tutti::algorithm::to_string(kind)).c_str());
      for (const auto bytes : sizes) {
        tutti::algorithm::collective_args args;
        args.kind = kind;
        args.size = n;
        args.count = bytes;
        args.element_size = 1;
        std::printf(" %19s", std::string(tutti::algorithm::choose_algorithm(args, forced)).c_str());
      }
      std::printf("\n");
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "tutti-info: %s\n", e.what());
    return 1;
  }
}
