// Save/restore (bit-identical continuation, clear errors on mismatch), the all-reduce baseline
// against its closed form for awkward sizes, configuration errors, memory per peer and the
// no-allocation promise of step().

// Replacing the global operator new/delete with malloc/free is the point of this file; GCC 12
// mistakes the pairing for a mismatch once they are inlined into callers.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "algorithm_harness.hpp"
#include "tests/gossip/transport_test_util.hpp"

// Counts heap allocations made on a thread while it is "watching" (the step() under test).
namespace {
thread_local bool g_watching = false;
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_watching) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

const char* const kAlgorithms[] = {"dpsgd", "dcd-psgd", "deepsqueeze", "choco-sgd",
                                   "d2",    "relaysum", "allreduce"};

// RelaySum runs on trees only: a path instead of the ring.
gossip::topology::Topology topo_for(std::string_view name, int n) {
  return gt::make_topo((name == "relaysum" ? "grid:" : "ring:") + std::to_string(n));
}

ga::AlgorithmConfig full_config(std::string name) {
  ga::AlgorithmConfig c;
  c.name = std::move(name);
  c.lr = 0.05f;
  c.consensus_step = 0.4f;
  c.momentum = 0.9f;
  c.weight_decay = 1e-3f;
  // A random codec, so the RNG position (the round) is part of what must be restored.
  c.codec = c.name == "allreduce" || c.name == "relaysum" || c.name == "dga" ? "identity"
            : c.name == "dpsgd" || c.name == "d2"                            ? "fp16"
                                                                             : "qsgd:s=7";
  c.tensor_sizes = {100, 37, 63};
  c.seed = 99;
  if (c.name == "dga") c.delay = 3;  // reductions in flight, in both lanes
  return c;
}

// A transport for one peer of a 2-peer topology whose "neighbour" sends back a fixed message of
// the right size: enough to drive step() without threads, for the allocation count.
class EchoTransport final : public gossip::net::Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::span<const int> neighbors() const override { return neighbors_; }
  const std::vector<std::span<const std::byte>>& exchange(
      std::uint64_t, std::span<const std::byte> payload) override {
    if (copy_.size() != payload.size()) {
      copy_.assign(payload.begin(), payload.end());  // first round only: the neighbour's state
      views_.assign(1, std::span<const std::byte>(copy_));
    }
    counters_.bytes_sent += payload.size();
    counters_.bytes_received += copy_.size();
    return views_;
  }
  void ring_step(std::uint64_t, std::uint32_t, std::span<const std::byte> send,
                 std::span<std::byte> recv) override {
    std::memcpy(recv.data(), send.data(), std::min(send.size(), recv.size()));
  }
  const gossip::net::TrafficCounters& counters() const override { return counters_; }
  void request_stop(std::uint64_t) override {}
  std::optional<std::uint64_t> stop_round() const override { return std::nullopt; }

 private:
  std::vector<int> neighbors_{1};
  std::vector<std::byte> copy_;
  std::vector<std::span<const std::byte>> views_;
  gossip::net::TrafficCounters counters_;
};

}  // namespace

