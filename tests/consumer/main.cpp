// Built by the consumer tests through find_package, add_subdirectory and
// pkg-config; exits 0 only if the library works as included.
#include <tutti/tutti.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<tutti::bfloat16> gradients(1000, tutti::bfloat16(0.5f));
  const std::vector<tutti::bfloat16> other(1000, tutti::bfloat16(0.25f));
  tutti::reduce_into(std::span<tutti::bfloat16>(gradients), std::span<const tutti::bfloat16>(other));
  const bool ok = static_cast<float>(gradients[999]) == 0.75f;
  std::printf("tutti %s consumer: %s\n", tutti::version_string, ok ? "ok" : "wrong result");
  return ok ? 0 : 1;
}
