// Catch2's runner, preceded by the worker dispatch of multi-process tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "../support/subprocess.hpp"

#include <cstdlib>

int main(int argc, char** argv) {
  // Tests talk over loopback (or the namespaces a test makes), never the
  // machine's own interfaces; workers inherit this.
  ::setenv("TUTTI_SOCKET_IFNAME", "lo", 0);
  if (const auto status = tutti::test::run_worker_if_requested(argc, argv)) return *status;
  return Catch::Session().run(argc, argv);
}
