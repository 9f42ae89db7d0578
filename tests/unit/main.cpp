// Catch2's runner, preceded by the worker dispatch of multi-process tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "../support/subprocess.hpp"

int main(int argc, char** argv) {
  if (const auto status = tutti::test::run_worker_if_requested(argc, argv)) return *status;
  return Catch::Session().run(argc, argv);
}
