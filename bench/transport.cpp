// Point-to-point latency and bandwidth between two processes of every
// transport of the list that auto may pick between processes and that opens
// here (shm, tcp; verbs with an RDMA device), beside what they are judged
// against, measured in the same binary: a bare blocking-socket ping-pong
// over loopback and a single-thread memcpy.
//
//   one-way latency = half the round trip of a ping-pong of N bytes
//   bandwidth       = a window of messages streamed to the peer, one small
//                     acknowledgement per window
//
// Targets: shm 8 B one-way latency <= Open MPI's (vader; 0.43 us measured on
// these machines: run ../shared/peers in the same session), shm 64 MiB
// bandwidth >= 0.7 x memcpy, tcp 8 B latency <= 1.2 x the bare socket.
#include <tutti/tutti.hpp>

#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../tools/process.hpp"
#include "memcpy_reference.hpp"

namespace {

using namespace std::chrono_literals;
namespace tt = tutti::transport;

constexpr const char* peer_flag = "--transport-peer";
constexpr const char* echo_flag = "--bare-echo";

// What rank 0 asks rank 1 to do until a round starts with a stop message.
struct plan {
  std::uint64_t bytes = 0;
  std::uint64_t messages = 0;  // per round, rank 0 -> rank 1
  std::uint64_t reply = 0;     // bytes rank 1 sends back per round
};

tt::clock::time_point deadline() { return tt::clock::now() + 30s; }

// Each iteration is one round trip: one-way time is half of it.
void report_one_way(benchmark::State& state) {
  state.counters["one_way"] = benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Rank 1: serves plans until told to quit (a plan of zero messages).
int serve(tutti::communicator& comm) {
  auto& t = comm.transport_to(0);
  auto& c = comm.channel_to(0);
  std::vector<std::byte> buffer, reply;
  while (true) {
    plan p;
    tt::wait_received(t, c, c.post_recv(&p, sizeof p), deadline());
    if (p.messages == 0) return 0;
    buffer.assign(p.bytes * p.messages, std::byte{0});
    reply.assign(p.reply, std::byte{0});
    while (true) {
      std::uint64_t last = 0;
      for (std::uint64_t m = 0; m < p.messages; ++m) last = c.post_recv(buffer.data() + m * p.bytes, p.bytes);
      tt::wait_received(t, c, last, deadline());
      if (p.bytes > 0 && buffer[0] == std::byte{1}) break;  // stop
      tt::wait_sent(t, c, c.post_send(reply.data(), reply.size()), deadline());
    }
  }
}

// Rank 0's side of one transport: a communicator of two processes.
struct pair_session {
  std::unique_ptr<tutti::tcp_store_server> server;
  std::optional<tutti::communicator> comm;
  std::optional<tutti::tools::process> peer;

  explicit pair_session(const std::string& transport) {
    server = std::make_unique<tutti::tcp_store_server>(tutti::detail::endpoint{"127.0.0.1", 0});
    const auto store = "tcp://127.0.0.1:" + std::to_string(server->port());
    peer.emplace(tutti::tools::process::spawn(
        {"/proc/self/exe", peer_flag},
        {{"TUTTI_RANK", "1"}, {"TUTTI_WORLD_SIZE", "2"}, {"TUTTI_STORE", store}, {"TUTTI_TRANSPORT", transport}}));
    tutti::options config;
    config.transport = transport;
    config.timeout = 30s;
    comm.emplace(std::make_shared<tutti::tcp_store>(server->address(), "", config.timeout), 0, 2, config);
  }
  ~pair_session() {
    plan quit;
    auto& c = comm->channel_to(1);
    tt::wait_sent(comm->transport_to(1), c, c.post_send(&quit, sizeof quit), deadline());
    peer->wait(10s);
  }

  void run(benchmark::State& state, const plan& p) {
    auto& t = comm->transport_to(1);
    auto& c = comm->channel_to(1);
    tt::wait_sent(t, c, c.post_send(&p, sizeof p), deadline());
    std::vector<std::byte> out(p.bytes, std::byte{0});
    std::vector<std::byte> reply(p.reply);
    auto round = [&] {
      for (std::uint64_t m = 0; m < p.messages; ++m) c.post_send(out.data(), out.size());
      tt::wait_received(t, c, c.post_recv(reply.data(), reply.size()), deadline());
    };
    for (int warm = 0; warm < 10; ++warm) round();
    for (auto _ : state) round();
    if (p.bytes > 0) out[0] = std::byte{1};
    std::uint64_t last = 0;
    for (std::uint64_t m = 0; m < p.messages; ++m) last = c.post_send(out.data(), out.size());
    tt::wait_sent(t, c, last, deadline());
  }
};

std::map<std::string, std::unique_ptr<pair_session>>& sessions() {
  static std::map<std::string, std::unique_ptr<pair_session>> s;
  return s;
}

pair_session& session(const std::string& transport) {
  auto& s = sessions()[transport];
  if (!s) s = std::make_unique<pair_session>(transport);
  return *s;
}

void latency(benchmark::State& state, const std::string& transport, std::uint64_t bytes) {
  session(transport).run(state, {bytes, 1, bytes});
  report_one_way(state);
}

void bandwidth(benchmark::State& state, const std::string& transport, std::uint64_t bytes) {
  const std::uint64_t window = bytes >= (std::uint64_t{16} << 20) ? 2 : 8;
  session(transport).run(state, {bytes, window, 8});
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes * window));
}

