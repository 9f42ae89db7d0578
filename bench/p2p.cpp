// Point-to-point latency and streaming bandwidth between ranks 0 and 1 of a
// communicator, over whatever transport it chose, measured the way perftest
// measures verbs so that the two can be compared as ratios:
//
//   latency    ping-pong of --latency-bytes; each round trip's half is one
//              sample; "typical" is the median, as ib_write_lat's t_typical
//   bandwidth  --bandwidth-messages sends of --bandwidth-bytes, --window of
//              them in flight at a time, timed on rank 0 up to the receiver's
//              one-byte acknowledgement; MiB/s (2^20 bytes), as ib_write_bw
//
// The buffers are given to register_memory first, as perftest registers
// its buffer once. Run it as two ranks of any launcher:
//   tutti-run -n 2 -- tutti-bench-p2p
// Rank 0 prints one machine-readable line per figure:
//   tutti-bench-p2p: latency bytes=8 iters=1000 typical_us=... avg_us=... min_us=...
//   tutti-bench-p2p: bandwidth bytes=4194304 messages=64 window=16 MiBps=...
#include <tutti/tutti.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
  std::size_t latency_bytes = 8;
  int latency_iters = 1000;
  std::size_t bandwidth_bytes = std::size_t{4} << 20;
  int bandwidth_messages = 64;
  int window = 16;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tutti-bench-p2p: %s\n"
               "usage: tutti-bench-p2p [--latency-bytes N] [--latency-iters N] [--bandwidth-bytes N]\n"
               "                       [--bandwidth-messages N] [--window N]\n"
               "Runs as ranks 0 and 1 of a communicator (tutti-run -n 2 -- tutti-bench-p2p).\n",
               why);
  std::exit(2);
}

long long number(std::string_view flag, const char* text, long long min) {
  long long v = 0;
  const std::string_view s(text);
  const auto [end, status] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (status != std::errc{} || end != s.data() + s.size() || v < min) {
    std::fprintf(stderr, "tutti-bench-p2p: %.*s needs a whole number >= %lld, not '%s'\n",
                 static_cast<int>(flag.size()), flag.data(), min, text);
    std::exit(2);
  }
  return v;
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage("every option takes a value");
    const char* value = argv[++i];
    if (flag == "--latency-bytes") {
      s.latency_bytes = static_cast<std::size_t>(number(flag, value, 0));
    } else if (flag == "--latency-iters") {
      s.latency_iters = static_cast<int>(number(flag, value, 1));
    } else if (flag == "--bandwidth-bytes") {
      s.bandwidth_bytes = static_cast<std::size_t>(number(flag, value, 1));
    } else if (flag == "--bandwidth-messages") {
      s.bandwidth_messages = static_cast<int>(number(flag, value, 1));
    } else if (flag == "--window") {
      s.window = static_cast<int>(number(flag, value, 1));
    } else {
      usage("unknown option");
    }
  }
  return s;
}

// One-way latency samples in microseconds, half of each round trip.
std::vector<double> ping_pong(tutti::communicator& comm, std::size_t bytes, int iters) {
  std::vector<std::uint8_t> message(bytes);
  const int peer = 1 - comm.rank();
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(iters));
  const int warmup = std::max(10, iters / 10);
  for (int i = 0; i < warmup + iters; ++i) {
    const auto start = clock_type::now();
    if (comm.rank() == 0) {
      comm.send(std::span<const std::uint8_t>(message), peer);
      comm.recv(std::span(message), peer);
    } else {
      comm.recv(std::span(message), peer);
      comm.send(std::span<const std::uint8_t>(message), peer);
    }
    if (i >= warmup) {
      samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count() / 2);
    }
  }
  return samples;
}

// MiB/s of `messages` sends of `bytes`, `window` in flight (rank 0).
double stream(tutti::communicator& comm, const settings& s) {
  const int peer = 1 - comm.rank();
  // The receiver's window of buffers; the sender sends one buffer again and
  // again, as ib_write_bw does.
  const std::size_t buffers = comm.rank() == 0 ? 1 : static_cast<std::size_t>(s.window);
  std::vector<std::uint8_t> memory(buffers * s.bandwidth_bytes);
  comm.register_memory(std::span<const std::uint8_t>(memory));
  std::vector<tutti::p2p_op> ops;
  auto window = [&](int count) {
    ops.clear();
    for (int m = 0; m < count; ++m) {
      auto slice =
          std::span(memory).subspan((static_cast<std::size_t>(m) % buffers) * s.bandwidth_bytes, s.bandwidth_bytes);
      ops.push_back(comm.rank() == 0 ? tutti::send_op(std::span<const std::uint8_t>(slice), peer)
                                     : tutti::recv_op(slice, peer));
    }
    comm.exchange(ops);
  };
  std::uint8_t ack = 0;
  window(s.window);  // warm up: connections, the first rendezvous
  comm.barrier();
  const auto start = clock_type::now();
  for (int sent = 0; sent < s.bandwidth_messages; sent += s.window)
    window(std::min(s.window, s.bandwidth_messages - sent));
  if (comm.rank() == 0) {
    comm.recv(std::span(&ack, 1), peer);
  } else {
    comm.send(std::span<const std::uint8_t>(&ack, 1), peer);
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  comm.unregister_memory(std::span<const std::uint8_t>(memory));
  return static_cast<double>(s.bandwidth_bytes) * s.bandwidth_messages / seconds / (1 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  try {
    auto comm = tutti::communicator::from_env();
    if (comm.size() != 2) usage("runs as exactly two ranks");
    const int peer = 1 - comm.rank();
    if (comm.rank() == 0) {
      std::printf("tutti-bench-p2p: ranks 0 and 1 over %.*s\n", static_cast<int>(comm.transport_to(peer).name().size()),
                  comm.transport_to(peer).name().data());
    }
    auto samples = ping_pong(comm, s.latency_bytes, s.latency_iters);
    const double mib_per_s = stream(comm, s);
    if (comm.rank() == 0) {
      std::sort(samples.begin(), samples.end());
      const double avg = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
      std::printf("tutti-bench-p2p: latency bytes=%zu iters=%d typical_us=%.2f avg_us=%.2f min_us=%.2f\n",
                  s.latency_bytes, s.latency_iters, samples[samples.size() / 2], avg, samples.front());
      std::printf("tutti-bench-p2p: bandwidth bytes=%zu messages=%d window=%d MiBps=%.1f\n", s.bandwidth_bytes,
                  s.bandwidth_messages, s.window, mib_per_s);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tutti-bench-p2p: %s\n", e.what());
    return 1;
  }
}
