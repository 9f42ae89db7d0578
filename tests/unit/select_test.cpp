// The selector: the alpha-beta-gamma cost model's predictions against
// textbook values worked out by hand, the choices it makes from them, chunk
// sizes, overrides, and the parsing of model overrides.
#include <tutti/algorithm/cost_model.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/transport/registry.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace ta = tutti::algorithm;
using ta::collective;

namespace {

// The link classes TUTTI_COST_MODEL's `link` key names: the transports'.
const std::vector<ta::named_link> links = tutti::transport::link_classes();

std::size_t uz(int v) { return static_cast<std::size_t>(v); }

ta::collective_args make(collective kind, int size, std::size_t count, std::size_t element_size = 1) {
  ta::collective_args a;
  a.kind = kind;
  a.size = size;
  a.count = count;
  a.element_size = element_size;
  if (kind == collective::all_gather_v || kind == collective::reduce_scatter_v || kind == collective::all_to_all_v) {
    a.counts.assign(uz(size), count);
  }
  if (kind == collective::all_to_all_v) a.recv_counts.assign(uz(size), count);
  return a;
}

// Round figures, so that the expected values below are short sums:
// alpha 2 us, beta 0.001 us/B (1 GB/s), gamma 0.0005 us/B (2 GB/s).
const ta::cost_model round_figures{{2.0, 0.001}, 0.0005};

// Larger than every block below, so that the chunked algorithms send one
// chunk per block and the textbook formulas apply unchanged.
constexpr std::size_t whole = std::size_t{1} << 20;

double predict(std::string_view algorithm, const ta::collective_args& a, std::size_t chunk = whole,
               const ta::cost_model& model = round_figures) {
  return ta::predict(algorithm, a, model, chunk);
}

const std::map<collective, std::string> none;

std::vector<collective> every_collective() {
  std::vector<collective> out;
  for (int k = 0; k <= static_cast<int>(collective::barrier); ++k) out.push_back(static_cast<collective>(k));
  return out;
}

bool is_candidate(std::size_t chunk) {
  return std::find(ta::chunk_candidates.begin(), ta::chunk_candidates.end(), chunk) != ta::chunk_candidates.end();
}

// The message of the invalid_argument error `f` throws ("" if none).
template <class F>
std::string invalid_argument_from(F f) {
  try {
    f();
  } catch (const tutti::error& e) {
    CHECK(e.code() == tutti::errc::invalid_argument);
    return e.message();
  }
  FAIL("no error");
  return {};
}

}  // namespace

TEST_CASE("cost model: each transport's link class has its documented figures", "[select]") {
  const auto shm = tutti::transport::cost_model_for("shm");
  CHECK(shm.link.alpha_us == 1.0);
  CHECK(shm.link.beta_us_per_byte == Approx(1.0 / 6000));
  CHECK(shm.gamma_us_per_byte == Approx(1.0 / 6000));
  CHECK(ta::cost_model{} == shm);
  CHECK(tutti::transport::cost_model_for("inproc") == shm);

  const auto tcp = tutti::transport::cost_model_for("tcp");
  CHECK(tcp.link.alpha_us == 25.0);
  CHECK(tcp.link.beta_us_per_byte == Approx(1.0 / 1500));

  const auto verbs = tutti::transport::cost_model_for("verbs");
  CHECK(verbs.link.alpha_us == 3.0);
  CHECK(verbs.link.beta_us_per_byte == Approx(1.0 / 12000));
  CHECK(verbs.gamma_us_per_byte == Approx(1.0 / 6000));

  const auto message = invalid_argument_from([] { (void)tutti::transport::cost_model_for("ethernet"); });
  CHECK_THAT(message, Catch::Contains("'ethernet'"));
}

