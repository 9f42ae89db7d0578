// tutti-bench: nccl-tests for tutti, on Google Benchmark.
//
//   tutti-bench -n 4 -c all_reduce,all_gather -b 8 -e 64M [--check] [--csv FILE]
//   tutti-bench -n 2 --compare mpi      the same cases through Open MPI, side by side
//   tutti-run -n 4 -- tutti-bench ...   under any launcher: runs as one of its ranks
//
// Started without a launcher it launches --ranks local processes of itself
// (or threads of one process with --threads). Every rank runs the same cases
// (bench/harness/run.hpp); rank 0 prints nccl-tests' table: time, algbw and
// busbw per collective, size and algorithm. See harness/options.hpp for the
// options.
#include <tutti/tutti.hpp>

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../tools/local_ranks.hpp"
#include "harness/buffers.hpp"
#include "harness/run.hpp"
#include "memcpy_reference.hpp"

namespace {

namespace tb = tutti::bench;
using tb::operation;

std::optional<tutti::algorithm::collective> collective_of(operation op) {
  using tutti::algorithm::collective;
  switch (op) {
    case operation::all_reduce: return collective::all_reduce;
    case operation::all_gather: return collective::all_gather;
    case operation::reduce_scatter: return collective::reduce_scatter;
    case operation::broadcast: return collective::broadcast;
    case operation::reduce: return collective::reduce;
    case operation::all_to_all: return collective::all_to_all;
    case operation::send_recv: return std::nullopt;
  }
  return std::nullopt;
}

template <class F>
void with_reduction(const std::string& name, F&& f) {
  if (name == "prod") {
    f(tutti::prod{});
  } else if (name == "min") {
    f(tutti::min{});
  } else if (name == "max") {
    f(tutti::max{});
  } else {
    f(tutti::sum{});
  }
}

// One rank of tutti: its communicator, one more per forced algorithm (dup
// with options), and its buffers.
template <class T>
class tutti_runner final : public tb::runner {
 public:
  tutti_runner(tutti::communicator comm, const tb::options& o) : base_(std::move(comm)), options_(o) {
    buffers_.reserve(o.max_bytes / sizeof(T));
    register_buffers(base_);
  }
  ~tutti_runner() override {
    unregister_buffers(base_);
    for (auto& [key, comm] : forced_) unregister_buffers(comm);
  }

  [[nodiscard]] int rank() const override { return base_.rank(); }
  [[nodiscard]] int ranks() const override { return base_.size(); }
  [[nodiscard]] std::string library() const override { return "tutti"; }
  [[nodiscard]] std::size_t element_size() const override { return sizeof(T); }

  [[nodiscard]] std::vector<std::string> algorithms_for(operation op) override {
    const auto kind = collective_of(op);
    if (!kind) return {"-"};  // point to point has no algorithms
    const auto known = tutti::algorithm::algorithms_for(*kind);
    std::vector<std::string> out;
    for (const auto& name : options_.algorithms) {
      if (name == "all") {
        out.insert(out.end(), known.begin(), known.end());
      } else if (name == "auto" || std::find(known.begin(), known.end(), name) != known.end()) {
        out.push_back(name);
      }
    }
    return out;
  }

  void prepare(operation op, const std::string& algorithm, const tb::geometry& g) override {
    op_ = op;
    g_ = g;
    comm_ = &base_;
    if (algorithm != "auto" && algorithm != "-") {
      const std::string forced = std::string(tutti::algorithm::to_string(*collective_of(op))) + "=" + algorithm;
      auto found = forced_.find(forced);
      if (found == forced_.end()) {
        tutti::options config = base_.config();
        config.algorithms = forced;
        found = forced_.emplace(forced, base_.dup(config)).first;
        register_buffers(found->second);
      }
      comm_ = &found->second;
    }
  }

  double timed(int count) override {
    const auto start = std::chrono::steady_clock::now();
    run(count);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / count;
    if (op_ == operation::send_recv) seconds /= 2;  // one way
    base_.all_reduce(std::span(&seconds, 1), tutti::max{});
    return seconds;
  }

