// Reducing collectives through the communicator: all_reduce (out of place,
// in place, and two async requests in flight), reduce, reduce_scatter and
// reduce_scatter_v, for every dtype and every op valid for it, with every
// registered algorithm forced in turn, on worlds of ranks as threads. Results
// are checked against a serial reference computed from the same inputs:
// - integers: exact (sum and prod wrap, so any order gives the same bits);
// - min and max: exact for every type, with signed zeros, infinities and NaN
//   among the inputs;
// - floating sum, avg and prod: within the error bound of n - 1 roundings in
//   any order (plus one for avg's division), against the exact value in long
//   double;
// - the in-place all_reduce: bit-identical to the out-of-place one (same
//   schedule, same combination order).
// Buffers start one element into a larger vector, so the kernels see
// unaligned spans, with guard elements either side that must stay untouched.
//
// TUTTI_TEST_FULL=1 (the ctest entry reductions_test.full, label "full")
// widens the sweep to worlds of 1 to 9 ranks, counts up to a few MiB and
// the algorithms the cost model picks.
#include <tutti/communicator.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cfloat>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/memory_store.hpp>

#include "../support/thread_world.hpp"

using namespace std::chrono_literals;

namespace {

bool full_mode() {
  const char* value = std::getenv("TUTTI_TEST_FULL");
  return value != nullptr && std::string_view(value) == "1";
}

// --- elements ----------------------------------------------------------------

template <class T>
constexpr bool is_16bit_float = std::same_as<T, tutti::half> || std::same_as<T, tutti::bfloat16>;

template <class T>
using bits_t = std::conditional_t<sizeof(T) == 1, std::uint8_t,
                                  std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                                     std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>>;

template <class T>
bits_t<T> bits_of(T x) {
  return std::bit_cast<bits_t<T>>(x);
}

template <class T>
long double to_ld(T x) {
  if constexpr (is_16bit_float<T>) {
    return static_cast<long double>(static_cast<float>(x));
  } else {
    return static_cast<long double>(x);
  }
}

template <class T>
T from_double(double d) {
  if constexpr (is_16bit_float<T> || std::same_as<T, float>) {
    return T(static_cast<float>(d));
  } else {
    return d;
  }
}

template <class T>
bool is_nan(T x) {
  if constexpr (tutti::floating_element<T>) {
    return std::isnan(to_ld(x));
  } else {
    return false;
  }
}

template <class T>
std::string describe(T x) {
  std::ostringstream out;
  if constexpr (tutti::floating_element<T>) {
    out << std::setprecision(21) << to_ld(x);
  } else if constexpr (std::is_signed_v<T>) {
    out << static_cast<long long>(x);
  } else {
    out << static_cast<unsigned long long>(x);
  }
  out << " (0x" << std::hex << static_cast<std::uint64_t>(bits_of(x)) << ")";
  return out.str();
}

// An element no reduction here produces by chance: output buffers are filled
// with it, so an element left unwritten is a mismatch, and guards keep it.
template <class T>
T sentinel() {
  return std::bit_cast<T>(static_cast<bits_t<T>>(0xa5a5'a5a5'a5a5'a5a5ull));
}

// Rounding per combining step: half and bfloat16 are combined in float and
// rounded back, so a step may round twice.
template <class T>
constexpr long double unit_roundoff() {
  if constexpr (std::same_as<T, tutti::half>) {
    return 0x1p-11L + 0x1p-24L + 0x1p-35L;
  } else if constexpr (std::same_as<T, tutti::bfloat16>) {
    return 0x1p-8L + 0x1p-24L + 0x1p-32L;
  } else if constexpr (std::same_as<T, float>) {
    return 0x1p-24L;
  } else {
    return 0x1p-53L;
  }
}

// The absolute error of rounding into T's subnormal range (avg's division).
template <class T>
long double smallest_subnormal() {
  if constexpr (std::same_as<T, tutti::half>) {
    return 0x1p-24L;
  } else if constexpr (std::same_as<T, tutti::bfloat16>) {
    return 0x1p-133L;
  } else {
    return static_cast<long double>(std::numeric_limits<T>::denorm_min());
  }
}

// --- inputs ------------------------------------------------------------------

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e37'79b9'7f4a'7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58'476d'1ce4'e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d0'49bb'1331'11ebull;
  return x ^ (x >> 31);
}

// splitmix64: a rank's inputs are one stream from (seed, rank).
class random_bits {
 public:
  random_bits(std::uint64_t seed, int rank) : state_(mix(seed ^ mix(static_cast<std::uint64_t>(rank)))) {}
  std::uint64_t operator()() { return mix(state_ += 0x9e37'79b9'7f4a'7c15ull); }

 private:
  std::uint64_t state_;
};

double uniform(std::uint64_t bits, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(bits >> 11) * 0x1p-53;
}

template <class Op>
constexpr tutti::op_kind kind_of = tutti::op_kind_of<Op>;

// Whether the reference is one exact value (else an exact value and a bound).
template <class T, class Op>
constexpr bool exact_op =
    !tutti::floating_element<T> || kind_of<Op> == tutti::op_kind::min || kind_of<Op> == tutti::op_kind::max;

// Rank `rank`'s input element i, the next from `random`. Integers: any bits
// (for prod 3 in 4 odd, so products do not collapse to 0; for band dense and
// for bor sparse in ones, so results are not all ones or all zeros). Floats:
// sum and avg in [-4, 4], prod of magnitude in [0.5, 2], so nothing
// overflows; min and max in [-1000, 1000] with signed zeros, infinities and
// NaN at some elements.
template <class T, class Op>
T input(random_bits& random, int rank, int n, std::size_t i) {
  using tutti::op_kind;
  const std::uint64_t b = random();
  if constexpr (!tutti::floating_element<T>) {
    if constexpr (kind_of<Op> == op_kind::prod) {
      return static_cast<T>(i % 4 == 0 ? b : b | 1u);
    } else if constexpr (kind_of<Op> == op_kind::band) {
      return static_cast<T>(b | random());
    } else if constexpr (kind_of<Op> == op_kind::bor) {
      return static_cast<T>(b & random());
    } else {
      return static_cast<T>(b);
    }
  } else if constexpr (kind_of<Op> == op_kind::prod) {
    return from_double<T>(((b & 1u) != 0 ? -1.0 : 1.0) * uniform(b, 0.5, 2.0));
  } else if constexpr (kind_of<Op> == op_kind::min || kind_of<Op> == op_kind::max) {
    const auto u = static_cast<std::size_t>(n);
    const auto r = static_cast<std::size_t>(rank);
    if (i % 11 == 4) return from_double<T>((r + i / 11) % 2 == 0 ? 0.0 : -0.0);
    if (i % 13 == 6 && r == (i / 13) % u) return from_double<T>(std::numeric_limits<double>::quiet_NaN());
    if (i % 17 == 9 && r == (i / 17) % u) {
      return from_double<T>((i / 17) % 2 == 0 ? std::numeric_limits<double>::infinity()
                                              : -std::numeric_limits<double>::infinity());
    }
    return from_double<T>(uniform(b, -1000.0, 1000.0));
  } else {
    return from_double<T>(uniform(b, -4.0, 4.0));
  }
}

// --- the serial reference ----------------------------------------------------

// Written independently of ops.hpp, from its documented semantics.
template <class T, class Op>
T exact_reference(const std::vector<const T*>& rows, std::size_t at) {
  using tutti::op_kind;
  const std::size_t n = rows.size();
  if constexpr (tutti::floating_element<T>) {  // min or max
    constexpr bool lower = kind_of<Op> == op_kind::min;
    std::size_t pick = 0;
    for (std::size_t r = 0; r < n; ++r) {
      const long double v = to_ld(rows[r][at]);
      const long double best = to_ld(rows[pick][at]);
      if (std::isnan(best)) break;  // NaN propagates
      if (std::isnan(v)) {
        pick = r;
        break;
      }
      const bool better = lower ? (v < best || (v == best && std::signbit(v) && !std::signbit(best)))
                                : (v > best || (v == best && !std::signbit(v) && std::signbit(best)));
      if (better) pick = r;
    }
    return rows[pick][at];
  } else {
    // Modulo 2^64, then truncated: the same bits as wrapping in T.
    std::uint64_t acc = static_cast<std::uint64_t>(rows[0][at]);
    T best = rows[0][at];
    for (std::size_t r = 1; r < n; ++r) {
      const T x = rows[r][at];
      const auto v = static_cast<std::uint64_t>(x);
      switch (kind_of<Op>) {
        case op_kind::sum:
        case op_kind::avg: acc += v; break;
        case op_kind::prod: acc *= v; break;
        case op_kind::band: acc &= v; break;
        case op_kind::bor: acc |= v; break;
        case op_kind::bxor: acc ^= v; break;
        case op_kind::min: best = std::min(best, x); break;
        case op_kind::max: best = std::max(best, x); break;
        default: break;
      }
    }
    if constexpr (kind_of<Op> == op_kind::min || kind_of<Op> == op_kind::max) {
      return best;
    } else if constexpr (kind_of<Op> == op_kind::avg) {
      // The wrapped total, divided truncating toward zero.
      const auto total = static_cast<T>(acc);
      if constexpr (std::is_signed_v<T>) {
        return static_cast<T>(static_cast<std::int64_t>(total) / static_cast<std::int64_t>(n));
      } else {
        return static_cast<T>(static_cast<std::uint64_t>(total) / static_cast<std::uint64_t>(n));
      }
    } else {
      return static_cast<T>(acc);
    }
  }
}

// One step's data, shared by the ranks of a world: every rank's input and the
// reference for every element.
template <class T>
struct step_data {
  std::vector<std::vector<T>> rows;    // rank r's input starts at rows[r].data() + 1
  std::vector<T> expected;             // exact ops
  std::vector<long double> exact;      // floating sum, avg, prod: the exact sum or product
  std::vector<long double> magnitude;  // sum of |x_r|, or |product|
};

// How far a floating sum, avg or prod result may be from the exact one. A
// sum or product of n values rounds n - 1 times on any path through any
// reduction tree, so its error is at most gamma(n-1) = (n-1)u / (1 - (n-1)u)
// times the sum of the magnitudes (for prod, the product's magnitude). The
// reference is long double, within a few of its epsilons per value. avg
// rounds once more when it divides, and may land among T's subnormals.
template <class T, class Op>
struct error_bound {
  explicit error_bound(int n) {
    const long double u = unit_roundoff<T>();
    const auto steps = static_cast<long double>(n - 1);
    const long double gamma = steps * u / (1 - steps * u);
    const long double reference = 4 * static_cast<long double>(n) * LDBL_EPSILON;
    if constexpr (kind_of<Op> == tutti::op_kind::avg) {
      divisor = static_cast<long double>(n);
      per_magnitude = ((gamma + reference) * (1 + u) + u + reference) / divisor;
    } else {
      per_magnitude = gamma + reference;
    }
  }
  // The value the result approximates, and how closely.
  [[nodiscard]] long double target(long double exact) const { return exact / divisor; }
  [[nodiscard]] long double bound(long double magnitude) const { return per_magnitude * magnitude + tiny; }
  [[nodiscard]] bool holds(long double got, long double exact, long double magnitude) const {
    return std::fabs(got - target(exact)) <= bound(magnitude);  // false for NaN
  }

  long double divisor = 1;
  long double per_magnitude = 0;
  long double tiny = smallest_subnormal<T>();
};

// --- a world -----------------------------------------------------------------

// What the ranks of one world share besides their communicators.
struct world_shared {
  explicit world_shared(int size) : sync(size) {}
  std::barrier<> sync;
  std::atomic<bool> failed{false};
  std::shared_ptr<void> step;  // step_data<T> of the current step
};

// A buffer of `count` elements one element into its vector, with a guard
// element either side.
template <class T>
struct guarded {
  explicit guarded(std::size_t count) : storage(count + 2, sentinel<T>()) {}
  std::span<T> span() { return std::span<T>(storage).subspan(1, storage.size() - 2); }
  [[nodiscard]] bool guards_intact() const {
    return bits_of(storage.front()) == bits_of(sentinel<T>()) && bits_of(storage.back()) == bits_of(sentinel<T>());
  }
  std::vector<T> storage;
};

class rank_runner {
 public:
  // Mismatches go to `failures`; the ranks go on after them.
  rank_runner(tutti::communicator& comm, world_shared& shared, std::string algorithms, std::uint64_t world_seed,
              std::vector<std::string>& failures)
      : comm_(comm),
        shared_(shared),
        algorithms_(std::move(algorithms)),
        world_seed_(world_seed),
        failures_(failures) {}

  // Which calls a step makes: every reducing collective, every one but
  // reduce_scatter_v, or only all_reduce_async out of place and in place with
  // both in flight.
  enum class calls { every, but_v, async_pair };

  // The calls of `which` on `count` elements of T with Op.
  template <class T, class Op>
  void step(std::size_t count, calls which = calls::every) {
    const int n = comm_.size();
    const int me = comm_.rank();
    const auto ranks = static_cast<std::size_t>(n);
    const auto mine = static_cast<std::size_t>(me);
    const std::size_t block = (count + ranks - 1) / ranks;  // reduce_scatter's
    const std::size_t length = std::max(count, block * ranks);
    const std::uint64_t seed = mix(world_seed_ ^ steps_);
    label_ = tutti::detail::concat(tutti::to_string(tutti::dtype_of<T>), " ", tutti::to_string(kind_of<Op>), " ranks ",
                                   n, " count ", count, " [", algorithms_, "] rank ", me);

    // Rank 0 allocates; each rank writes its input; each computes the
    // reference for its slice of the elements.
    if (me == 0) {
      auto data = std::make_shared<step_data<T>>();
      data->rows.assign(ranks, std::vector<T>(length + 1, sentinel<T>()));
      if constexpr (exact_op<T, Op>) {
        data->expected.resize(length);
      } else {
        data->exact.resize(length);
        data->magnitude.resize(length);
      }
      shared_.step = std::move(data);
    }
    sync();
    auto& data = *static_cast<step_data<T>*>(shared_.step.get());
    auto& row = data.rows[mine];
    random_bits random(seed, me);
    for (std::size_t i = 0; i < length; ++i) row[i + 1] = input<T, Op>(random, me, n, i);
    sync();
    std::vector<const T*> inputs;  // element i of rank r's input at inputs[r][i]
    for (const auto& r : data.rows) inputs.push_back(r.data() + 1);
    for (std::size_t i = length * mine / ranks; i < length * (mine + 1) / ranks; ++i) {
      if constexpr (exact_op<T, Op>) {
        data.expected[i] = exact_reference<T, Op>(inputs, i);
      } else {
        long double exact = kind_of<Op> == tutti::op_kind::prod ? 1 : 0;
        long double magnitude = 0;
        for (std::size_t r = 0; r < ranks; ++r) {
          const long double x = to_ld(inputs[r][i]);
          if constexpr (kind_of<Op> == tutti::op_kind::prod) {
            exact *= x;
          } else {
            exact += x;
            magnitude += std::fabs(x);
          }
        }
        if constexpr (kind_of<Op> == tutti::op_kind::prod) magnitude = std::fabs(exact);
        data.exact[i] = exact;
        data.magnitude[i] = magnitude;
      }
    }
    sync();

    const auto in = std::span<const T>(row).subspan(1, count);
    guarded<T> out(count);
    guarded<T> inout(count);
    std::copy(in.begin(), in.end(), inout.span().begin());
    if (which == calls::async_pair) {
      auto first = comm_.all_reduce_async(in, out.span(), Op{});
      auto second = comm_.all_reduce_async(inout.span(), Op{});
      second.wait();
      first.wait();
      check<T, Op>("all_reduce_async", data, 0, out);
      check_same<T>("all_reduce_async in place", inout, out);
    } else {
      comm_.all_reduce(in, out.span(), Op{});
      check<T, Op>("all_reduce", data, 0, out);
      comm_.all_reduce(inout.span(), Op{});
      check_same<T>("all_reduce in place", inout, out);

      // reduce: the root moves every step; on odd steps the other ranks pass
      // an output too, which must stay untouched.
      const int root = static_cast<int>(steps_ % ranks);
      const bool pass_output = me == root || steps_ % 2 == 1;
      guarded<T> reduced(pass_output ? count : 0);
      comm_.reduce(in, reduced.span(), root, Op{});
      if (me == root) {
        check<T, Op>(tutti::detail::concat("reduce to root ", root).c_str(), data, 0, reduced);
      } else {
        check_untouched<T>("reduce at a non-root", reduced);
      }

      guarded<T> scattered(block);
      comm_.reduce_scatter(std::span<const T>(row).subspan(1, block * ranks), scattered.span(), Op{});
      check<T, Op>("reduce_scatter", data, mine * block, scattered);
    }
    if (which == calls::every) {
      // Uneven blocks in proportion to r % 3, so rank 0's is empty.
      std::vector<std::size_t> counts(ranks, 0);
      std::size_t weights = 0;
      for (std::size_t r = 0; r < ranks; ++r) weights += r % 3;
      std::size_t assigned = 0;
      for (std::size_t r = 0; r + 1 < ranks; ++r) {
        counts[r] = count * (r % 3) / weights;
        assigned += counts[r];
      }
      counts.back() = count - assigned;
      std::size_t offset = 0;
      for (std::size_t r = 0; r < mine; ++r) offset += counts[r];
      guarded<T> scattered_v(counts[mine]);
      comm_.reduce_scatter_v(in, scattered_v.span(), std::span<const std::size_t>(counts), Op{});
      check<T, Op>("reduce_scatter_v", data, offset, scattered_v);
    }
    sync();  // nobody reads this step's data any more
    ++steps_;
  }

 private:
  // Waits for every rank; stops when one of them failed with an exception.
  void sync() {
    shared_.sync.arrive_and_wait();
    if (shared_.failed.load()) throw std::runtime_error("stopped: another rank failed");
  }

  void fail(std::string what) {
    if (failures_.size() < 40) failures_.push_back(std::move(what));
  }

  // got[i] against the reference's element first + i.
  template <class T, class Op>
  void check(const char* what, const step_data<T>& data, std::size_t first, guarded<T>& buffer) {
    if (!buffer.guards_intact()) fail(tutti::detail::concat(what, " ", label_, ": wrote outside its output"));
    const T* got = buffer.span().data();
    const std::size_t count = buffer.span().size();
    // Plain loops over pointers: this runs over every element of every call.
    std::size_t wrong = 0;
    std::size_t first_wrong = 0;
    if constexpr (exact_op<T, Op>) {
      const T* expected = data.expected.data() + first;
      if (count == 0 || std::memcmp(got, expected, count * sizeof(T)) == 0) return;
      for (std::size_t i = 0; i < count; ++i) {
        // Any NaN where a NaN is expected (one rank contributes it).
        const bool ok = bits_of(got[i]) == bits_of(expected[i]) || (is_nan(expected[i]) && is_nan(got[i]));
        if (!ok && wrong++ == 0) first_wrong = i;
      }
    } else {
      const error_bound<T, Op> allowed(comm_.size());
      const long double* exact = data.exact.data() + first;
      const long double* magnitude = data.magnitude.data() + first;
      for (std::size_t i = 0; i < count; ++i) {
        if (!allowed.holds(to_ld(got[i]), exact[i], magnitude[i]) && wrong++ == 0) first_wrong = i;
      }
    }
    if (wrong == 0) return;
    const std::size_t at = first + first_wrong;
    std::ostringstream out;
    out << what << " " << label_ << ": " << wrong << " of " << count << " elements wrong; first at element "
        << first_wrong << ": got " << describe(got[first_wrong]);
    if constexpr (exact_op<T, Op>) {
      out << ", expected " << describe(data.expected[at]);
    } else {
      const error_bound<T, Op> allowed(comm_.size());
      const long double target = allowed.target(data.exact[at]);
      out << std::setprecision(21) << ", exact " << target << ", off by " << std::fabs(to_ld(got[first_wrong]) - target)
          << " > bound " << allowed.bound(data.magnitude[at]);
    }
    out << "; inputs";
    for (const auto& r : data.rows) out << " " << describe(r[at + 1]);
    fail(out.str());
  }

  template <class T>
  void check_same(const char* what, guarded<T>& got, guarded<T>& expected) {
    if (!got.guards_intact()) fail(tutti::detail::concat(what, " ", label_, ": wrote outside its buffer"));
    const auto a = got.span();
    const auto b = expected.span();
    if (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0) return;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (bits_of(a[i]) != bits_of(b[i])) {
        fail(tutti::detail::concat(what, " ", label_, ": element ", i, " is ", describe(a[i]),
                                   " but out of place gave ", describe(b[i])));
        return;
      }
    }
  }

  template <class T>
  void check_untouched(const char* what, const guarded<T>& buffer) {
    for (const T x : buffer.storage) {
      if (bits_of(x) != bits_of(sentinel<T>())) {
        fail(tutti::detail::concat(what, " ", label_, ": wrote to its output"));
        return;
      }
    }
  }

  tutti::communicator& comm_;
  world_shared& shared_;
  std::string algorithms_;
  std::uint64_t world_seed_;
  std::uint64_t steps_ = 0;
  std::string label_;
  std::vector<std::string>& failures_;
};

template <class... Ts>
struct type_list {};

using all_types = type_list<std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t, std::uint32_t,
                            std::int64_t, std::uint64_t, tutti::half, tutti::bfloat16, float, double>;

template <class... Ts, class F>
void for_each_type(type_list<Ts...>, F&& f) {
  (f.template operator()<Ts>(), ...);
}

// Every op valid for T: the bitwise ones for integers only.
template <class T, class F>
void for_each_op(F&& f) {
  f.template operator()<tutti::sum>();
  f.template operator()<tutti::prod>();
  f.template operator()<tutti::min>();
  f.template operator()<tutti::max>();
  f.template operator()<tutti::avg>();
  if constexpr (tutti::integral_element<T>) {
    f.template operator()<tutti::band>();
    f.template operator()<tutti::bor>();
    f.template operator()<tutti::bxor>();
  }
}

// The async pair covers one dtype and op per world, a different one each.
void async_pair(rank_runner& run, int world, std::size_t count) {
  switch (world % 6) {
    case 0: run.step<float, tutti::sum>(count, rank_runner::calls::async_pair); break;
    case 1: run.step<tutti::bfloat16, tutti::avg>(count, rank_runner::calls::async_pair); break;
    case 2: run.step<std::int32_t, tutti::prod>(count, rank_runner::calls::async_pair); break;
    case 3: run.step<tutti::half, tutti::max>(count, rank_runner::calls::async_pair); break;
    case 4: run.step<double, tutti::sum>(count, rank_runner::calls::async_pair); break;
    default: run.step<std::uint8_t, tutti::bxor>(count, rank_runner::calls::async_pair); break;
  }
}

// TUTTI_ALGO settings that together force every algorithm registered for the
// reducing collectives: set k picks each one's k-th (its last, when it has
// fewer).
std::vector<std::string> reducing_algorithm_sets() {
  namespace ta = tutti::algorithm;
  const ta::collective kinds[] = {ta::collective::all_reduce, ta::collective::reduce, ta::collective::reduce_scatter,
                                  ta::collective::reduce_scatter_v};
  std::size_t most = 0;
  for (const auto kind : kinds) most = std::max(most, ta::algorithms_for(kind).size());
  std::vector<std::string> sets;
  for (std::size_t i = 0; i < most; ++i) {
    std::string set;
    for (const auto kind : kinds) {
      const auto names = ta::algorithms_for(kind);
      set +=
          tutti::detail::concat(set.empty() ? "" : ",", ta::to_string(kind), "=", names[std::min(i, names.size() - 1)]);
    }
    sets.push_back(set);
  }
  return sets;
}

// TUTTI_ALGO in the environment would override the algorithms forced here.
void expect_forced(const tutti::communicator& comm, const std::string& algorithms) {
  namespace ta = tutti::algorithm;
  for (const auto& [kind, name] : ta::parse_algorithm_overrides(algorithms)) {
    if (kind == ta::collective::reduce_scatter_v) continue;  // plan() would need counts
    const auto chosen = comm.plan(kind, 1021, 4).algorithm;
    if (chosen != name) {
      throw std::runtime_error(
          tutti::detail::concat(ta::to_string(kind), " runs ", chosen, " instead of ", name, " (is TUTTI_ALGO set?)"));
    }
  }
}

// What one world runs: every count of the (dtype, op) pairs whose index is
// `phase` modulo `stride` (all of them with stride 1), counts from
// `sampled_from` on only for those whose index is also `sampled_phase`
// modulo `sampled_stride`; then the async pair.
struct sweep {
  std::vector<std::size_t> counts;
  std::size_t stride = 1;
  std::size_t phase = 0;
  std::size_t sampled_from = std::numeric_limits<std::size_t>::max();
  std::size_t sampled_stride = 1;
  std::size_t sampled_phase = 0;
  std::size_t async_count = 0;
  bool every_v = false;  // reduce_scatter_v at every count, else at the largest
  bool check = false;    // check mode where the build enables it
};

// Runs a sweep on one world of `size` ranks as threads, one communicator per
// rank for all of it. Returns each rank's failures, one per line (empty when
// it passed).
std::vector<std::string> run_world(int size, const std::string& algorithms, int world, const sweep& plan) {
  auto store = std::make_shared<tutti::memory_store>();
  world_shared shared(size);
  return tutti::test::run_threads(size, [&](int r) {
    std::vector<std::string> found;  // mismatches, then what stopped the rank
    try {
      tutti::options config;
      config.timeout = 20s;
      config.algorithms = algorithms;
      config.calibrate = false;  // the algorithms are forced; the default model picks chunks
      config.check = config.check && plan.check;
      tutti::communicator comm(store, r, size, config);
      expect_forced(comm, algorithms);
      rank_runner run(comm, shared, algorithms,
                      mix(std::uint64_t{0x7475747469000000} + static_cast<std::uint64_t>(world)), found);
      std::size_t pair = 0;
      for_each_type(all_types{}, [&]<class T>() {
        for_each_op<T>([&]<class Op>() {
          const std::size_t index = pair++;
          if (index % plan.stride != plan.phase) return;
          for (const std::size_t count : plan.counts) {
            if (count >= plan.sampled_from && index % plan.sampled_stride != plan.sampled_phase) continue;
            // reduce_scatter_v shares reduce_scatter's algorithms.
            run.step<T, Op>(count, plan.every_v || count == plan.counts.back() ? rank_runner::calls::every
                                                                               : rank_runner::calls::but_v);
          }
        });
      });
      async_pair(run, world, plan.async_count);
    } catch (const std::exception& e) {
      // Peers waiting at the barrier go on without this rank, and stop.
      shared.failed.store(true);
      shared.sync.arrive_and_drop();
      found.emplace_back(e.what());
    }
    std::string text;
    for (const auto& f : found) text += (text.empty() ? "" : "\n") + f;
    if (!text.empty()) throw std::runtime_error(text);
  });
}

}  // namespace

// Calls cost most in worlds of more ranks than cores (each round of a
// schedule waits for threads to be scheduled), and the long counts of the
// full sweep cost in copies and reductions. So by default worlds of more
// than 3 ranks run a quarter of the (dtype, op) pairs per algorithm set,
// each pair under one set, and reduce_scatter_v runs at the largest count
// only; the full sweep runs every pair everywhere, with the largest count
// for 4 pairs per world (each pair in 2 or 3 worlds). Check mode, where the
// build enables it, only in worlds of up to 3 ranks: it adds a message to
// every message, and collectives_test covers it.
TEST_CASE("reducing collectives match a serial reference for every dtype and op and algorithm", "[reductions]") {
  const bool full = full_mode();
  std::vector<int> sizes{1, 2, 3, 5, 8};
  std::vector<std::size_t> counts{0, 1, 7, 1021};
  auto sets = reducing_algorithm_sets();
  constexpr std::size_t largest = (std::size_t{1} << 20) + 3;
  if (full) {
    sizes = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    counts = {0, 1, 2, 3, 7, 13, 1021, 65537, largest};
    sets.emplace_back();  // and what the cost model picks
  }
  std::size_t world = 0;
  for (std::size_t set = 0; set < sets.size(); ++set) {
    for (const int size : sizes) {
      INFO("TUTTI_ALGO=" << sets[set] << " ranks " << size);
      sweep plan;
      plan.counts = counts;
      if (!full && size > 3) {
        plan.stride = sets.size();
        plan.phase = set;
      }
      if (full) {
        plan.sampled_from = largest;
        plan.sampled_stride = 21;  // of the 84 pairs
        plan.sampled_phase = world % 21;
      }
      plan.async_count = full ? 65537 : 1021;
      plan.every_v = full;
      plan.check = size <= 3;
      tutti::test::check_all_passed(run_world(size, sets[set], static_cast<int>(world), plan));
      ++world;
    }
  }
}