TEST_CASE("cost model: overrides apply left to right over the base", "[select]") {
  const auto tcp = tutti::transport::cost_model_for("tcp");
  const auto parsed = ta::parse_cost_model("alpha_us=1.5,bandwidth_gbps=6,reduce_gbps=8", tcp, links);
  CHECK(parsed.link.alpha_us == 1.5);
  CHECK(parsed.link.beta_us_per_byte == Approx(1.0 / 6000));
  CHECK(parsed.gamma_us_per_byte == Approx(1.0 / 8000));

  CHECK(ta::parse_cost_model("", tcp, links) == tcp);

  const auto relinked = ta::parse_cost_model("alpha_us=7,link=verbs,gamma_us_per_byte=0.25", tcp, links);
  CHECK(relinked.link == tutti::transport::cost_model_for("verbs").link);
  CHECK(relinked.gamma_us_per_byte == 0.25);

  const auto raw = ta::parse_cost_model("beta_us_per_byte=1e-3,alpha_us=0", ta::cost_model{}, links);
  CHECK(raw.link.beta_us_per_byte == 0.001);
  CHECK(raw.link.alpha_us == 0.0);
}

TEST_CASE("cost model: parse errors name the bad key or value", "[select]") {
  auto error_of = [](std::string_view text) {
    return invalid_argument_from([text] { (void)ta::parse_cost_model(text, ta::cost_model{}, links); });
  };
  CHECK_THAT(error_of("speed=3"), Catch::Contains("unknown key 'speed'"));
  CHECK_THAT(error_of("alpha_us=abc"), Catch::Contains("alpha_us='abc'"));
  CHECK_THAT(error_of("alpha_us=1.5us"), Catch::Contains("alpha_us='1.5us'"));
  CHECK_THAT(error_of("alpha_us="), Catch::Contains("alpha_us=''"));
  CHECK_THAT(error_of("alpha_us=nan"), Catch::Contains("alpha_us='nan'"));
  CHECK_THAT(error_of("gamma_us_per_byte=inf"), Catch::Contains("gamma_us_per_byte='inf'"));
  CHECK_THAT(error_of("alpha_us=-1"), Catch::Contains("alpha_us=-1 is negative"));
  CHECK_THAT(error_of("bandwidth_gbps=0"), Catch::Contains("bandwidth_gbps=0 is not a positive bandwidth"));
  CHECK_THAT(error_of("reduce_gbps=-2"), Catch::Contains("reduce_gbps=-2 is not a positive bandwidth"));
  CHECK_THAT(error_of("alpha_us=1,bandwidth"), Catch::Contains("'bandwidth' is not key=value"));
  CHECK_THAT(error_of("link=infiniband"), Catch::Contains("'infiniband'"));
}

TEST_CASE("predict: all_reduce matches the textbook formulas", "[select]") {
  // ring, n = 4, m = 16000 B, b = m/n = 4000 B:
  // 2 (n-1) (alpha + b beta) + (n-1) b gamma = 6 (2 + 4) + 3 * 2 = 42.
  CHECK(predict("ring", make(collective::all_reduce, 4, 4000, 4)) == Approx(42.0));
  // recursive_doubling, n = 8, m = 1000: log2 n (alpha + m beta + m gamma) = 3 * 3.5.
  CHECK(predict("recursive_doubling", make(collective::all_reduce, 8, 250, 4)) == Approx(10.5));
  // n = 6 folds two ranks in and out: 2 rounds of 3.5, then 2 (alpha + m beta) + m gamma = 6.5.
  CHECK(predict("recursive_doubling", make(collective::all_reduce, 6, 250, 4)) == Approx(13.5));
  // rabenseifner, n = 8, m = 8000: 2 log2 n alpha + 2 (n-1)/n m beta + (n-1)/n m gamma = 12 + 14 + 3.5.
  CHECK(predict("rabenseifner", make(collective::all_reduce, 8, 2000, 4)) == Approx(29.5));
  // n = 6, m = 6000, p = 4: 8 + 9 + 2.25, and the fold 2 (2 + 6) + 3.
  CHECK(predict("rabenseifner", make(collective::all_reduce, 6, 1500, 4)) == Approx(38.25));
  // double_binary_tree, n = 8 (depth 3), m = 1 MiB in 64 KiB chunks: each tree
  // carries 512 KiB, k = 8 chunks of c = 65536 B, hop h = 2 + 65.536:
  // 3 (4 h + c gamma) + (k-1) max(4 h, 2 c gamma) = 3 * 302.912 + 7 * 270.144.
  CHECK(predict("double_binary_tree", make(collective::all_reduce, 8, whole), 64 << 10) == Approx(2799.744));
}

