// Splitting a world into groups, as frameworks do for 2-D parallelism: the
// ranks form a grid of `rows` x `columns`, split() gives each rank a row
// communicator (its tensor-parallel group, say) and a column communicator
// (its data-parallel group), and the two are used together.
//
//   tutti-run -n 6 ./split
//
// Summing over the row and then over the column adds up every rank's value
// once, so it must equal one all_reduce over the whole world. The row and
// column communicators have channels of their own: their traffic never mixes
// with the world's or each other's.
#include <tutti/tutti.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <span>
#include <vector>

namespace {

// The most columns that divide the world evenly while keeping the grid no
// wider than it is tall (1 x n for a prime n).
int columns_for(int size) {
  int columns = 1;
  for (int c = 1; c * c <= size; ++c) {
    if (size % c == 0) columns = c;
  }
  return columns;
}

int run(tutti::communicator& world) {
  const int rank = world.rank();
  const int columns = columns_for(world.size());
  const int row = rank / columns;
  const int column = rank % columns;

  // Same color, same group; the key orders ranks inside it.
  std::optional<tutti::communicator> row_comm = world.split(row, column);
  std::optional<tutti::communicator> column_comm = world.split(column, row);
  if (row_comm->rank() != column || column_comm->rank() != row) {
    std::fprintf(stderr, "split: rank %d landed at (%d, %d) instead of (%d, %d)\n", rank, column_comm->rank(),
                 row_comm->rank(), row, column);
    return 1;
  }

  // Rank r contributes r + 1 in every element.
  std::vector<std::int64_t> staged(256, rank + 1);
  row_comm->all_reduce(std::span(staged));
  column_comm->all_reduce(std::span(staged));

  std::vector<std::int64_t> direct(256, rank + 1);
  world.all_reduce(std::span(direct));

  // Ranks of the odd rows sit this one out.
  auto even_rows = world.split(row % 2 == 0 ? 0 : tutti::communicator::no_color, rank);
  std::int64_t members = 1;
  if (even_rows) even_rows->all_reduce(std::span(&members, 1));
  const std::int64_t expected_members = static_cast<std::int64_t>((world.size() / columns + 1) / 2) * columns;

  const std::int64_t expected = std::int64_t{world.size()} * (world.size() + 1) / 2;
  for (std::size_t i = 0; i < staged.size(); ++i) {
    if (staged[i] != expected || direct[i] != expected) {
      std::fprintf(stderr, "split: rank %d: element %zu is %lld by rows then columns and %lld directly; want %lld\n",
                   rank, i, static_cast<long long>(staged[i]), static_cast<long long>(direct[i]),
                   static_cast<long long>(expected));
      return 1;
    }
  }
  if (even_rows.has_value() != (row % 2 == 0) || (even_rows && members != expected_members)) {
    std::fprintf(stderr, "split: rank %d: the even-row group is wrong (%lld members, want %lld)\n", rank,
                 static_cast<long long>(members), static_cast<long long>(expected_members));
    return 1;
  }
  if (rank == 0) {
    std::printf(
        "split: %d ranks as %d x %d; rows then columns sum to %lld, as one all_reduce; %lld ranks in even rows\n",
        world.size(), world.size() / columns, columns, static_cast<long long>(expected),
        static_cast<long long>(members));
  }
  return 0;
}

}  // namespace

int main() {
  try {
    auto world = tutti::communicator::from_env();
    return run(world);
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "split: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "split: %s\n", e.what());
    return 1;
  }
}
