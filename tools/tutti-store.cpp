// tutti-store: a standalone TCP store for jobs whose rank 0 should not host
// it (e.g. elastic jobs, or a login node that all ranks can reach).
//
//   TUTTI_STORE_TOKEN=... tutti-store tcp://0.0.0.0:29400
//
// Serves until SIGINT or SIGTERM. Ranks then use TUTTI_STORE=tcp://<this host>:29400.
// Note that from_env() makes rank 0 host a store of its own at TUTTI_STORE;
// run such jobs with the explicit communicator(store, rank, size) form and a
// tcp_store client.
#include <csignal>
#include <cstdio>
#include <string>

#include <tutti/bootstrap/tcp_store.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tutti-store tcp://<address to listen on>:<port>\n");
    return 2;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  // Blocked before the server thread starts, so only sigwait below sees them.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    const auto where = tutti::detail::parse_tcp_url(argv[1], "the listen address");
    const std::string token = tutti::detail::process_env("TUTTI_STORE_TOKEN").value_or("");
    tutti::tcp_store_server server(where, token);
    std::printf("tutti-store: serving on %s:%u%s\n", where.host.c_str(), server.port(),
                token.empty() ? "" : " (token required)");
    std::fflush(stdout);
    int signal = 0;
    sigwait(&stop_signals, &signal);
    std::printf("tutti-store: stopping on signal %d\n", signal);
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