TEST_CASE("predict: the ring overlaps combining a chunk with receiving the next", "[select]") {
  // n = 4, b = 4000 B in k = 4 chunks of 1000: t = 2 + 1 = 3, g = 0.5 <= (k-1) t,
  // so each of the 2 (n-1) steps costs k t = 12: the reduction is hidden.
  const auto a = make(collective::all_reduce, 4, 16000);
  CHECK(predict("ring", a, 1000) == Approx(72.0));
  // Bound by the reducer when combining is slower than the link:
  // gamma 0.01: g = 10 > t, so a reduce-scatter step costs k g = 40.
  const ta::cost_model slow_reduce{{2.0, 0.001}, 0.01};
  CHECK(predict("ring", a, 1000, slow_reduce) == Approx(3 * 40.0 + 3 * 12.0));
  // One chunk: the textbook 2 (n-1) (alpha + b beta) + (n-1) b gamma.
  CHECK(predict("ring", a, whole, slow_reduce) == Approx(6 * 6.0 + 3 * 40.0));
}

TEST_CASE("predict: the other collectives match the textbook formulas", "[select]") {
  // reduce binomial, n = 5: ceil(log2 n) (alpha + m beta + m gamma) = 3 * 3.5.
  CHECK(predict("binomial", make(collective::reduce, 5, 1000)) == Approx(10.5));
  // reduce ring, n = 4, b = 1000: (n-1) (alpha + b beta + b gamma) + (n-1) (alpha + b beta).
  CHECK(predict("ring", make(collective::reduce, 4, 4000)) == Approx(10.5 + 9.0));
  // broadcast binomial, n = 8: 3 (alpha + m beta).
  CHECK(predict("binomial", make(collective::broadcast, 8, 1000)) == Approx(9.0));
  // broadcast chain, n = 8, 1 MiB in k = 16 chunks: (n-1 + k-1) (alpha + c beta).
  CHECK(predict("chain", make(collective::broadcast, 8, whole), 64 << 10) == Approx(22 * 67.536));
  // all_gather, n = 4, blocks of 1000: ring (n-1) (alpha + b beta) ...
  CHECK(predict("ring", make(collective::all_gather, 4, 1000)) == Approx(9.0));
  // ... and with k = 4 chunks per block (n-1) (k alpha + b beta).
  CHECK(predict("ring", make(collective::all_gather, 4, 1000), 250) == Approx(27.0));
  // n = 6, m = 6000: ceil(log2 n) alpha + (n-1)/n m beta.
  CHECK(predict("bruck", make(collective::all_gather, 6, 1000)) == Approx(11.0));
  CHECK(predict("recursive_doubling", make(collective::all_gather, 6, 1000)) == Approx(11.0));
  CHECK(predict("recursive_doubling", make(collective::all_gather_v, 8, 1000)) == Approx(6.0 + 7.0));
  // reduce_scatter ring, n = 4, blocks of 1000: (n-1) (alpha + b beta + b gamma).
  CHECK(predict("ring", make(collective::reduce_scatter, 4, 1000)) == Approx(10.5));
  // recursive_halving, n = 8, m = 8000: log2 n alpha + (n-1)/n m (beta + gamma) = 6 + 10.5.
  CHECK(predict("recursive_halving", make(collective::reduce_scatter, 8, 1000)) == Approx(16.5));
  // n = 6, m = 6000, p = 4: 4 + 6.75, and the fold (2 + 6 + 3) + (2 + 1).
  CHECK(predict("recursive_halving", make(collective::reduce_scatter_v, 6, 1000)) == Approx(24.75));
  // gather and scatter binomial, n = 8, blocks of 1000: 3 alpha + (n-1) b beta.
  CHECK(predict("binomial", make(collective::gather, 8, 1000)) == Approx(13.0));
  CHECK(predict("binomial", make(collective::scatter, 8, 1000)) == Approx(13.0));
  // all_to_all pairwise, n = 8: (n-1) (alpha + b beta).
  CHECK(predict("pairwise", make(collective::all_to_all, 8, 1000)) == Approx(21.0));
  CHECK(predict("pairwise", make(collective::all_to_all_v, 8, 1000)) == Approx(21.0));
  // bruck, n = 8: log2 n rounds of n/2 blocks: 3 (alpha + 4 b beta).
  CHECK(predict("bruck", make(collective::all_to_all, 8, 1000)) == Approx(18.0));
  // n = 6: rounds move indices {1, 3, 5}, {2, 3}, {4, 5}: 3 alpha + 7 b beta.
  CHECK(predict("bruck", make(collective::all_to_all, 6, 1000)) == Approx(13.0));
  // barrier, n = 9: ceil(log2 n) alpha.
  CHECK(predict("dissemination", make(collective::barrier, 9, 0)) == Approx(8.0));
}

