// Forms a communicator from the launcher's environment (tutti-run, torchrun,
// srun, mpirun, or TUTTI_RANK/TUTTI_WORLD_SIZE/TUTTI_STORE) and says who it is.
//
//   tutti-run -n 4 ./hello
#include <tutti/tutti.hpp>

#include <cstdio>

int main() {
  try {
    const auto comm = tutti::communicator::from_env();
    const auto& me = comm.card(comm.rank());
    std::printf("rank %d of %d on %s (local rank %d of %d, pid %lld)\n", comm.rank(), comm.size(), me.hostname.c_str(),
                comm.local_rank(), comm.local_size(), static_cast<long long>(me.pid));
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "hello: %s\n", e.what());
    return 1;
  }
}