  long long check() override {
    buffers_.fill(op_, options_.op, rank(), g_);
    run(1);
    std::int64_t wrong = buffers_.wrong(op_, options_.op, rank(), ranks(), g_);
    base_.all_reduce(std::span(&wrong, 1));
    return wrong;
  }

  [[nodiscard]] std::string algorithm_used() override {
    const auto kind = collective_of(op_);
    return kind ? comm_->plan(*kind, g_.block, sizeof(T)).algorithm : "-";
  }

 private:
  void register_buffers(tutti::communicator& c) {
    c.register_memory(std::span<const T>(buffers_.in));
    c.register_memory(std::span<const T>(buffers_.out));
  }
  void unregister_buffers(tutti::communicator& c) {
    c.unregister_memory(std::span<const T>(buffers_.in));
    c.unregister_memory(std::span<const T>(buffers_.out));
  }

  // `count` operations back to back; the reduction is picked by name once,
  // outside the loop.
  void run(int count) {
    tutti::communicator& c = *comm_;
    const std::span<const T> in(buffers_.in.data(), g_.in);
    const std::span<T> out(buffers_.out.data(), g_.out);
    auto repeat = [count](auto&& body) {
      for (int i = 0; i < count; ++i) body();
    };
    switch (op_) {
      case operation::all_reduce:
        with_reduction(options_.op, [&](auto op) { repeat([&] { c.all_reduce(in, out, op); }); });
        break;
      case operation::reduce:
        with_reduction(options_.op, [&](auto op) { repeat([&] { c.reduce(in, out, 0, op); }); });
        break;
      case operation::reduce_scatter:
        with_reduction(options_.op, [&](auto op) { repeat([&] { c.reduce_scatter(in, out, op); }); });
        break;
      case operation::broadcast: repeat([&] { c.broadcast(out, 0); }); break;
      case operation::all_gather: repeat([&] { c.all_gather(in, out); }); break;
      case operation::all_to_all: repeat([&] { c.all_to_all(in, out); }); break;
      case operation::send_recv:
        // Rank 1 returns what it got: a round trip of one message each way.
        repeat([&] {
          if (c.rank() == 0) {
            c.send(in, 1);
            c.recv(out, 1);
          } else if (c.rank() == 1) {
            c.recv(out, 0);
            c.send(std::span<const T>(out), 0);
          }
        });
        break;
    }
  }