TEST_CASE("predict: empty payloads and single ranks cost nothing", "[select]") {
  for (const collective kind : every_collective()) {
    for (const auto name : ta::algorithms_for(kind)) {
      INFO(ta::to_string(kind) << " " << name);
      CHECK(predict(name, make(kind, 1, 1000)) == 0.0);
      if (kind != collective::barrier && kind != collective::all_to_all_v) {
        CHECK(predict(name, make(kind, 8, 0)) == 0.0);
      }
    }
  }
  // These send empty messages all the same.
  CHECK(predict("dissemination", make(collective::barrier, 2, 0)) == Approx(2.0));
  CHECK(predict("pairwise", make(collective::all_to_all_v, 3, 0)) == Approx(4.0));
}

TEST_CASE("predict: every registered algorithm has a formula", "[select]") {
  for (const collective kind : every_collective()) {
    for (const int size : {2, 5, 8, 13}) {
      for (const std::size_t count : {std::size_t{1}, std::size_t{777}, std::size_t{3} << 20}) {
        const auto a = make(kind, size, count, 4);
        for (const auto name : ta::algorithms_for(kind)) {
          INFO(ta::to_string(kind) << " " << name << " size " << size << " count " << count);
          const double us = ta::predict(name, a, tutti::transport::cost_model_for("verbs"), 0);
          CHECK(std::isfinite(us));
          CHECK(us > 0);
        }
        const auto chosen = ta::choose(a, none, ta::cost_model{});
        CHECK(std::isfinite(chosen.predicted_us));
      }
    }
  }
}

TEST_CASE("predict: names the algorithm it has no formula for", "[select]") {
  auto message = invalid_argument_from([] { (void)predict("chain", make(collective::all_reduce, 4, 10)); });
  CHECK_THAT(message, Catch::Contains("all_reduce algorithm 'chain'"));
  // bruck is all_to_all only.
  message = invalid_argument_from([] { (void)predict("bruck", make(collective::all_to_all_v, 4, 10)); });
  CHECK_THAT(message, Catch::Contains("all_to_all_v algorithm 'bruck'"));
  // Bad arguments are rejected before any formula.
  message = invalid_argument_from([] { (void)predict("ring", make(collective::all_reduce, 0, 10)); });
  CHECK_THAT(message, Catch::Contains("size 0"));
}

