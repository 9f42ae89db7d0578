// One tensor-parallel inference step through a two-layer MLP,
//
//   y = W2 * relu(W1 * x),
//
// with both weight matrices split across the ranks, Megatron-style:
//
// - W1 (hidden x inputs) is split by rows: rank r holds the rows of hidden
//   units [r*h, (r+1)*h), h = hidden / size ("column-parallel" in Megatron's
//   terms: the output features are split). Each rank computes its slice of the
//   hidden activations; relu acts element by element, so it applies to a slice
//   as well. all_gather then assembles the full hidden vector on every rank.
// - W2 (outputs x hidden) is split by columns: rank r holds the columns that
//   multiply hidden units [r*h, (r+1)*h) ("row-parallel"). Each rank's product
//   is a partial sum of the whole output vector; reduce_scatter(sum) adds the
//   partial sums and leaves rank r with its block of y, and all_gather hands
//   the whole y to every rank. (all_reduce would do both steps at once; the
//   two-step form shows both collectives, and is what a sequence-parallel
//   model keeps between layers.)
//
//   tutti-run -n 4 ./tensor_parallel
//
// Every rank can build the whole model here (it is tiny), so each one also
// computes the unsharded result and checks the distributed one against it.
#include <tutti/tutti.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <span>
#include <vector>

namespace {

// Sharding needs hidden and outputs to be multiples of the world size; these
// split evenly over 1, 2, 3, 4, 6, 8, 12 or 24 ranks (the divisors of 24).
constexpr std::size_t inputs = 32;
constexpr std::size_t hidden = 96;
constexpr std::size_t outputs = 24;

// Entries are small integers stored as floats: |x| <= 3, |W1|, |W2| <= 2. Then
// every product and partial sum is an integer of magnitude at most
// 96 * 2 * (32 * 2 * 3) = 36864 < 2^24, which float represents exactly, so
// the sharded computation, which adds in a different order than the
// unsharded one, must still produce bit-identical results. With general real
// weights the two orders would differ by rounding, and the check would need a
// tolerance of a few ulps of the largest partial sum instead of ==.
constexpr int weight_range = 2;
constexpr int input_range = 3;

// A small deterministic generator (splitmix64), so every rank draws the same
// model and input from the same seed.
class generator {
 public:
  explicit generator(std::uint64_t seed) : state_(seed) {}
  // A uniform integer in [-range, range], as a float.
  float integer(int range) {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    const auto span = static_cast<std::uint64_t>(2 * range + 1);
    return static_cast<float>(static_cast<int>(z % span) - range);
  }

 private:
  std::uint64_t state_;
};

std::vector<float> random_values(generator& g, std::size_t count, int range) {
  std::vector<float> values(count);
  for (auto& v : values) v = g.integer(range);
  return values;
}

// out = B * v, where B is the block of the row-major matrix m (`stride`
// floats per row) made of its first out.size() rows and of the v.size()
// columns that start at `first_column`.
void multiply(const std::vector<float>& m, std::size_t stride, std::size_t first_column, std::span<const float> v,
              std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    float total = 0;
    for (std::size_t j = 0; j < v.size(); ++j) total += m[i * stride + first_column + j] * v[j];
    out[i] = total;
  }
}

void relu(std::span<float> values) {
  for (auto& v : values) v = v > 0 ? v : 0.0f;
}

// The index of the first difference between a and b, or -1.
long first_difference(std::span<const float> a, std::span<const float> b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return static_cast<long>(i);
  }
  return -1;
}

