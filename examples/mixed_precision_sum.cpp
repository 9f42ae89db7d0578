// Combines bfloat16 gradient shards the way an all-reduce combines them on
// each rank, and shows the rounding a 16-bit accumulator costs against a
// float32 one. The collectives call the same kernels on received chunks.
#include <tutti/tutti.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  constexpr std::size_t elements = 1 << 16;
  constexpr int shards = 8;

  std::vector<tutti::bfloat16> accumulated(elements, tutti::bfloat16(0.0f));
  std::vector<float> reference(elements, 0.0f);
  std::vector<tutti::bfloat16> shard(elements);
  std::vector<float> shard_float(elements);
  for (int s = 0; s < shards; ++s) {
    for (std::size_t i = 0; i < elements; ++i) {
      shard_float[i] = std::sin(static_cast<float>(i) * 0.001f + static_cast<float>(s));
      shard[i] = tutti::bfloat16(shard_float[i]);
    }
    tutti::reduce_into(std::span<tutti::bfloat16>(accumulated), std::span<const tutti::bfloat16>(shard));
    tutti::reduce_into(std::span<float>(reference), std::span<const float>(shard_float));
  }

  double worst = 0;
  for (std::size_t i = 0; i < elements; ++i) {
    worst = std::fmax(worst, std::fabs(static_cast<double>(static_cast<float>(accumulated[i]) - reference[i])));
  }
  // bfloat16 keeps 8 significant bits; each of the 8 steps rounds once, and
  // partial sums stay below 8 in magnitude, so the error is bounded by
  // shards * 2^-8 * 8 / 2.
  const double bound = shards * std::ldexp(8.0, -8) / 2;
  std::printf("summed %d bfloat16 shards of %zu elements: worst deviation from float32 %.4f (bound %.4f)\n", shards,
              elements, worst, bound);
  try {
    tutti::reduce_into(std::span<float>(reference).first(10), std::span<const float>(shard_float));
  } catch (const tutti::error& e) {
    std::printf("mismatched shard rejected: %s\n", e.what());
  }
  return worst <= bound ? 0 : 1;
}
