// Data-parallel training in plain C++: every rank holds a full copy of a
// linear regression model and its own shard of the training data. After each
// minibatch the ranks average their gradients with all_reduce(avg), so every
// rank applies the same update and the replicas never drift apart. The
// average is issued with all_reduce_async and the next minibatch is loaded
// while it runs, as a training loop overlaps communication with its input
// pipeline.
//
//   tutti-run -n 4 ./data_parallel
//
// The model is y = w . x + b with 16 features, trained by minibatch SGD on
// half the mean squared error. The data come from known ground-truth weights
// plus noise, so the example can check that training recovers them.
#include <tutti/tutti.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t features = 16;
constexpr std::size_t parameters = features + 1;  // the weights, then the bias
constexpr std::size_t samples_per_rank = 512;
constexpr std::size_t batch_per_rank = 32;  // the global batch is this times the world size
constexpr int epochs = 20;
constexpr float learning_rate = 0.2f;
constexpr double noise_amplitude = 0.05;  // labels get uniform noise in [-a, a]

// A small deterministic generator (splitmix64). The standard distributions
// are implementation-defined; this gives the same numbers everywhere, which
// matters because every rank must derive the same ground truth.
class generator {
 public:
  explicit generator(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  double symmetric() { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }

 private:
  std::uint64_t state_;
};

struct shard {
  std::vector<float> x;  // samples_per_rank rows of `features` values
  std::vector<float> y;
};

// The ground truth is the same on every rank (a fixed seed); the samples
// depend on the rank, so each rank trains on different data drawn from the
// same underlying model.
std::array<double, parameters> ground_truth() {
  generator g(2024);
  std::array<double, parameters> truth{};
  for (auto& p : truth) p = g.symmetric();
  return truth;
}

shard make_shard(int rank, const std::array<double, parameters>& truth) {
  const std::uint64_t seed = 0x5eed0000ULL + static_cast<unsigned>(rank);
  generator g(seed);
  shard s;
  s.x.resize(samples_per_rank * features);
  s.y.resize(samples_per_rank);
  for (std::size_t i = 0; i < samples_per_rank; ++i) {
    double label = truth[features];
    for (std::size_t j = 0; j < features; ++j) {
      const double value = g.symmetric();
      s.x[i * features + j] = static_cast<float>(value);
      label += truth[j] * value;
    }
    s.y[i] = static_cast<float>(label + noise_amplitude * g.symmetric());
  }
  return s;
}

float predict(const std::vector<float>& model, const float* x) {
  float prediction = model[features];
  for (std::size_t j = 0; j < features; ++j) prediction += model[j] * x[j];
  return prediction;
}

// Copies samples [first, first + batch_per_rank) of the shard into `batch`:
// the stand-in for reading and decoding the next minibatch.
void load_batch(const shard& data, std::size_t first, shard& batch) {
  batch.x.assign(data.x.begin() + static_cast<std::ptrdiff_t>(first * features),
                 data.x.begin() + static_cast<std::ptrdiff_t>((first + batch_per_rank) * features));
  batch.y.assign(data.y.begin() + static_cast<std::ptrdiff_t>(first),
                 data.y.begin() + static_cast<std::ptrdiff_t>(first + batch_per_rank));
}

// Adds d(loss)/d(model) over samples [first, first + count) of the shard to
// `gradient`, for loss = mean of (prediction - label)^2 / 2 over those samples.
void accumulate_gradient(const std::vector<float>& model, const shard& data, std::size_t first, std::size_t count,
                         std::vector<float>& gradient) {
  const float scale = 1.0f / static_cast<float>(count);
  for (std::size_t i = first; i < first + count; ++i) {
    const float* x = &data.x[i * features];
    const float residual = (predict(model, x) - data.y[i]) * scale;
    for (std::size_t j = 0; j < features; ++j) gradient[j] += residual * x[j];
    gradient[features] += residual;
  }
}

// The loss over this rank's whole shard, in double to keep it accurate.
double shard_loss(const std::vector<float>& model, const shard& data) {
  double total = 0;
  for (std::size_t i = 0; i < samples_per_rank; ++i) {
    const double residual = static_cast<double>(predict(model, &data.x[i * features])) - data.y[i];
    total += residual * residual / 2;
  }
  return total / samples_per_rank;
}

// The loss over every rank's data. Shards are the same size, so the average
// of the per-shard means is the mean over all samples.
double global_loss(tutti::communicator& comm, const std::vector<float>& model, const shard& data) {
  double loss = shard_loss(model, data);
  comm.all_reduce(std::span(&loss, 1), tutti::avg{});
  return loss;
}

int train(tutti::communicator& comm) {
  const int rank = comm.rank();
  const auto truth = ground_truth();
  const shard data = make_shard(rank, truth);

  // Every rank starts from the same weights (zero here; random ones would need
  // a shared seed, or a broadcast from rank 0).
  std::vector<float> model(parameters, 0.0f);
  std::vector<float> gradient(parameters);
  shard batch, next_batch;

  const double initial_loss = global_loss(comm, model, data);
  if (rank == 0) std::printf("epoch %2d  loss %.6f\n", 0, initial_loss);
  double loss = initial_loss;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    // The samples are independent draws, so walking the shard in order is as
    // good as shuffling it.
    load_batch(data, 0, batch);
    for (std::size_t first = 0; first < samples_per_rank; first += batch_per_rank) {
      std::fill(gradient.begin(), gradient.end(), 0.0f);
      accumulate_gradient(model, batch, 0, batch_per_rank, gradient);
      // Each rank's gradient is the mean over its local batch; all local
      // batches are the same size, so averaging them over ranks gives the
      // gradient of the mean over the global batch. Every rank receives the
      // same bits, so every rank's update below is identical.
      tutti::request averaging = comm.all_reduce_async(std::span(gradient), tutti::avg{});
      // The gradient buffer belongs to the request until it is done; the
      // next batch does not depend on it.
      if (first + batch_per_rank < samples_per_rank) load_batch(data, first + batch_per_rank, next_batch);
      averaging.wait();
      std::swap(batch, next_batch);
      for (std::size_t p = 0; p < parameters; ++p) model[p] -= learning_rate * gradient[p];
    }
    loss = global_loss(comm, model, data);
    if (rank == 0 && (epoch % 5 == 0 || epoch == epochs)) std::printf("epoch %2d  loss %.6f\n", epoch, loss);
  }