TEST_CASE("save then load and continue is bit-identical to not stopping") {
  const std::size_t n = 4;
  const gt::DiagonalQuadratic problem(static_cast<int>(n), 200, 12);
  std::vector<float> x0(problem.d, 0.3f);
  const std::uint64_t first = 7, second = 9;
  std::vector<ga::AlgorithmConfig> configs;
  for (std::string name : kAlgorithms) configs.push_back(full_config(name));
  for (std::string name : {"dpsgd", "deepsqueeze"}) {
    configs.push_back(full_config(name));
    configs.back().quasi_global = true;  // its buffer survives, x_prev is rebuilt by load()
  }
  configs.push_back(full_config("relaysum"));
  configs.back().codec = "qsgd:s=7";  // the compressed relay: public copies and their replicas
  // Local steps, saved in the middle of a period (round 7 with H = 3: rounds 2, 5, 8 exchange).
  for (std::string name : kAlgorithms) {
    configs.push_back(full_config(name));
    configs.back().local_steps = 3;
  }
  // The centralized algorithms without local steps: DGA with three reductions in flight at the
  // save (D = 3: chunks of rounds 5 and 6 and the sums of round 4 are re-posted; D = 4: chunks of
  // 5 and 6, sums of 3 and 4), DoubleSqueeze with qsgd on chunks cut from the tensors (both error
  // memories).
  configs.push_back(full_config("dga"));
  configs.push_back(full_config("dga"));
  configs.back().delay = 4;
  configs.push_back(full_config("doublesqueeze"));
  for (const auto& cfg : configs) {
    const std::string name = cfg.name + (cfg.quasi_global ? " quasi-global" : "") + " (" +
                             cfg.codec + ", H = " + std::to_string(cfg.local_steps) + ")";
    CAPTURE(name);
    const auto topo = topo_for(cfg.name, static_cast<int>(n));
    // Uninterrupted run and the saved states at round `first`, in one go.
    std::vector<std::string> saved(n);
    std::vector<std::vector<float>> straight(n);
    {
      gt::InprocNetwork net(topo, cfg);
      gt::run_peers(topo.size(), [&](int r) {
        const auto i = static_cast<std::size_t>(r);
        auto algo = ga::make_algorithm(cfg, *net.transports[i], topo, x0);
        auto g = [&](std::span<const float> x, std::span<float> gr) { problem.gradient(r, x, gr); };
        for (std::uint64_t t = 0; t < first; ++t) algo->step(g);
        // A schedule moved both: the saved state must carry their current values.
        algo->set_lr(cfg.lr * 0.5f);
        algo->set_consensus_step(cfg.consensus_step * 0.5f);
        std::ostringstream out;
        algo->save(out);
        saved[i] = out.str();
        for (std::uint64_t t = 0; t < second; ++t) algo->step(g);
        straight[i].assign(algo->params().begin(), algo->params().end());
      });
    }
    // Fresh objects and a fresh network (as after a restart), state loaded, same rounds on.
    std::vector<std::vector<float>> resumed(n);
    std::vector<std::uint64_t> rounds(n);
    {
      gt::InprocNetwork net(topo, cfg);
      gt::run_peers(topo.size(), [&](int r) {
        const auto i = static_cast<std::size_t>(r);
        const std::vector<float> other_start(problem.d, -1.0f);  // overwritten by load
        auto algo = ga::make_algorithm(cfg, *net.transports[i], topo, other_start);
        std::istringstream in(saved[i]);
        algo->load(in);
        rounds[i] = algo->round();
        CHECK(algo->lr() == cfg.lr * 0.5f);
        CHECK(algo->consensus_step() == cfg.consensus_step * 0.5f);
        auto g = [&](std::span<const float> x, std::span<float> gr) { problem.gradient(r, x, gr); };
        for (std::uint64_t t = 0; t < second; ++t) algo->step(g);
        resumed[i].assign(algo->params().begin(), algo->params().end());
      });
    }
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(rounds[i] == first);
      CHECK(gt::bit_equal(resumed[i], straight[i]));
    }
    CHECK_FALSE(gt::bit_equal(straight[0], x0));
  }
}

TEST_CASE("loading a state of another algorithm, size or config fails clearly") {
  const auto topo = gt::make_topo("ring:3");
  const std::size_t d = 50;
  const std::vector<float> x0(d, 1.0f);
  std::string choco_state;
  {
    gt::InprocNetwork net(topo);
    auto cfg = full_config("choco-sgd");
    cfg.tensor_sizes.clear();
    auto algo = ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    std::ostringstream out;
    algo->save(out);
    choco_state = out.str();
  }
  gt::InprocNetwork net(topo);
  auto expect_error = [&](const ga::AlgorithmConfig& cfg, std::size_t dim, const std::string& state,
                          const std::string& fragment) {
    const std::vector<float> start(dim, 2.0f);
    auto algo = ga::make_algorithm(cfg, *net.transports[0], topo, start);
    std::istringstream in(state);
    std::string message;
    try {
      algo->load(in);
    } catch (const ga::StateError& e) {
      message = e.what();
    }
    CAPTURE(message);
    CHECK(message.find(fragment) != std::string::npos);
    // A failed load leaves the object as it was.
    CHECK(algo->round() == 0);
    CHECK(gt::bit_equal(algo->params(), start));
  };
  auto choco = full_config("choco-sgd");
  choco.tensor_sizes.clear();
  auto dcd = choco;
  dcd.name = "dcd-psgd";
  expect_error(dcd, d, choco_state, "of algorithm 'choco-sgd', cannot load it into 'dcd-psgd'");
  expect_error(choco, d + 1, choco_state, "d = 50, this model has d = 51");
  auto other_codec = choco;
  other_codec.codec = "qsgd:s=3";
  expect_error(other_codec, d, choco_state, "config hash");
  auto other_seed = choco;
  other_seed.seed = 1;
  expect_error(other_seed, d, choco_state, "config hash");
  expect_error(choco, d, choco_state.substr(0, choco_state.size() - 20), "stream ends");
  std::string damaged = choco_state;
  damaged[damaged.size() - 30] ^= 0x40;
  expect_error(choco, d, damaged, "checksum mismatch");
  expect_error(choco, d, "not a state at all", "bad magic");
  // The learning rate is not part of the config hash (schedules change it); it is restored.
  auto other_lr = choco;
  other_lr.lr = 0.5f;
  auto algo = ga::make_algorithm(other_lr, *net.transports[0], topo, x0);
  std::istringstream in(choco_state);
  algo->load(in);
  CHECK(algo->lr() == choco.lr);
}

