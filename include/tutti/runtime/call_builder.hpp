// Turns a typed collective call into a runtime::operation: checks the spans
// against the collective's buffer layout (algorithm/collective.hpp) before
// any byte moves, picks the algorithm (algorithm/select.hpp) and reuses the
// schedule made on the first call with the same arguments. The typed
// functions only take spans apart; the work is in the byte-level
// collective(), so templates do not multiply compile time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/runtime/call_check.hpp>
#include <tutti/runtime/operation_queue.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/types.hpp>

namespace tutti::runtime {

class call_builder {
 public:
  call_builder(int rank, int size, std::shared_ptr<const topology::cluster> cluster, const std::string& forced,
               bool check)
      : rank_(rank),
        size_(size),
        cluster_(std::move(cluster)),
        forced_(algorithm::parse_algorithm_overrides(forced)),
        check_(check) {}

  // The model algorithms are ranked with; set before the first call.
  void use_model(const algorithm::cost_model& model) { model_ = model; }
  [[nodiscard]] const algorithm::cost_model& model() const noexcept { return model_; }

  // The user's first collective is call #0 in check headers, whatever ran
  // before (calibration).
  void restart_sequence() noexcept { calls_ = 0; }

  // What a call of `kind` over `count` elements of `element_size` bytes
  // (uniform counts, root 0) would run.
  [[nodiscard]] algorithm::selection plan(algorithm::collective kind, std::size_t count,
                                          std::size_t element_size) const {
    auto args = args_for(kind, count, element_size, 0);
    return algorithm::choose(args, forced_, model_);
  }

