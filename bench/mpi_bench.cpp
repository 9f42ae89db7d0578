// tutti-bench-mpi: the cases of tutti-bench through MPI (MPI_Allreduce,
// MPI_Allgather, MPI_Reduce_scatter_block, MPI_Bcast, MPI_Reduce,
// MPI_Alltoall, and a send/recv ping-pong), timed, checked and reported by
// the same harness, so that the two compare case by case. tutti-bench
// --compare mpi runs it under mpirun; it also runs on its own:
//   mpirun -n 4 tutti-bench-mpi -c all_reduce -b 8 -e 64M
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "harness/buffers.hpp"
#include "harness/run.hpp"

namespace {

namespace tb = tutti::bench;
using tb::operation;

template <class T>
MPI_Datatype datatype();
template <>
MPI_Datatype datatype<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype datatype<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype datatype<std::int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype datatype<std::int64_t>() {
  return MPI_INT64_T;
}

MPI_Op reduction(const std::string& name) {
  if (name == "prod") return MPI_PROD;
  if (name == "min") return MPI_MIN;
  if (name == "max") return MPI_MAX;
  return MPI_SUM;
}

std::string library_name() {
#if defined(OPEN_MPI)
  return "openmpi";
#elif defined(MPICH_VERSION)
  return "mpich";
#else
  return "mpi";
#endif
}

int count_of(std::size_t n) { return static_cast<int>(n); }

template <class T>
class mpi_runner final : public tb::runner {
 public:
  explicit mpi_runner(const tb::options& o) : options_(o) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
    buffers_.reserve(o.max_bytes / sizeof(T));
  }

  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int ranks() const override { return ranks_; }
  [[nodiscard]] std::string library() const override { return library_name(); }
  [[nodiscard]] std::size_t element_size() const override { return sizeof(T); }
  // MPI picks its algorithms itself.
  [[nodiscard]] std::vector<std::string> algorithms_for(operation) override { return {"-"}; }
  void prepare(operation op, const std::string&, const tb::geometry& g) override {
    op_ = op;
    op_handle_ = reduction(options_.op);  // once, not per timed operation
    g_ = g;
  }
  double timed(int count) override {
    const double start = MPI_Wtime();
    for (int i = 0; i < count; ++i) run_once();
    double seconds = (MPI_Wtime() - start) / count;
    if (op_ == operation::send_recv) seconds /= 2;
    double slowest = 0;
    MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return slowest;
  }
  long long check() override {
    buffers_.fill(op_, options_.op, rank_, g_);
    run_once();
    long long wrong = buffers_.wrong(op_, options_.op, rank_, ranks_, g_);
    long long total = 0;
    MPI_Allreduce(&wrong, &total, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return total;
  }
  [[nodiscard]] std::string algorithm_used() override { return "-"; }

 private:
  void run_once() {
    T* in = buffers_.in.data();
    T* out = buffers_.out.data();
    const MPI_Datatype type = datatype<T>();
    const MPI_Op op = op_handle_;
    switch (op_) {
      case operation::all_reduce: MPI_Allreduce(in, out, count_of(g_.in), type, op, MPI_COMM_WORLD); break;
      case operation::reduce: MPI_Reduce(in, out, count_of(g_.in), type, op, 0, MPI_COMM_WORLD); break;
      case operation::reduce_scatter:
        MPI_Reduce_scatter_block(in, out, count_of(g_.block), type, op, MPI_COMM_WORLD);
        break;
      case operation::broadcast: MPI_Bcast(out, count_of(g_.out), type, 0, MPI_COMM_WORLD); break;
      case operation::all_gather:
        MPI_Allgather(in, count_of(g_.block), type, out, count_of(g_.block), type, MPI_COMM_WORLD);
        break;
      case operation::all_to_all:
        MPI_Alltoall(in, count_of(g_.block), type, out, count_of(g_.block), type, MPI_COMM_WORLD);
        break;
      case operation::send_recv:
        if (rank_ == 0) {
          MPI_Send(in, count_of(g_.in), type, 1, 0, MPI_COMM_WORLD);
          MPI_Recv(out, count_of(g_.out), type, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank_ == 1) {
          MPI_Recv(out, count_of(g_.out), type, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(out, count_of(g_.out), type, 0, 0, MPI_COMM_WORLD);
        }
        break;
    }
  }

  tb::options options_;
  int rank_ = 0;
  int ranks_ = 1;
  tb::buffers<T> buffers_;
  operation op_ = operation::all_reduce;
  MPI_Op op_handle_ = MPI_SUM;
  tb::geometry g_;
};

std::unique_ptr<tb::runner> make_runner(const tb::options& o) {
  if (o.dtype == "double") return std::make_unique<mpi_runner<double>>(o);
  if (o.dtype == "int32") return std::make_unique<mpi_runner<std::int32_t>>(o);
  if (o.dtype == "int64") return std::make_unique<mpi_runner<std::int64_t>>(o);
  if (o.dtype == "float") return std::make_unique<mpi_runner<float>>(o);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const bool gb_reports = tb::wants_gb_format(argc, argv);
  benchmark::Initialize(&argc, argv);
  const tb::options o = tb::parse_options(argc, argv);
  auto runner = make_runner(o);
  if (!runner) {
    std::fprintf(stderr, "tutti-bench-mpi: MPI has no %s type\n", o.dtype.c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const auto rows = tb::run_cases(*runner, o, gb_reports);
  const int status = tb::report_results(*runner, o, rows, gb_reports);
  runner.reset();
  MPI_Finalize();
  return status;
}