TEST_CASE("a neighbour's state (rejoin): model, momentum, round and lr taken, error memory zero") {
  // DeepSqueeze keeps an error memory ("delta"). Rank 0's buffers are filled with distinct
  // values; rank 1 adopts what rank 0 saves for a peer.
  const auto topo = gt::make_topo("ring:3");
  const std::size_t d = 200;
  const std::vector<float> x0(d, 1.0f);
  gt::InprocNetwork net(topo);
  auto cfg = full_config("deepsqueeze");
  auto donor = ga::make_algorithm(cfg, *net.transports[0], topo, x0);
  float v = 0.5f;
  for (const auto& b : donor->state_buffers()) {
    std::vector<float> fill(b.data.size());
    for (float& f : fill) f = (v += 0.25f);
    std::copy(fill.begin(), fill.end(), b.data.begin());
  }
  donor->set_lr(0.0125f);
  std::ostringstream shared, own;
  donor->save_for_peer(shared);
  donor->save(own);
  auto back = ga::make_algorithm(cfg, *net.transports[1], topo, x0);
  std::istringstream in(shared.str());
  back->adopt(in);
  CHECK(back->round() == donor->round());
  CHECK(back->lr() == 0.0125f);
  CHECK(gt::bit_equal(back->params(), donor->params()));
  CHECK(back->state("momentum") == donor->state("momentum"));
  const auto delta = back->state("delta");
  CHECK(std::all_of(delta.begin(), delta.end(), [](float f) { return f == 0.0f; }));
  CHECK(donor->state("delta") != delta);
  // A peer's state is no checkpoint of this rank, and a checkpoint of rank 0 is not for a peer.
  auto other = ga::make_algorithm(cfg, *net.transports[2], topo, x0);
  std::istringstream as_checkpoint(shared.str());
  CHECK_THROWS_WITH_AS(other->load(as_checkpoint), doctest::Contains("config hash"),
                       ga::StateError);
  std::istringstream rank0_checkpoint(own.str());
  CHECK_THROWS_WITH_AS(other->adopt(rank0_checkpoint),
                       doctest::Contains("a peer's algorithm state"), ga::StateError);
  // Another setting (the seed) is refused as for a checkpoint.
  auto seed = cfg;
  seed.seed = 1;
  auto stranger = ga::make_algorithm(seed, *net.transports[2], topo, x0);
  std::istringstream again(shared.str());
  CHECK_THROWS_AS(stranger->adopt(again), ga::StateError);
}