TEST_CASE("predict: chunk 0 means the chunk the schedule would use", "[select]") {
  const ta::cost_model model;
  auto a = make(collective::all_reduce, 8, std::size_t{64} << 20);
  CHECK(ta::predict("ring", a, model, 0) == ta::predict("ring", a, model, ta::all_reduce::default_chunk_bytes));
  CHECK(ta::predict("double_binary_tree", a, model, 0) ==
        ta::predict("double_binary_tree", a, model, ta::all_reduce::tree_chunk_bytes));
  a.chunk_bytes = 12345;
  CHECK(ta::predict("ring", a, model, 0) == ta::predict("ring", a, model, 12345));
  CHECK(ta::predict("ring", a, model, 0) != ta::predict("ring", a, model, ta::all_reduce::default_chunk_bytes));
  const auto b = make(collective::broadcast, 8, std::size_t{64} << 20);
  CHECK(ta::predict("chain", b, model, 0) == ta::predict("chain", b, model, ta::broadcast::default_chunk_bytes));
}

TEST_CASE("the crossover between recursive doubling and ring all_reduce is where their formulas meet", "[select]") {
  // For a power of two n and one chunk per block:
  //   recursive_doubling(m) = L (alpha + m beta + m gamma)
  //   ring(m)               = 2 (n-1) alpha + (n-1)/n m (2 beta + gamma)
  // meet at m* = (2 (n-1) - L) alpha / (L (beta + gamma) - (n-1)/n (2 beta + gamma)).
  for (const auto& [link, size, levels] :
       {std::tuple{"shm", 8, 3}, std::tuple{"tcp", 16, 4}, std::tuple{"verbs", 32, 5}}) {
    const auto model = tutti::transport::cost_model_for(link);
    const double alpha = model.link.alpha_us;
    const double beta = model.link.beta_us_per_byte;
    const double gamma = model.gamma_us_per_byte;
    const double n = size;
    const double crossover =
        (2 * (n - 1) - levels) * alpha / (levels * (beta + gamma) - (n - 1) / n * (2 * beta + gamma));
    INFO(link << " n " << size << " m* " << crossover);
    REQUIRE(crossover > 0);
    REQUIRE(crossover / n < static_cast<double>(whole));  // one chunk per ring block
    // The smallest multiple of n (whole blocks) where the ring is no slower.
    auto ring_wins = [&](std::size_t m) {
      const auto a = make(collective::all_reduce, size, m);
      return ta::predict("ring", a, model, whole) <= ta::predict("recursive_doubling", a, model, whole);
    };
    // In blocks: the ring is slower at lo, no slower at hi.
    std::size_t lo = 1;
    std::size_t hi = static_cast<std::size_t>(crossover) * 4 / uz(size) + 1;
    REQUIRE_FALSE(ring_wins(lo * uz(size)));
    REQUIRE(ring_wins(hi * uz(size)));
    while (hi - lo > 1) {
      const std::size_t mid = (lo + hi) / 2;
      (ring_wins(mid * uz(size)) ? hi : lo) = mid;
    }
    const double found = static_cast<double>(hi * uz(size));
    CHECK(found >= crossover - 1e-6 * crossover);
    CHECK(found < crossover + n);
    // And the two predictions agree at m* to rounding.
    const auto at = make(collective::all_reduce, size, static_cast<std::size_t>(std::round(crossover / n)) * uz(size));
    const double ring = ta::predict("ring", at, model, whole);
    CHECK(ring == Approx(ta::predict("recursive_doubling", at, model, whole)).epsilon(0.001));
  }
}