  // Replicas must be bit-identical, not just close: any difference would grow
  // as training went on. Compare against rank 0's copy byte for byte (which
  // also tells -0 from +0 and compares NaNs).
  std::vector<float> reference = model;
  comm.broadcast(std::span(reference), 0);
  if (std::memcmp(reference.data(), model.data(), model.size() * sizeof(float)) != 0) {
    std::fprintf(stderr, "data_parallel: rank %d: the weights differ from rank 0's\n", rank);
    return 1;
  }

  double worst = 0;
  for (std::size_t p = 0; p < parameters; ++p) {
    worst = std::fmax(worst, std::fabs(static_cast<double>(model[p]) - truth[p]));
  }
  // Uniform noise in [-a, a] has variance a^2 / 3, so a model equal to the
  // ground truth scores a loss of a^2 / 6; training should land near that.
  // With thousands of samples for 17 parameters, least squares pins each
  // parameter to within a few thousandths of the truth; 0.02 leaves room for
  // the jitter of SGD at this learning rate.
  const double loss_floor = noise_amplitude * noise_amplitude / 6;
  const double tolerance = 0.02;
  if (rank == 0) {
    std::printf("final loss %.6f (noise floor %.6f), largest weight error %.5f (tolerance %.2f) on %d ranks\n", loss,
                loss_floor, worst, tolerance, comm.size());
  }
  if (!(loss < initial_loss / 100 && loss < 2 * loss_floor)) {
    std::fprintf(stderr, "data_parallel: rank %d: loss went from %g to %g, expected below %g\n", rank, initial_loss,
                 loss, 2 * loss_floor);
    return 1;
  }
  if (!(worst <= tolerance)) {
    std::fprintf(stderr, "data_parallel: rank %d: a weight is %g from the ground truth (tolerance %g)\n", rank, worst,
                 tolerance);
    return 1;
  }
  return 0;
}

}  // namespace

int main() {
  try {
    auto comm = tutti::communicator::from_env();
    return train(comm);
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "data_parallel: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel: %s\n", e.what());
    return 1;
  }
}