TEST_CASE("all-reduce SGD: the exact averaged step for any n and d, identical on every peer") {
  for (const char* spec :
       {"ring:2", "ring:3", "ring:8", "torus:2x4", "erdos-renyi:5,p=0.5,seed=3"}) {
    for (std::size_t d : {0u, 1u, 4u, 7u, 100u, 1001u}) {
      CAPTURE(spec);
      CAPTURE(d);
      const auto topo = gt::make_topo(spec);
      const auto n = static_cast<std::size_t>(topo.size());
      std::vector<float> x0(d);
      for (std::size_t k = 0; k < d; ++k) x0[k] = static_cast<float>(k % 5) - 2.0f;
      // Peer r's gradient: (r + 1) * (k + 1) * 2^-4 + x: exact in float, sums exactly.
      const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
        for (std::size_t k = 0; k < g.size(); ++k)
          g[k] = static_cast<float>((r + 1) * static_cast<int>(k % 13 + 1)) * 0.0625f + x[k];
      };
      ga::AlgorithmConfig cfg;
      cfg.name = "allreduce";
      cfg.lr = 0.5f;
      std::vector<std::uint64_t> bytes(n);
      const auto x =
          gt::run_algorithm(cfg, topo, x0, 3, grad, [&](int r, std::uint64_t, ga::Algorithm& a) {
            bytes[static_cast<std::size_t>(r)] = a.totals().bytes_sent;
          });
      // Closed form in float with the same operations.
      std::vector<float> ref = x0, g(d), sum(d);
      for (int t = 0; t < 3; ++t) {
        std::fill(sum.begin(), sum.end(), 0.0f);
        for (std::size_t r = 0; r < n; ++r) {
          grad(static_cast<int>(r), ref, g);
          for (std::size_t k = 0; k < d; ++k) sum[k] += g[k];
        }
        for (std::size_t k = 0; k < d; ++k)
          ref[k] -= cfg.lr * (sum[k] * (1.0f / static_cast<float>(n)));
      }
      bool all_same = true;
      double worst = 0.0;
      for (std::size_t r = 0; r < n; ++r) {
        all_same = all_same && gt::bit_equal(x[r], x[0]);
        for (std::size_t k = 0; k < d; ++k)
          worst = std::max(worst, static_cast<double>(std::abs(x[r][k] - ref[k])));
      }
      CHECK(all_same);
      CHECK(worst <= 1e-5);
      // 2(n−1) chunks of about d/n floats per round: payload bytes ≈ 2(n−1)/n · 4d per round.
      if (d >= 100) {
        const double payload = 3.0 * 2.0 * static_cast<double>(n - 1) / static_cast<double>(n) *
                               4.0 * static_cast<double>(d);
        CHECK(static_cast<double>(bytes[0]) >= 0.95 * payload);
        CHECK(static_cast<double>(bytes[0]) <= payload + 3.0 * 2.0 * static_cast<double>(n) * 4.0 +
                                                   3.0 * 2.0 * static_cast<double>(n) * 128.0);
      }
    }
  }
}