int run(tutti::communicator& comm) {
  const int rank = comm.rank();
  const auto size = static_cast<std::size_t>(comm.size());
  if (hidden % size != 0 || outputs % size != 0) {
    // Every rank sees the same sizes, so every rank stops here: no rank is
    // left waiting in a collective.
    if (rank == 0) {
      std::fprintf(stderr,
                   "tensor_parallel: %zu hidden units and %zu outputs do not split evenly over %zu ranks; "
                   "use a rank count that divides 24 (1, 2, 3, 4, 6, 8, 12 or 24)\n",
                   hidden, outputs, size);
    }
    return 1;
  }
  const std::size_t h = hidden / size;   // hidden units per rank
  const std::size_t o = outputs / size;  // outputs per rank after reduce_scatter
  const std::size_t first_hidden = h * static_cast<std::size_t>(rank);

  // The whole model, the same on every rank (a fixed seed). A real deployment
  // would load only its shard; slicing a full copy keeps the example short.
  generator g(42);
  const std::vector<float> w1 = random_values(g, hidden * inputs, weight_range);   // hidden x inputs
  const std::vector<float> w2 = random_values(g, outputs * hidden, weight_range);  // outputs x hidden
  const std::vector<float> x = random_values(g, inputs, input_range);

  // --- Layer 1, column-parallel: rows [first_hidden, first_hidden + h) of W1.
  // They are contiguous in row-major storage, so the shard is a sub-range.
  const std::vector<float> w1_shard(w1.begin() + static_cast<std::ptrdiff_t>(first_hidden * inputs),
                                    w1.begin() + static_cast<std::ptrdiff_t>((first_hidden + h) * inputs));
  std::vector<float> hidden_slice(h);
  multiply(w1_shard, inputs, 0, x, hidden_slice);
  relu(hidden_slice);

  // all_gather puts rank r's slice at [r*h, (r+1)*h), which is where hidden
  // unit first_hidden belongs. The next layer needs only this rank's own
  // slice, so a model would skip this gather (Megatron does); it is here to
  // show all_gather and to check the hidden layer.
  std::vector<float> hidden_full(hidden);
  comm.all_gather(std::span<const float>(hidden_slice), std::span(hidden_full));

  // --- Layer 2, row-parallel: columns [first_hidden, first_hidden + h) of W2,
  // times this rank's slice of the hidden vector, is this rank's share of
  // every output.
  std::vector<float> partial_y(outputs);
  multiply(w2, hidden, first_hidden, hidden_slice, partial_y);

  // reduce_scatter sums the partial outputs over ranks and leaves rank r with
  // block r of the sum: outputs [r*o, (r+1)*o).
  std::vector<float> y_block(o);
  comm.reduce_scatter(std::span<const float>(partial_y), std::span(y_block), tutti::sum{});
  // all_gather reassembles the blocks in rank order: the whole y.
  std::vector<float> y(outputs);
  comm.all_gather(std::span<const float>(y_block), std::span(y));

  // --- The unsharded reference, computed locally.
  std::vector<float> reference_hidden(hidden);
  multiply(w1, inputs, 0, x, reference_hidden);
  relu(reference_hidden);
  std::vector<float> reference_y(outputs);
  multiply(w2, hidden, 0, reference_hidden, reference_y);

  if (const long i = first_difference(hidden_full, reference_hidden); i >= 0) {
    const auto at = static_cast<std::size_t>(i);
    std::fprintf(stderr, "tensor_parallel: rank %d: hidden[%zu] = %g, expected %g\n", rank, at,
                 static_cast<double>(hidden_full[at]), static_cast<double>(reference_hidden[at]));
    return 1;
  }
  if (const long i = first_difference(y, reference_y); i >= 0) {
    const auto at = static_cast<std::size_t>(i);
    std::fprintf(stderr, "tensor_parallel: rank %d: y[%zu] = %g, expected %g\n", rank, at, static_cast<double>(y[at]),
                 static_cast<double>(reference_y[at]));
    return 1;
  }
  if (rank == 0) {
    std::printf(
        "MLP %zu -> %zu -> %zu split over %zu ranks: y matches the unsharded result exactly "
        "(y[0..3] = %g %g %g %g)\n",
        inputs, hidden, outputs, size, static_cast<double>(y[0]), static_cast<double>(y[1]), static_cast<double>(y[2]),
        static_cast<double>(y[3]));
  }
  return 0;
}

}  // namespace

int main() {
  try {
    auto comm = tutti::communicator::from_env();
    return run(comm);
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "tensor_parallel: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tensor_parallel: %s\n", e.what());
    return 1;
  }
}
