// Must not compile: the test passes when the compiler rejects it with the
// sentence from tutti::detail::check_op.
#include <tutti/runtime/reduce_kernel.hpp>

#include <vector>

int main() {
  std::vector<float> a(4), b(4);
  tutti::reduce_into(std::span<float>(a), std::span<const float>(b), tutti::bxor{});
}