TEST_CASE("one peer: every algorithm is plain SGD") {
  // A single peer has no neighbours; the gossip terms vanish (W = [1]).
  const auto topo = gt::make_topo("ring:1");
  const gt::DiagonalQuadratic problem(1, 33, 4);
  const std::vector<float> x0(problem.d, 0.5f);
  for (std::string name : kAlgorithms) {
    CAPTURE(name);
    ga::AlgorithmConfig cfg;
    cfg.name = name;
    cfg.lr = 0.1f;
    cfg.consensus_step = 0.5f;
    const auto x = gt::run_algorithm(
        cfg, topo, x0, 5,
        [&](int r, std::span<const float> xx, std::span<float> g) { problem.gradient(r, xx, g); });
    std::vector<float> ref = x0, g(problem.d);
    for (int t = 0; t < 5; ++t) {
      problem.gradient(0, ref, g);
      for (std::size_t k = 0; k < ref.size(); ++k) ref[k] -= 0.1f * g[k];
    }
    double worst = 0.0;
    for (std::size_t k = 0; k < ref.size(); ++k)
      worst = std::max(worst, static_cast<double>(std::abs(x[0][k] - ref[k])));
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("model-sized buffers per peer do not grow with the degree") {
  const std::size_t d = 64;
  const std::vector<float> x0(d, 0.0f);
  for (std::string name : kAlgorithms) {
    if (name == "relaysum") continue;  // two per tree neighbour: the next test
    std::vector<std::size_t> counts;
    for (const char* spec : {"ring:8", "complete:8"}) {
      const auto topo = gt::make_topo(spec);
      gt::InprocNetwork net(topo);
      ga::AlgorithmConfig cfg;
      cfg.name = name;
      auto algo = ga::make_algorithm(cfg, *net.transports[0], topo, x0);
      counts.push_back(algo->model_sized_buffers());
    }
    CAPTURE(name);
    CHECK(counts[0] == counts[1]);
    // x and g, plus s (DCD), δ (DeepSqueeze), x̂ and s (CHOCO), the correction and a decode
    // buffer (D²).
    const std::string nm = name;
    const std::size_t expected = (nm == "choco-sgd" || nm == "d2")           ? 4
                                 : (nm == "dcd-psgd" || nm == "deepsqueeze") ? 3
                                                                             : 2;
    CHECK(counts[0] == expected);
  }
}

TEST_CASE("RelaySum keeps two model-sized sums per tree neighbour, three when compressed") {
  const std::size_t d = 64;
  const std::vector<float> x0(d, 0.0f);
  for (const char* spec : {"grid:8", "star:6", "ring:1"}) {
    for (const char* codec : {"identity", "identity:", "qsgd:s=3"}) {
      CAPTURE(spec);
      CAPTURE(codec);
      const auto topo = gt::make_topo(spec);
      gt::InprocNetwork net(topo);
      for (int r = 0; r < topo.size(); ++r) {
        ga::AlgorithmConfig cfg;
        cfg.name = "relaysum";
        cfg.codec = codec;
        auto algo = ga::make_algorithm(cfg, *net.transports[static_cast<std::size_t>(r)], topo, x0);
        // x, g, x0, one decode buffer, and the sums received from and owed to each neighbour;
        // compressed, also the own public copy and a replica of each neighbour's.
        const auto deg = static_cast<std::size_t>(topo.graph.degree(r));
        const bool lossy = std::string(codec) == "qsgd:s=3";  // "identity:" is identity too
        CHECK(algo->model_sized_buffers() == (lossy ? 5 + 3 * deg : 4 + 2 * deg));
      }
    }
  }
}

// Heap allocations made by one call of f on this thread.
template <class F>
std::uint64_t allocations_in(F&& f) {
  g_allocations = 0;
  g_watching = true;
  f();
  g_watching = false;
  return g_allocations.load();
}

TEST_CASE("step() allocates nothing beyond what the codec calls themselves allocate") {
  // Two peers: rank 0 talks to an echo of itself; W = [[1/2, 1/2], [1/2, 1/2]].
  const auto topo = gt::make_topo("complete:2");
  const std::size_t d = 1000;
  const std::vector<float> x0(d, 0.25f);
  for (std::string name : {"dpsgd", "dpsgd-overlap", "dcd-psgd", "deepsqueeze", "choco-sgd",
                           "relaysum", "allreduce"}) {
    for (std::string codec : {"identity", "qsgd:s=3,scaled=true"}) {
      if ((name == "allreduce" || name == "relaysum") && codec != "identity") continue;
      // D-PSGD sends its model: a lossless codec only (its registry row).
      if (name.starts_with("dpsgd") && codec != "identity") codec = "fp16";
      const bool overlap = name == "dpsgd-overlap";
      const std::string algo_name = overlap ? std::string("dpsgd") : name;
      CAPTURE(name);
      CAPTURE(codec);
      // What the codec itself allocates per encode and per decode_accumulate, if anything.
      std::uint64_t per_encode = 0, per_decode = 0;
      if (algo_name != "allreduce") {
        auto c = gossip::kernels::make_codec(codec);
        std::vector<std::byte> wire(c->wire_size(d));
        std::vector<float> v(d, 0.5f), y(d, 0.0f);
        c->encode(v, {1, 0, 0}, wire);
        c->decode_accumulate(wire, 0.5f, y);
        per_encode = allocations_in([&] { c->encode(v, {1, 0, 1}, wire); });
        per_decode = allocations_in([&] { c->decode_accumulate(wire, 0.5f, y); });
      }
      // Codec calls per step: one encode, then decodes of the neighbour's message and, except
      // in D-PSGD, two of the own message.
      const std::uint64_t decodes = algo_name == "allreduce"                          ? 0
                                    : algo_name == "dpsgd" || algo_name == "relaysum" ? 1
                                                                                      : 3;
      const std::uint64_t codec_allocations = 10 * (per_encode + decodes * per_decode);
      WARN_MESSAGE(codec_allocations == 0, "codec " << codec << " allocates " << per_encode
                                                    << " times per encode and " << per_decode
                                                    << " per decode_accumulate");
      EchoTransport transport;
      ga::AlgorithmConfig cfg;
      cfg.name = algo_name;
      cfg.codec = codec;
      cfg.momentum = 0.9f;
      cfg.weight_decay = 1e-4f;
      cfg.consensus_step = 0.5f;
      cfg.overlap_gradient = overlap;
      auto algo = ga::make_algorithm(cfg, transport, topo, x0);
      std::vector<float> g(d, 0.01f);
      algo->step(g);  // the echo transport sets itself up on its first call
      const std::uint64_t in_steps = allocations_in([&] {
        for (int t = 0; t < 5; ++t) {
          algo->step(g);
          algo->step([](std::span<const float> x, std::span<float> gr) {
            for (std::size_t k = 0; k < gr.size(); ++k) gr[k] = 0.1f * x[k];
          });
        }
      });
      // The algorithm layer adds none of its own.
      CHECK(in_steps == codec_allocations);
      CHECK(algo->round() == 11);
    }
  }
}

TEST_CASE("configuration errors name the bad setting") {
  const auto topo = gt::make_topo("ring:4");
  gt::InprocNetwork net(topo);
  const std::vector<float> x0(10, 0.0f);
  auto error_of = [&](const ga::AlgorithmConfig& cfg, gossip::net::Transport& t) {
    try {
      ga::make_algorithm(cfg, t, topo, x0);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ga::AlgorithmConfig cfg;
  cfg.name = "gossip-magic";
  CHECK(error_of(cfg, *net.transports[0]).find("unknown algorithm 'gossip-magic'") !=
        std::string::npos);
  cfg.name = "choco";
  cfg.consensus_step = 0.0f;
  CHECK(error_of(cfg, *net.transports[0]).find("consensus_step") != std::string::npos);
  cfg.name = "allreduce";
  cfg.codec = "qsgd:s=3";
  CHECK(error_of(cfg, *net.transports[0])
            .find("codec is \"qsgd:s=3\", but allreduce sums fp32 gradients") != std::string::npos);
  cfg.name = "relaysum";
  cfg.codec = "identity";
  CHECK(error_of(cfg, *net.transports[0])
            .find("relaysum needs a tree (connected, n - 1 edges): ring:4 (weights ring) has 4 "
                  "edges for 4 peers; use a path (grid:4)") != std::string::npos);
  cfg.name = "dpsgd";
  cfg.tensor_sizes = {3, 3};
  CHECK(error_of(cfg, *net.transports[0]).find("tensor_sizes sum to 6") != std::string::npos);
  cfg.tensor_sizes.clear();
  cfg.momentum = 1.0f;
  CHECK(error_of(cfg, *net.transports[0]).find("momentum") != std::string::npos);
  cfg.momentum = 0.0f;
  cfg.quasi_global = true;
  CHECK(error_of(cfg, *net.transports[0]).find("quasi_global momentum needs momentum > 0") !=
        std::string::npos);
  cfg.quasi_global = false;
  {  // a schedule may not move the consensus step out of (0, 1]
    auto algo = ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    CHECK_THROWS_WITH_AS(algo->set_consensus_step(0.0f), doctest::Contains("(0, 1], got 0"),
                         std::invalid_argument);
    CHECK(algo->consensus_step() == cfg.consensus_step);
  }
  // A transport of another topology: its neighbours are not this W's.
  cfg.momentum = 0.0f;
  const auto other = gt::make_topo("complete:4");
  gt::InprocNetwork other_net(other);
  CHECK(error_of(cfg, *other_net.transports[0]).find("exchanges with") != std::string::npos);
  // Aliases resolve to the canonical name.
  cfg.name = "d-psgd";
  auto algo = ga::make_algorithm(cfg, *net.transports[1], topo, x0);
  CHECK(algo->name() == "dpsgd");
}

TEST_CASE("state on a GPU that is not there is an error naming the reason") {
  if (ga::cuda_space_devices() > 0) {
    MESSAGE("a GPU is visible: the GPU path is checked by gossip-algorithm-cuda instead");
    return;
  }
  const auto topo = gt::make_topo("ring:4");
  gt::InprocNetwork net(topo);
  const std::vector<float> x0(10, 0.0f);
  ga::AlgorithmConfig cfg;
  cfg.cuda_device = 0;
  const std::string reason = ga::cuda_space_built() ? "GPU 0 is not visible (0 visible)"
                                                    : "built without the CUDA backend";
  CHECK_THROWS_WITH_AS(ga::make_algorithm(cfg, *net.transports[0], topo, x0),
                       doctest::Contains(reason.c_str()), std::runtime_error);
}

TEST_CASE("settings hash: equal for equal settings, different when any setting differs") {
  ga::AlgorithmConfig a;
  a.name = "choco";
  a.codec = "qsgd:s=3,scaled=true";
  auto b = a;
  b.name = "choco-sgd";  // an alias is the same algorithm
  CHECK(ga::settings_hash(a, 100) == ga::settings_hash(b, 100));
  CHECK(ga::settings_hash(a, 100) != ga::settings_hash(a, 101));
  std::vector<ga::AlgorithmConfig> changed(9, a);
  changed[8].local_steps = 2;
  changed[7].quasi_global = true;
  changed[0].lr = 0.2f;
  changed[1].consensus_step = 0.5f;
  changed[2].momentum = 0.9f;
  changed[3].weight_decay = 1e-4f;
  changed[4].codec = "qsgd:s=3";
  changed[5].tensor_sizes = {50, 50};
  changed[6].seed = 1;
  for (const auto& c : changed) CHECK(ga::settings_hash(c, 100) != ga::settings_hash(a, 100));
}

TEST_CASE("a corrupted message from a neighbour names the rank, the round and the peer") {
  // Rank 0 of ring:2 runs the algorithm over the in-process transport; rank 1 is played by hand:
  // its hello, a good round-0 message from the same codec, then round 1 with one byte flipped.
  // Each decode path of the algorithms: exchange_accumulate (dpsgd, choco-sgd), exchange() then
  // accumulate_neighbors (dpsgd with overlap_gradient), exchange_decode_each (d2).
  struct Case {
    const char* name;
    const char* codec;
    bool overlap;
  };
  for (const Case c : {Case{"dpsgd", "identity", false}, Case{"dpsgd", "fp16", true},
                       Case{"choco-sgd", "qsgd:s=7", false}, Case{"d2", "identity", false}}) {
    CAPTURE(c.name);
    CAPTURE(c.codec);
    CAPTURE(c.overlap);
    ga::AlgorithmConfig cfg;
    cfg.name = c.name;
    cfg.codec = c.codec;
    cfg.lr = 0.05f;
    cfg.consensus_step = 0.4f;
    cfg.overlap_gradient = c.overlap;
    const auto topo = gt::make_topo("ring:2");
    auto hub = std::make_shared<gossip::net::InprocHub>(topo);
    gossip::net::TransportOptions o;
    o.timeout = std::chrono::milliseconds(20000);
    gossip::net::InprocTransport transport(hub, 0, o);
    const std::size_t d = 64;
    std::vector<float> x0(d, 0.25f);
    auto algo = ga::make_algorithm(cfg, transport, topo, x0);

    // Rank 1 played by hand: its hello, then two exchange frames.
    const gossip::net::test::Forger peer{hub, 1, 0, gossip::net::session_hash(topo.hash(), 0)};
    peer.hello();
    const auto codec = gossip::kernels::make_codec(c.codec);
    std::vector<std::byte> wire(codec->wire_size(d));
    wire.resize(codec->encode(x0, {1, 1, 0}, wire));
    peer.data(0, wire);
    wire[wire.size() / 2] ^= std::byte{0x10};
    peer.data(1, wire);

    auto grad = [](std::span<const float> x, std::span<float> g) {
      std::copy(x.begin(), x.end(), g.begin());
    };
    algo->step(grad);
    std::string error;
    try {
      algo->step(grad);
    } catch (const gossip::kernels::WireError& e) {  // still the codec's exception type
      error = e.what();
    }
    CAPTURE(error);
    CHECK(error.find("rank 0: round 1: message from peer 1 (" + topo.peers[1].endpoint +
                     "): codec ") != std::string::npos);
    CHECK(error.find("checksum mismatch") != std::string::npos);
  }
}