  template <class T, class Op>
  operation all_reduce(std::span<const T> in, std::span<T> out, const Op& op) {
    return reducing(args_of<T>(algorithm::collective::all_reduce, in.size()), in, out, op, overlap::same_allowed);
  }
  template <class T, class Op>
  operation reduce(std::span<const T> in, std::span<T> out, int root, const Op& op) {
    auto args = args_of<T>(algorithm::collective::reduce, in.size(), root);
    if (rank_ != root) out = out.first(0);
    return reducing(std::move(args), in, out, op, overlap::same_allowed);
  }
  template <class T>
  operation broadcast(std::span<T> buffer, int root) {
    return moving(args_of<T>(algorithm::collective::broadcast, buffer.size(), root), std::span<const T>(), buffer);
  }
  template <class T>
  operation all_gather(std::span<const T> in, std::span<T> out) {
    return moving(args_of<T>(algorithm::collective::all_gather, in.size()), in, out);
  }
  template <class T>
  operation all_gather_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts) {
    auto args = args_of<T>(algorithm::collective::all_gather_v, 0);
    args.counts.assign(counts.begin(), counts.end());
    return moving(std::move(args), in, out);
  }
  template <class T, class Op>
  operation reduce_scatter(std::span<const T> in, std::span<T> out, const Op& op) {
    return reducing(args_of<T>(algorithm::collective::reduce_scatter, out.size()), in, out, op, overlap::disjoint);
  }
  template <class T, class Op>
  operation reduce_scatter_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts,
                             const Op& op) {
    auto args = args_of<T>(algorithm::collective::reduce_scatter_v, 0);
    args.counts.assign(counts.begin(), counts.end());
    return reducing(std::move(args), in, out, op, overlap::disjoint);
  }
  template <class T>
  operation gather(std::span<const T> in, std::span<T> out, int root) {
    if (rank_ != root) out = out.first(0);
    return moving(args_of<T>(algorithm::collective::gather, in.size(), root), in, out);
  }
  template <class T>
  operation scatter(std::span<const T> in, std::span<T> out, int root) {
    if (rank_ != root) in = in.first(0);
    return moving(args_of<T>(algorithm::collective::scatter, out.size(), root), in, out);
  }
  template <class T>
  operation all_to_all(std::span<const T> in, std::span<T> out) {
    const auto ranks = static_cast<std::size_t>(size_);
    if (in.size() % ranks != 0) {
      tutti::detail::fail(errc::invalid_argument, "all_to_all: input has ", in.size(), " elements, not a multiple of ",
                          ranks, " ranks");
    }
    return moving(args_of<T>(algorithm::collective::all_to_all, in.size() / ranks), in, out);
  }
  template <class T>
  operation all_to_all_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> send_counts,
                         std::span<const std::size_t> recv_counts) {
    auto args = args_of<T>(algorithm::collective::all_to_all_v, 0);
    args.counts.assign(send_counts.begin(), send_counts.end());
    args.recv_counts.assign(recv_counts.begin(), recv_counts.end());
    return moving(std::move(args), in, out);
  }
  operation barrier() {
    return collective(args_of<std::byte>(algorithm::collective::barrier, 0), nullptr, 0, nullptr, 0, std::nullopt);
  }

 private:
  enum class overlap { disjoint, same_allowed };

  template <class Op>
  static inline const Op stateless_op{};

  [[nodiscard]] algorithm::collective_args args_for(algorithm::collective kind, std::size_t count,
                                                    std::size_t element_size, int root) const {
    algorithm::collective_args args;
    args.kind = kind;
    args.rank = rank_;
    args.size = size_;
    args.count = count;
    args.element_size = element_size;
    args.root = root;
    args.cluster = cluster_;
    return args;
  }
  template <class T>
  [[nodiscard]] algorithm::collective_args args_of(algorithm::collective kind, std::size_t count, int root = 0) const {
    return args_for(kind, count, sizeof(T), root);
  }

  template <class T>
  operation moving(algorithm::collective_args args, std::span<const T> in, std::span<T> out) {
    check_overlap(args, std::as_bytes(in), std::as_bytes(out), overlap::disjoint);
    return collective(std::move(args), in.data(), in.size(), out.data(), out.size(), std::nullopt,
                      static_cast<std::uint8_t>(dtype_of<T>));
  }

  template <class T, class Op>
  operation reducing(algorithm::collective_args args, std::span<const T> in, std::span<T> out, const Op& op,
                     overlap rule) {
    tutti::detail::check_op<Op, T>();
    if constexpr (tutti::detail::valid_op<Op, T>) {
      return reducing_checked(std::move(args), in, out, op, rule);
    } else {
      return {};
    }
  }

  // reducing() for a valid op. A function of its own with one return, so
  // the operation is built in place (named return value): a second return
  // in the same function made GCC move the whole operation on every call.
  template <class T, class Op>
  operation reducing_checked(algorithm::collective_args args, std::span<const T> in, std::span<T> out, const Op& op,
                             overlap rule) {
    check_overlap(args, std::as_bytes(in), std::as_bytes(out), rule);
    // The reduction refers to its op, which must outlive a queued call: a
    // stateless op is one shared instance, a stateful one is copied.
    const Op* kept = nullptr;
    std::shared_ptr<const void> storage;
    if constexpr (std::is_empty_v<Op> && std::is_default_constructible_v<Op>) {
      kept = &stateless_op<Op>;
    } else {
      auto copy = std::make_shared<const Op>(op);
      kept = copy.get();
      storage = std::move(copy);
    }
    auto operation = collective(std::move(args), in.data(), in.size(), out.data(), out.size(),
                                tutti::detail::reduction::make<T>(*kept), static_cast<std::uint8_t>(dtype_of<T>));
    operation.op_storage = std::move(storage);
    // avg: the collective sums; the result is divided by the number of
    // contributions once it is complete.
    if constexpr (requires { Op::finalize(T{}, std::size_t{}); }) {
      operation.finalize = [](void* data, std::size_t elements, std::size_t contributors) {
        for (auto& x : std::span<T>(static_cast<T*>(data), elements)) x = Op::finalize(x, contributors);
      };
      operation.out_elements = out.size();
      operation.contributors = static_cast<std::size_t>(size_);
    }
    return operation;
  }

  static void check_overlap(const algorithm::collective_args& args, std::span<const std::byte> in,
                            std::span<const std::byte> out, overlap rule) {
    const auto in_begin = reinterpret_cast<std::uintptr_t>(in.data());
    const auto out_begin = reinterpret_cast<std::uintptr_t>(out.data());
    const bool overlapping =
        !in.empty() && !out.empty() && in_begin < out_begin + out.size() && out_begin < in_begin + in.size();
    const bool same = in.data() == out.data() && in.size() == out.size();
    if (overlapping && !(same && rule == overlap::same_allowed)) {
      tutti::detail::fail(errc::invalid_argument, algorithm::to_string(args.kind),
                          ": input and output overlap; they must be ",
                          rule == overlap::same_allowed ? "the same span or disjoint" : "disjoint");
    }
  }

  // A collective's choice and schedule, made on its first call with these
  // arguments. Map nodes stay put: queued operations point at them.
  struct planned {
    algorithm::selection choice;
    algorithm::schedule schedule;
    // The buffer sizes, in elements, the collective's layout asks of this
    // rank for these arguments.
    std::size_t in_elements = 0;
    std::size_t out_elements = 0;
  };
  using schedule_key = std::tuple<algorithm::collective, std::size_t, std::size_t, int, std::vector<std::size_t>,
                                  std::vector<std::size_t>>;
  // The last uniform call (no per-rank counts) and its plan: a loop calling
  // one collective again and again skips building a key and searching the map.
  struct uniform_call {
    algorithm::collective kind;
    std::size_t count;
    std::size_t element_size;
    int root;
    bool operator==(const uniform_call&) const = default;
  };

  // The byte-level core every typed collective forwards to: checks the
  // buffers against the collective's layout, picks the algorithm and reuses
  // its cached schedule.
  operation collective(algorithm::collective_args args, const void* in, std::size_t in_elements, void* out,
                       std::size_t out_elements, std::optional<tutti::detail::reduction> reduce,
                       std::uint8_t element_type = call_signature::no_type) {
    const auto name = algorithm::to_string(args.kind);
    // Everything validate() checks is part of the plan's key (rank and size
    // are the communicator's), so arguments with a plan were validated when
    // it was made: a repeated call skips straight to the buffer sizes.
    const bool uniform = args.counts.empty() && args.recv_counts.empty();
    const uniform_call this_call{args.kind, args.count, args.element_size, args.root};
    const planned* plan = uniform && last_call_ == this_call ? last_planned_ : nullptr;
    if (plan == nullptr) {
      schedule_key key{args.kind, args.count, args.element_size, args.root, args.counts, args.recv_counts};
      auto found = schedules_.find(key);
      if (found == schedules_.end()) {
        algorithm::validate(args);
        auto choice = algorithm::choose(args, forced_, model_);
        if (choice.chunk_bytes != 0) args.chunk_bytes = choice.chunk_bytes;
        auto schedule = algorithm::build(choice.algorithm, args);
        planned made{std::move(choice), std::move(schedule), algorithm::input_bytes(args) / args.element_size,
                     algorithm::output_bytes(args) / args.element_size};
        found = schedules_.emplace(std::move(key), std::move(made)).first;
      }
      plan = &found->second;
      if (uniform) {
        last_call_ = this_call;
        last_planned_ = plan;
      }
    }
    if (in_elements != plan->in_elements) {
      tutti::detail::fail(errc::invalid_argument, name, ": input has ", in_elements, " elements but rank ", rank_,
                          " needs ", plan->in_elements);
    }
    if (out_elements != plan->out_elements) {
      tutti::detail::fail(errc::invalid_argument, name, ": output has ", out_elements, " elements but rank ", rank_,
                          " needs ", plan->out_elements);
    }
    operation op;
    op.name = name;
    op.schedule = &plan->schedule;
    op.io = {static_cast<const std::byte*>(in), static_cast<std::byte*>(out), nullptr};
    op.reduce = std::move(reduce);
    if (check_) {
      call_signature call;
      call.kind = args.kind;
      call.element_type = element_type;
      call.op = op.reduce ? static_cast<std::uint8_t>(op.reduce->kind()) : call_signature::no_op;
      call.root = args.root;
      call.sequence = calls_;
      call.count = args.count;
      op.check = call;
    }
    ++calls_;
    return op;
  }

  int rank_;
  int size_;
  std::shared_ptr<const topology::cluster> cluster_;
  std::map<algorithm::collective, std::string> forced_;
  bool check_;
  algorithm::cost_model model_;  // the same on every rank
  std::map<schedule_key, planned> schedules_;
  std::optional<uniform_call> last_call_;
  const planned* last_planned_ = nullptr;
  std::uint64_t calls_ = 0;  // collectives issued, the sequence number in check headers
};

}  // namespace tutti::runtime