TEST_CASE("choose: small messages take latency algorithms and large ones bandwidth algorithms", "[select]") {
  for (const char* link : {"shm", "tcp", "verbs"}) {
    const auto model = tutti::transport::cost_model_for(link);
    for (const int size : {6, 8, 64}) {
      INFO(link << " n " << size);
      auto pick = [&](collective kind, std::size_t count) { return ta::choose(make(kind, size, count), none, model); };
      const std::size_t small = 8;
      const std::size_t large = std::size_t{256} << 20;
      CHECK(pick(collective::all_reduce, small).algorithm == "recursive_doubling");
      const auto big = pick(collective::all_reduce, large).algorithm;
      CHECK((big == "ring" || big == "double_binary_tree"));
      CHECK(pick(collective::reduce, small).algorithm == "binomial");
      CHECK(pick(collective::reduce, large).algorithm == "ring");
      CHECK(pick(collective::broadcast, small).algorithm == "binomial");
      CHECK(pick(collective::broadcast, large).algorithm == "chain");
      CHECK(pick(collective::reduce_scatter, small).algorithm == "recursive_halving");
      CHECK(pick(collective::reduce_scatter, large / uz(size)).algorithm == "ring");
      CHECK(pick(collective::all_to_all, small).algorithm == "bruck");
      CHECK(pick(collective::all_to_all, large / uz(size)).algorithm == "pairwise");
      // all_gather: recursive doubling already sends the (n-1)/n m bytes the
      // ring does, in fewer messages, so in this model it wins at every size.
      CHECK(pick(collective::all_gather, small).algorithm == "recursive_doubling");
      CHECK(pick(collective::all_gather, large / uz(size)).algorithm == "recursive_doubling");
    }
  }
  // The ring's linear latency loses to the tree's logarithmic one at scale.
  CHECK(ta::choose(make(collective::all_reduce, 1000, std::size_t{256} << 20), none, ta::cost_model{}).algorithm ==
        "double_binary_tree");
}

TEST_CASE("choose: the choice is the cheapest prediction", "[select]") {
  const ta::cost_model model = tutti::transport::cost_model_for("tcp");
  for (const collective kind : every_collective()) {
    for (const std::size_t count : {std::size_t{8}, std::size_t{100} << 10, std::size_t{40} << 20}) {
      const auto a = make(kind, 12, count);
      const auto chosen = ta::choose(a, none, model);
      INFO(ta::to_string(kind) << " count " << count << " chose " << chosen.algorithm);
      CHECK(chosen.predicted_us == ta::predict(chosen.algorithm, a, model, chosen.chunk_bytes));
      if (kind == collective::all_to_all_v) continue;  // never ranked, see select.hpp
      for (const auto name : ta::algorithms_for(kind)) {
        const bool chunked = ta::is_chunked(kind, name);
        for (const std::size_t chunk : ta::chunk_candidates) {
          CHECK(chosen.predicted_us <= ta::predict(name, a, model, chunked ? chunk : 0));
        }
      }
    }
  }
}

TEST_CASE("choose: chunks come from the candidates and grow with the message where that is cheaper", "[select]") {
  struct sweep {
    collective kind;
    std::string_view algorithm;
    int size;
    const char* link;
  };
  for (const auto& s :
       {sweep{collective::broadcast, "chain", 8, "shm"}, sweep{collective::broadcast, "chain", 64, "tcp"},
        sweep{collective::all_reduce, "ring", 8, "shm"}, sweep{collective::reduce_scatter, "ring", 8, "shm"},
        sweep{collective::all_reduce, "double_binary_tree", 1000, "shm"},
        sweep{collective::all_reduce, "double_binary_tree", 64, "verbs"}}) {
    const auto model = tutti::transport::cost_model_for(s.link);
    const std::map<collective, std::string> forced{{s.kind, std::string(s.algorithm)}};
    std::size_t previous = 0;
    std::vector<std::size_t> chunks;
    for (std::size_t bytes = std::size_t{64} << 10; bytes <= (std::size_t{1} << 30); bytes *= 4) {
      const std::size_t count = s.kind == collective::reduce_scatter ? bytes / uz(s.size) : bytes;
      const auto a = make(s.kind, s.size, count);
      const auto chosen = ta::choose(a, forced, model);
      INFO(ta::to_string(s.kind) << " " << s.algorithm << " n " << s.size << " " << s.link << " bytes " << bytes
                                 << " chunk " << chosen.chunk_bytes);
      CHECK(chosen.algorithm == s.algorithm);
      CHECK(is_candidate(chosen.chunk_bytes));
      for (const std::size_t chunk : ta::chunk_candidates) {
        CHECK(chosen.predicted_us <= ta::predict(s.algorithm, a, model, chunk));
      }
      CHECK(chosen.chunk_bytes >= previous);
      previous = chosen.chunk_bytes;
      chunks.push_back(chosen.chunk_bytes);
    }
    INFO(ta::to_string(s.kind) << " " << s.algorithm << " n " << s.size << " " << s.link);
    CHECK(chunks.back() > chunks.front());
  }
  // Nothing to overlap in an all_gather ring: the fewest chunks, and the
  // smallest candidate among equals.
  const auto gather = ta::choose(make(collective::all_gather, 8, 3000), {{collective::all_gather, "ring"}}, {});
  CHECK(gather.chunk_bytes == ta::chunk_candidates.front());
  const auto big =
      ta::choose(make(collective::all_gather, 8, std::size_t{600} << 10), {{collective::all_gather, "ring"}}, {});
  CHECK(big.chunk_bytes == (std::size_t{1} << 20));
  // Unchunked algorithms report no chunk.
  CHECK(ta::choose(make(collective::broadcast, 8, 8), none, {}).chunk_bytes == 0);
}

