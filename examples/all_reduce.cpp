// The smallest complete collective: every rank contributes a value, all_reduce
// sums the contributions, and every rank receives the same total.
//
//   tutti-run -n 4 ./all_reduce
#include <tutti/tutti.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <span>
#include <vector>

int main() {
  try {
    auto comm = tutti::communicator::from_env();
    const int rank = comm.rank();
    const int size = comm.size();

    // Rank r contributes r + 1 rather than r, so that rank 0's contribution
    // counts too: a dropped or doubled rank changes 1 + 2 + ... + size.
    const std::vector<float> contribution(1024, static_cast<float>(rank + 1));
    std::vector<float> total(contribution.size());
    std::int64_t count = rank + 1;

    // Out of place: `contribution` is read, `total` is written. Every rank
    // passes spans of the same length.
    comm.all_reduce(std::span(contribution), std::span(total), tutti::sum{});
    // In place: the result overwrites the contribution. A single value is a
    // span of one element.
    comm.all_reduce(std::span(&count, 1), tutti::sum{});

    // The sum is a small integer, which float represents exactly whatever the
    // order the ranks' contributions were added in, so == is the right test.
    const std::int64_t expected = std::int64_t{size} * (size + 1) / 2;
    for (std::size_t i = 0; i < total.size(); ++i) {
      if (total[i] != static_cast<float>(expected)) {
        std::fprintf(stderr, "all_reduce: rank %d: total[%zu] = %g, expected %lld\n", rank, i,
                     static_cast<double>(total[i]), static_cast<long long>(expected));
        return 1;
      }
    }
    if (count != expected) {
      std::fprintf(stderr, "all_reduce: rank %d: count = %lld, expected %lld\n", rank, static_cast<long long>(count),
                   static_cast<long long>(expected));
      return 1;
    }

    if (rank == 0) {
      std::printf("all_reduce(sum) over %d ranks: %zu floats and one int64 each equal %lld = %d*(%d+1)/2\n", size,
                  total.size(), static_cast<long long>(expected), size, size);
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "all_reduce: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "all_reduce: %s\n", e.what());
    return 1;
  }
}