  tutti::communicator base_;
  tb::options options_;
  std::map<std::string, tutti::communicator> forced_;  // "all_reduce=ring" -> its communicator
  tutti::communicator* comm_ = &base_;
  tb::buffers<T> buffers_;
  operation op_ = operation::all_reduce;
  tb::geometry g_;
};

std::unique_ptr<tb::runner> make_runner(tutti::communicator comm, const tb::options& o) {
  if (o.dtype == "double") return std::make_unique<tutti_runner<double>>(std::move(comm), o);
  if (o.dtype == "int32") return std::make_unique<tutti_runner<std::int32_t>>(std::move(comm), o);
  if (o.dtype == "int64") return std::make_unique<tutti_runner<std::int64_t>>(std::move(comm), o);
  if (o.dtype == "half") return std::make_unique<tutti_runner<tutti::half>>(std::move(comm), o);
  if (o.dtype == "bfloat16") return std::make_unique<tutti_runner<tutti::bfloat16>>(std::move(comm), o);
  return std::make_unique<tutti_runner<float>>(std::move(comm), o);
}

tutti::options tutti_options(const tb::options& o) {
  tutti::options config;
  config.transport = o.transport;
  return config;
}

// --threads: the ranks are threads of this process, each with its own
// communicator and runner; the team runs every call on all of them at once
// and answers with rank 0's result (every rank's is the same maximum or sum).
class team_runner final : public tb::runner {
 public:
  explicit team_runner(const tb::options& o) : members_(static_cast<std::size_t>(o.ranks)) {
    auto store = std::make_shared<tutti::memory_store>();
    for (int r = 0; r < o.ranks; ++r) {
      threads_.emplace_back([this, r, store, &o] { serve(r, store, o); });
    }
    wait_done();  // every member constructed, or the first error
  }
  ~team_runner() override {
    {
      const std::scoped_lock lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  [[nodiscard]] int rank() const override { return 0; }
  [[nodiscard]] int ranks() const override { return static_cast<int>(members_.size()); }
  [[nodiscard]] std::string library() const override { return "tutti"; }
  [[nodiscard]] std::size_t element_size() const override { return members_[0]->element_size(); }
  [[nodiscard]] std::vector<std::string> algorithms_for(operation op) override {
    return members_[0]->algorithms_for(op);
  }
  void prepare(operation op, const std::string& algorithm, const tb::geometry& g) override {
    on_all([&](tb::runner& m) {
      m.prepare(op, algorithm, g);
      return 0.0;
    });
  }
  double timed(int count) override {
    return on_all([&](tb::runner& m) { return m.timed(count); });
  }
  long long check() override {
    return static_cast<long long>(on_all([&](tb::runner& m) { return static_cast<double>(m.check()); }));
  }
  [[nodiscard]] std::string algorithm_used() override { return members_[0]->algorithm_used(); }

 private:
  void serve(int r, const std::shared_ptr<tutti::memory_store>& store, const tb::options& o) {
    std::size_t seen = 0;
    try {
      members_[static_cast<std::size_t>(r)] = make_runner(tutti::communicator(store, r, o.ranks, tutti_options(o)), o);
    } catch (...) {
      fail(std::current_exception());
    }
    finish(r, 0);
    for (;;) {
      std::function<double(tb::runner&)> task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) break;
        seen = generation_;
        task = task_;
      }
      double value = 0;
      try {
        if (members_[static_cast<std::size_t>(r)]) value = task(*members_[static_cast<std::size_t>(r)]);
      } catch (...) {
        fail(std::current_exception());
      }
      finish(r, value);
    }
    // Each rank leaves its communicator on its own thread, as it joined.
    members_[static_cast<std::size_t>(r)].reset();
  }

  void fail(std::exception_ptr e) {
    const std::scoped_lock lock(mutex_);
    if (!error_) error_ = std::move(e);
  }
  void finish(int r, double value) {
    {
      const std::scoped_lock lock(mutex_);
      if (r == 0) value_ = value;
      ++done_;
    }
    done_signal_.notify_all();
  }
  void wait_done() {
    std::unique_lock lock(mutex_);
    done_signal_.wait(lock, [&] { return done_ == members_.size(); });
    done_ = 0;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }
  double on_all(std::function<double(tb::runner&)> task) {
    {
      const std::scoped_lock lock(mutex_);
      task_ = std::move(task);
      ++generation_;
    }
    wake_.notify_all();
    wait_done();
    return value_;
  }