TEST_CASE("choose: a chunk size given in the arguments is kept", "[select]") {
  auto a = make(collective::broadcast, 8, std::size_t{64} << 20);
  a.chunk_bytes = 12345;
  const ta::cost_model model;
  const auto chosen = ta::choose(a, {{collective::broadcast, "chain"}}, model);
  CHECK(chosen.chunk_bytes == 12345);
  CHECK(chosen.predicted_us == ta::predict("chain", a, model, 12345));
  CHECK(ta::choose(a, {{collective::broadcast, "binomial"}}, model).chunk_bytes == 0);
}

TEST_CASE("choose: forced overrides win", "[select]") {
  const ta::cost_model model;
  const auto small = make(collective::all_reduce, 8, 8);
  const auto large = make(collective::all_reduce, 8, std::size_t{256} << 20);
  REQUIRE(ta::choose(small, none, model).algorithm == "recursive_doubling");

  const auto ring = ta::choose(small, {{collective::all_reduce, "ring"}}, model);
  CHECK(ring.algorithm == "ring");
  CHECK(is_candidate(ring.chunk_bytes));
  CHECK(ring.predicted_us == ta::predict("ring", small, model, ring.chunk_bytes));

  const auto forced = ta::parse_algorithm_overrides("all_reduce=rabenseifner,all_to_all=bruck");
  const auto rabenseifner = ta::choose(large, forced, model);
  CHECK(rabenseifner.algorithm == "rabenseifner");
  CHECK(rabenseifner.chunk_bytes == 0);
  CHECK(rabenseifner.predicted_us == ta::predict("rabenseifner", large, model, 0));
  CHECK(ta::choose(make(collective::all_to_all, 8, std::size_t{1} << 20), forced, model).algorithm == "bruck");
  // Overrides for other collectives leave the model's choice alone.
  CHECK(ta::choose(make(collective::broadcast, 8, 8), forced, model).algorithm == "binomial");
}

TEST_CASE("choose: every rank makes the same choice", "[select]") {
  const auto model = tutti::transport::cost_model_for("verbs");
  for (const collective kind : every_collective()) {
    for (const int size : {5, 8}) {
      for (const std::size_t count : {std::size_t{3}, std::size_t{50} << 10, std::size_t{20} << 20}) {
        auto a = make(kind, size, count);
        if (kind == collective::all_gather_v || kind == collective::reduce_scatter_v) {
          for (int r = 0; r < size; ++r) a.counts[uz(r)] = count * uz(r % 3);
        }
        const auto first = ta::choose(a, none, model);
        for (int root = 0; root < size; ++root) {
          for (int rank = 0; rank < size; ++rank) {
            a.rank = rank;
            a.root = root;
            const auto other = ta::choose(a, none, model);
            INFO(ta::to_string(kind) << " size " << size << " count " << count << " rank " << rank << " root " << root);
            CHECK(other.algorithm == first.algorithm);
            CHECK(other.chunk_bytes == first.chunk_bytes);
            CHECK(other.predicted_us == first.predicted_us);
          }
        }
      }
    }
  }
  // all_to_all_v: every rank has its own counts, and still the same choice.
  const int size = 6;
  std::string algorithm;
  for (int rank = 0; rank < size; ++rank) {
    auto a = make(collective::all_to_all_v, size, 0);
    a.rank = rank;
    for (int p = 0; p < size; ++p) {
      a.counts[uz(p)] = p == rank ? std::size_t{5} : uz((rank * 7 + p * 3) % 5) * (std::size_t{1} << (4 * rank));
      a.recv_counts[uz(p)] = p == rank ? std::size_t{5} : uz((p * 7 + rank * 3) % 5) * (std::size_t{1} << (4 * p));
    }
    const auto chosen = ta::choose(a, none, model);
    if (rank == 0) algorithm = chosen.algorithm;
    CHECK(chosen.algorithm == algorithm);
    CHECK(chosen.chunk_bytes == 0);
  }
}