// Whether `d` opens on this machine (verbs needs an RDMA device).
bool opens_here(const tt::descriptor& d) {
  const std::string why = tt::unavailable_here(d);
  if (!why.empty())
    std::fprintf(stderr, "%.*s: not measured: %s\n", static_cast<int>(d.name.size()), d.name.data(), why.c_str());
  return why.empty();
}

// A bare blocking-socket ping-pong over loopback: the floor for tcp latency.
int bare_echo(std::uint16_t port) {
  auto fd = tutti::detail::connect_to({"127.0.0.1", port}, tt::clock::now() + 10s);
  char buffer[8];
  while (true) {
    if (::recv(fd.get(), buffer, sizeof buffer, MSG_WAITALL) != sizeof buffer) return 0;
    if (::send(fd.get(), buffer, sizeof buffer, 0) != sizeof buffer) return 1;
  }
}

void bare_socket_latency(benchmark::State& state) {
  auto listener = tutti::detail::listen_on({"127.0.0.1", 0});
  auto echo = tutti::tools::process::spawn(
      {"/proc/self/exe", echo_flag, std::to_string(tutti::detail::bound_port(listener.get()))});
  tutti::detail::fd_handle fd(::accept(listener.get(), nullptr, nullptr));
  tutti::detail::set_nodelay(fd.get());
  char buffer[8] = {};
  for (auto _ : state) {
    ::send(fd.get(), buffer, sizeof buffer, 0);
    ::recv(fd.get(), buffer, sizeof buffer, MSG_WAITALL);
  }
  fd.reset();
  echo.wait(10s);
  report_one_way(state);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == peer_flag) {
    try {
      auto comm = tutti::communicator::from_env();
      return serve(comm);
    } catch (const tutti::error& e) {
      std::fprintf(stderr, "peer: %s\n", e.what());
      return 1;
    }
  }
  if (argc >= 3 && std::string(argv[1]) == echo_flag) return bare_echo(static_cast<std::uint16_t>(std::stoi(argv[2])));

  benchmark::RegisterBenchmark("memcpy/64MiB", tutti::bench::memcpy_reference, std::size_t{64} << 20)->MinTime(0.5);
  benchmark::RegisterBenchmark("bare_socket_latency/8", bare_socket_latency)->MinTime(0.5)->UseRealTime();
  for (const auto& d : tt::descriptors) {
    if (d.reaches == tt::reach::process || d.auto_preference == 0 || !opens_here(d)) continue;
    const std::string transport(d.name);
    for (const std::uint64_t bytes : {8u, 64u, 512u, 4096u, 32768u, 262144u, 1u << 20}) {
      benchmark::RegisterBenchmark(("latency/" + transport + "/" + std::to_string(bytes)).c_str(), latency, transport,
                                   bytes)
          ->MinTime(0.3)
          ->UseRealTime();
    }
    for (std::uint64_t bytes = 64u << 10; bytes <= (64u << 20); bytes *= 4) {
      benchmark::RegisterBenchmark(("bandwidth/" + transport + "/" + std::to_string(bytes)).c_str(), bandwidth,
                                   transport, bytes)
          ->MinTime(0.3)
          ->UseRealTime();
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  sessions().clear();
  benchmark::Shutdown();
  std::printf(
      "targets: latency/shm/8 one_way <= Open MPI vader's (../shared/peers, same session); "
      "bandwidth/shm/67108864 >= 0.7 x memcpy/64MiB; latency/tcp/8 one_way <= 1.2 x bare_socket_latency/8 one_way\n");
  return 0;
}