  std::vector<std::unique_ptr<tb::runner>> members_;
  std::vector<std::jthread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_signal_;
  std::function<double(tb::runner&)> task_;
  std::size_t generation_ = 0;
  std::size_t done_ = 0;
  double value_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

std::filesystem::path self_path() { return std::filesystem::read_symlink("/proc/self/exe"); }

// Whether a launcher started this process as one rank of a world.
bool launched() {
  try {
    static_cast<void>(tutti::detect_launch());
    return true;
  } catch (const tutti::error& e) {
    if (e.code() == tutti::errc::unavailable) return false;
    throw;
  }
}

// --compare mpi: the MPI driver built beside this binary, under mpirun.
std::vector<tb::result> run_mpi(const tb::options& o, const std::vector<std::string>& gb_flags,
                                const std::filesystem::path& csv) {
  const auto driver = self_path().parent_path() / "tutti-bench-mpi";
  if (!std::filesystem::exists(driver)) {
    std::fprintf(stderr,
                 "tutti-bench: --compare mpi needs %s, built when Open MPI's development files "
                 "(libopenmpi-dev) are installed at configure time\n",
                 driver.c_str());
    std::exit(2);
  }
  std::vector<std::string> argv{
      "mpirun.openmpi",        "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-n",
      std::to_string(o.ranks), driver.string()};
  for (auto& a : tb::options_argv(o)) argv.push_back(std::move(a));
  argv.insert(argv.end(), gb_flags.begin(), gb_flags.end());
  argv.insert(argv.end(), {"--csv", csv.string()});
  auto mpirun = tutti::tools::process::spawn(argv);
  if (const int status = mpirun.wait(std::chrono::hours(1)); status != 0) {
    std::fprintf(stderr, "tutti-bench: mpirun %s exited with status %d\n", driver.c_str(), status);
    std::exit(1);
  }
  return tb::read_csv(csv.string());
}

// Without a launcher: start the ranks (processes of this binary, or
// threads), then compare with MPI when asked.
int launch(const tb::options& o, const std::vector<std::string>& gb_flags, bool gb_reports) {
  // The copy ceiling of this machine, measured before any rank spins.
  if (!gb_reports) {
    std::printf("# single-thread memcpy, 64 MiB, in this binary: %.2f GB/s\n",
                tb::memcpy_gbps(std::size_t{64} << 20, 15));
    std::fflush(stdout);
  }
  if (o.threads) {
    if (!o.compare.empty()) tb::usage_error("tutti-bench", "--compare runs with processes, not --threads");
    team_runner team(o);
    return tb::report_results(team, o, tb::run_cases(team, o, gb_reports), gb_reports);
  }
  std::string dir_pattern = (std::filesystem::temp_directory_path() / "tutti-bench-XXXXXX").string();
  if (::mkdtemp(dir_pattern.data()) == nullptr) {
    std::perror("tutti-bench: mkdtemp");
    return 1;
  }
  const std::filesystem::path work(dir_pattern);
  const auto ours = work / "tutti.csv";
  std::vector<std::string> argv{self_path().string()};
  for (auto& a : tb::options_argv(o)) argv.push_back(std::move(a));
  argv.insert(argv.end(), gb_flags.begin(), gb_flags.end());
  argv.insert(argv.end(), {"--csv", ours.string()});
  int status = tutti::tools::run_local_ranks(argv, o.ranks, tutti::tools::free_loopback_store(),
                                             std::chrono::seconds(10), "tutti-bench");
  std::vector<tb::result> rows = tb::read_csv(ours.string());
  if (status == 0 && o.compare == "mpi") {
    const auto theirs = run_mpi(o, gb_flags, work / "mpi.csv");
    std::printf("#\n# --compare mpi: time per operation, and speedup = MPI's time / tutti's\n");
    tb::print_comparison(stdout, rows, theirs);
    rows.insert(rows.end(), theirs.begin(), theirs.end());
  }
  if (!o.csv.empty() && !tb::write_csv(o.csv, rows)) {
    std::fprintf(stderr, "tutti-bench: cannot write %s\n", o.csv.c_str());
    status = status == 0 ? 1 : status;
  }
  std::filesystem::remove_all(work);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const bool gb_reports = tb::wants_gb_format(argc, argv);
  std::vector<std::string> gb_flags;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with("--benchmark_")) gb_flags.emplace_back(argv[i]);
  }
  benchmark::Initialize(&argc, argv);
  const tb::options o = tb::parse_options(argc, argv);
  try {
    if (!launched()) return launch(o, gb_flags, gb_reports);
    auto runner = make_runner(tutti::communicator::from_env(tutti_options(o)), o);
    const auto rows = tb::run_cases(*runner, o, gb_reports);
    return tb::report_results(*runner, o, rows, gb_reports);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tutti-bench: %s\n", e.what());
    return 1;
  }
}