TEST_CASE("hierarchical: intra-host phases on the local link, the rail phase on the link", "[select]") {
  // 4 hosts of 2 ranks; the round figures between hosts, a link 10x faster
  // inside them. One chunk per block, so the phases are textbook rings.
  ta::cost_model model = round_figures;
  model.local = {0.2, 0.0001};
  auto a = make(collective::all_reduce, 8, 4000, 4);
  a.cluster = std::make_shared<tutti::topology::cluster>(tutti::topology::cluster::uniform(8, 2));
  // Inside: 1 step of reduce-scatter and 1 of all-gather, blocks of 8000 B:
  // (0.2 + 0.8) + 8000 gamma (4), then (0.2 + 0.8). The rail: a ring
  // all_reduce of 8000 B over 4 hosts, blocks of 2000 B: 6 (2 + 2) +
  // 3 (2000 gamma = 1).
  CHECK(predict("hierarchical", a, whole, model) == Approx(1.0 + 4.0 + 1.0 + 6 * 4.0 + 3 * 1.0));
  // The flat ring pays the link for every one of its 14 steps, on blocks of
  // 2000 B.
  CHECK(predict("ring", a, whole, model) == Approx(14 * 4.0 + 7 * 1.0));
  CHECK(ta::choose(a, none, model).algorithm.starts_with("hierarchical"));
  // Hosts with different numbers of ranks: no hierarchical schedule, so no
  // formula, and choose passes it over.
  std::vector<tutti::topology::rank_location> uneven;
  for (int r = 0; r < 8; ++r) uneven.push_back({r < 3 ? "a" : "b"});
  a.cluster = std::make_shared<tutti::topology::cluster>(uneven);
  CHECK_THAT(invalid_argument_from([&] { (void)ta::predict("hierarchical", a, model, 0); }),
             Catch::Contains("no formula for all_reduce algorithm 'hierarchical'"));
  CHECK_FALSE(ta::choose(a, none, model).algorithm.starts_with("hierarchical"));
}

TEST_CASE("hierarchical: without a cluster view it costs what the flat ring costs", "[select]") {
  for (const collective kind : {collective::all_reduce, collective::all_gather, collective::reduce_scatter}) {
    const auto a = make(kind, 8, 100000, 4);
    INFO(ta::to_string(kind));
    CHECK(predict("hierarchical", a, 0) == Approx(predict("ring", a, 0)));
    CHECK(ta::choose(a, none, round_figures).algorithm != "hierarchical");
  }
}

TEST_CASE("cost model: the local link has keys of its own", "[select]") {
  const auto model =
      ta::parse_cost_model("local_alpha_us=0.5,local_bandwidth_gbps=400,alpha_us=3", ta::cost_model{}, links);
  CHECK(model.local.alpha_us == 0.5);
  CHECK(model.local.beta_us_per_byte == Approx(ta::us_per_byte(400)));
  CHECK(model.link.alpha_us == 3.0);
  CHECK_THAT(
      invalid_argument_from([] { (void)ta::parse_cost_model("local_bandwidth_gbps=0", ta::cost_model{}, links); }),
      Catch::Contains("local_bandwidth_gbps=0 is not a positive bandwidth"));
}
