// Equivalences between the algorithms and against dense references, and the invariants the
// memory-efficient forms rely on (mean follows SGD, replicas bit-identical, s_i = Σ W_ij x̂_j).

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "algorithm_harness.hpp"
#include "topology/topology_file.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

constexpr const char* kTopologies[] = {"ring:8", "torus:2x4", "erdos-renyi:8,p=0.5,seed=3",
                                       "ring:3", "ring:2"};

ga::AlgorithmConfig config(std::string name, float lr, float consensus, std::string codec) {
  ga::AlgorithmConfig c;
  c.name = std::move(name);
  c.lr = lr;
  c.consensus_step = consensus;
  c.codec = std::move(codec);
  c.seed = 17;
  return c;
}

// A transport that forwards to another and keeps a copy of every payload it sends and receives,
// so a test can compare what each holder of a replica was given.
class RecordingTransport final : public gossip::net::Transport {
 public:
  explicit RecordingTransport(gossip::net::Transport& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::span<const int> neighbors() const override { return inner_.neighbors(); }
  const std::vector<std::span<const std::byte>>& exchange(
      std::uint64_t round, std::span<const std::byte> payload) override {
    sent.emplace_back(payload.begin(), payload.end());
    const auto& in = inner_.exchange(round, payload);
    auto& r = received.emplace_back();
    for (const auto& m : in) r.emplace_back(m.begin(), m.end());
    return in;
  }
  void ring_step(std::uint64_t round, std::uint32_t step, std::span<const std::byte> send,
                 std::span<std::byte> recv) override {
    inner_.ring_step(round, step, send, recv);
  }
  const gossip::net::TrafficCounters& counters() const override { return inner_.counters(); }
  void request_stop(std::uint64_t before_round) override { inner_.request_stop(before_round); }
  std::optional<std::uint64_t> stop_round() const override { return inner_.stop_round(); }

  std::vector<std::vector<std::byte>> sent;                   // [round]
  std::vector<std::vector<std::vector<std::byte>>> received;  // [round][neighbour]

 private:
  gossip::net::Transport& inner_;
};

std::vector<float> start_point(std::size_t d) {
  std::vector<float> x0(d);
  for (std::size_t k = 0; k < d; ++k) x0[k] = 0.25f * static_cast<float>(k % 7) - 0.5f;
  return x0;
}

}  // namespace

TEST_CASE("identity D-PSGD and DCD-PSGD match the dense D-PSGD reference") {
  for (std::string spec : kTopologies) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 64, 5);
    const auto x0 = start_point(problem.d);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const std::uint64_t rounds = 40;
    const auto ref = gt::reference_dpsgd(topo, x0, 0.05f, rounds, grad);
    const auto dpsgd =
        gt::run_algorithm(config("dpsgd", 0.05f, 1.0f, "identity"), topo, x0, rounds, grad);
    const auto dcd =
        gt::run_algorithm(config("dcd-psgd", 0.05f, 1.0f, "identity"), topo, x0, rounds, grad);
    // D-PSGD sums in the reference's way up to float rounding; DCD's incremental s_i adds a few
    // roundings per round.
    CHECK(gt::max_scaled_difference(dpsgd, ref) < 1e-5);
    CHECK(gt::max_scaled_difference(dcd, ref) < 1e-4);
    // And the test can fail: the reference is not the identity map.
    CHECK(gt::max_scaled_difference(dpsgd, gt::reference_atc(topo, x0, 0.05f, rounds, grad)) >
          1e-3);
  }
}

TEST_CASE("identity DeepSqueeze (eta = 1) and CHOCO-SGD (gamma_c = 1) are adapt-then-combine") {
  for (std::string spec : kTopologies) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 64, 6);
    const auto x0 = start_point(problem.d);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const std::uint64_t rounds = 40;
    const auto ref = gt::reference_atc(topo, x0, 0.05f, rounds, grad);
    for (std::string name : {"deepsqueeze", "choco-sgd"}) {
      CAPTURE(name);
      const auto x =
          gt::run_algorithm(config(name, 0.05f, 1.0f, "identity"), topo, x0, rounds, grad);
      CHECK(gt::max_scaled_difference(x, ref) < 1e-4);
    }
  }
}

TEST_CASE("DeepSqueeze's error memory is v - C(v), C(v) decoded from the message it sent") {
  // delta_{t+1} = v_t - C(v_t) with v_t = x_t - lr g(x_t) + delta_t, and
  // x_{t+1} = x_half + eta sum_j (W_ij - [i=j]) C(v_j): each checked against the codec's own
  // decode of the bytes on the wire. A flipped sign of the memory survived every other test but
  // a d = 10^4 convergence threshold.
  const auto topo = gt::make_topo("ring:4");
  const auto n = static_cast<std::size_t>(topo.size());
  const auto w = gt::dense_w(topo);
  const gt::DiagonalQuadratic problem(topo.size(), 64, 13);
  const auto x0 = start_point(problem.d);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  const std::uint64_t rounds = 3;
  const float lr = 0.05f, eta = 0.5f;
  const char* spec = "qsgd:s=3,scaled=true";  // biased and coarse: the memory is far from 0
  gt::InprocNetwork network(topo);
  std::vector<std::unique_ptr<RecordingTransport>> rec;
  std::vector<gossip::net::Transport*> ptrs;
  for (auto& t : network.transports) {
    rec.push_back(std::make_unique<RecordingTransport>(*t));
    ptrs.push_back(rec.back().get());
  }
  // x[t][i], delta[t][i]: peer i's state after t rounds.
  std::vector<std::vector<std::vector<float>>> x(rounds + 1, std::vector<std::vector<float>>(n)),
      delta(rounds + 1, std::vector<std::vector<float>>(n));
  for (std::size_t i = 0; i < n; ++i) {
    x[0][i] = x0;
    delta[0][i].assign(problem.d, 0.0f);
  }
  gt::run_algorithm_on(config("deepsqueeze", lr, eta, spec), topo, ptrs, x0, rounds, grad,
                       [&](int rank, std::uint64_t t, ga::Algorithm& a) {
                         x[t][static_cast<std::size_t>(rank)] = a.state("x");
                         delta[t][static_cast<std::size_t>(rank)] = a.state("delta");
                       });
  const auto codec = gossip::kernels::make_codec(spec);
  const auto decoded = [&](std::span<const std::byte> wire) {
    std::vector<float> c(problem.d);
    codec->decode(wire, c);
    return c;
  };
  double worst_delta = 0.0, worst_x = 0.0, memory = 0.0;
  for (std::uint64_t t = 0; t < rounds; ++t)
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<float> g(problem.d);
      problem.gradient(static_cast<int>(i), x[t][i], g);
      const auto own = decoded(rec[i]->sent[t]);
      std::vector<double> next_x(problem.d);
      for (std::size_t k = 0; k < problem.d; ++k) {
        const double half = static_cast<double>(x[t][i][k]) - static_cast<double>(lr) * g[k];
        const double v = half + delta[t][i][k];
        const double want = v - own[k];
        worst_delta =
            std::max(worst_delta, std::abs(want - delta[t + 1][i][k]) / (1 + std::abs(v)));
        memory = std::max(memory, std::abs(want));
        next_x[k] = half + static_cast<double>(eta) * (w[i][i] - 1.0) * own[k];
      }
      const auto nbs = network.transports[i]->neighbors();
      for (std::size_t m = 0; m < nbs.size(); ++m) {
        const auto j = static_cast<std::size_t>(nbs[m]);
        const auto theirs = decoded(rec[i]->received[t][m]);
        for (std::size_t k = 0; k < problem.d; ++k)
          next_x[k] += static_cast<double>(eta) * w[i][j] * theirs[k];
      }
      for (std::size_t k = 0; k < problem.d; ++k)
        worst_x =
            std::max(worst_x, std::abs(next_x[k] - x[t + 1][i][k]) / (1 + std::abs(next_x[k])));
    }
  CHECK(worst_delta < 1e-6);
  CHECK(worst_x < 1e-6);
  CHECK(memory > 0.05);  // the codec is lossy enough that the memory matters
}

TEST_CASE("RelaySum with an empty model runs its rounds") {
  for (const char* codec : {"identity", "qsgd:s=3,scaled=true"}) {
    const auto topo = gt::make_topo("grid:3");
    const std::vector<float> none;
    const auto x = gt::run_algorithm(config("relaysum", 0.05f, 1.0f, codec), topo, none, 3,
                                     [](int, std::span<const float>, std::span<float>) {});
    CHECK(x.size() == 3);
    for (const auto& xi : x) CHECK(xi.empty());
  }
}

TEST_CASE("RelaySum on trees matches the delayed plain average of all peers' models") {
  // Paths (the diameter sets the delays), a star (one relay for all), two peers and one.
  for (std::string spec : {"grid:8", "grid:5", "star:6", "grid:2", "grid:1"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 64, 9);
    const auto x0 = start_point(problem.d);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const std::uint64_t rounds = 30;
    std::vector<std::uint64_t> bytes(static_cast<std::size_t>(topo.size()));
    const auto x = gt::run_algorithm(config("relaysum", 0.05f, 1.0f, "identity"), topo, x0, rounds,
                                     grad, [&](int r, std::uint64_t, ga::Algorithm& a) {
                                       bytes[static_cast<std::size_t>(r)] = a.totals().bytes_sent;
                                     });
    const auto ref = gt::reference_relaysum(topo, x0, 0.05f, rounds, grad);
    // The relayed sums are of up to n models: a few roundings of their size per hop.
    CHECK(gt::max_scaled_difference(x, ref) < 1e-5);
    if (topo.size() > 2) {  // the delays matter: adapt-then-combine with W is another rule
      CHECK(gt::max_scaled_difference(x, gt::reference_atc(topo, x0, 0.05f, rounds, grad)) > 1e-3);
    }
    // One fp32 model per neighbour per round, plus the frame headers.
    for (int r = 0; r < topo.size(); ++r) {
      const auto deg = static_cast<std::uint64_t>(topo.graph.degree(r));
      CHECK(bytes[static_cast<std::size_t>(r)] >= rounds * deg * 4 * problem.d);
      CHECK(bytes[static_cast<std::size_t>(r)] <= rounds * deg * (4 * problem.d + 256));
    }
  }
}

TEST_CASE("RelaySum: both ends of every tree edge hold the same relayed sums, bit for bit") {
  // What i owes j is what j received from i; compressed, j's copy of i's public sum is i's own.
  // A path and a star (degree 5 at the centre).
  for (const auto& [spec, codec] :
       std::vector<std::pair<std::string, std::string>>{{"grid:6", "identity"},
                                                        {"grid:6", "qsgd:s=3,scaled=true"},
                                                        {"grid:6", "fp16"},
                                                        {"star:6", "identity"},
                                                        {"star:6", "qsgd:s=3,scaled=true"}}) {
    const std::string shown =
        spec + " " + codec;  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    const auto topo = gt::make_topo(spec);
    const auto n = static_cast<std::size_t>(topo.size());
    const gt::DiagonalQuadratic problem(topo.size(), 300, 4);
    const auto x0 = start_point(problem.d);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const bool lossy = codec != "identity";
    // state[t][i]: peer i's named buffers after round t.
    const std::uint64_t rounds = 12;
    std::vector<std::vector<std::map<std::string, std::vector<float>>>> state(
        rounds + 1, std::vector<std::map<std::string, std::vector<float>>>(n));
    gt::run_algorithm(config("relaysum", 0.05f, 1.0f, codec), topo, x0, rounds, grad,
                      [&](int rank, std::uint64_t t, ga::Algorithm& a) {
                        for (const auto& b : a.state_buffers())
                          state[t][static_cast<std::size_t>(rank)][std::string(b.name)].assign(
                              b.data.begin(), b.data.end());
                      });
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
    };
    bool agree = true, moved = false;
    for (std::uint64_t t = 1; t <= rounds; ++t)
      for (const auto& [a, b] : topo.graph.edges()) {
        const auto& si = state[t][static_cast<std::size_t>(a)];
        const auto& sj = state[t][static_cast<std::size_t>(b)];
        agree = agree && same(si.at(fmt::format("owed to {}", b)),
                              sj.at(fmt::format("received from {}", a)));
        agree = agree && same(sj.at(fmt::format("owed to {}", a)),
                              si.at(fmt::format("received from {}", b)));
        if (lossy) {
          agree = agree && same(si.at("public copy"), sj.at(fmt::format("public copy of {}", a)));
          agree = agree && same(sj.at("public copy"), si.at(fmt::format("public copy of {}", b)));
        }
        moved = moved ||
                !same(si.at(fmt::format("owed to {}", b)), std::vector<float>(problem.d, 0.0f));
      }
    CHECK(agree);
    CHECK(moved);
  }
}

TEST_CASE("fp16 and bf16 D-PSGD stay close to fp32 and send half the bytes") {
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(topo.size(), 1000, 7);
  const auto x0 = start_point(problem.d);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  std::vector<std::uint64_t> bytes(3, 0);
  std::vector<std::vector<std::vector<float>>> results;
  std::vector<ga::RoundStats> stats;
  const char* codecs[] = {"identity", "fp16", "bf16"};
  for (int c = 0; c < 3; ++c) {
    std::vector<std::uint64_t> sent(4, 0);
    results.push_back(gt::run_algorithm(config("dpsgd", 0.05f, 1.0f, codecs[c]), topo, x0, 20, grad,
                                        [&](int rank, std::uint64_t t, ga::Algorithm& a) {
                                          sent[static_cast<std::size_t>(rank)] =
                                              a.totals().bytes_sent;
                                          if (rank == 0 && t == 20) stats.push_back(a.totals());
                                        }));
    bytes[static_cast<std::size_t>(c)] = sent[0];
  }
  REQUIRE(stats.size() == 3);
  for (const auto& st : stats) {
    CHECK(st.rounds == 20);
    CHECK(st.compute_s > 0.0);
    CHECK(st.encode_s > 0.0);
    CHECK(st.decode_s > 0.0);
    CHECK(st.wait_s > 0.0);
  }
  // Two neighbours, 20 rounds, d = 1000: at least the payloads themselves went out.
  CHECK(bytes[0] >= 2u * 20u * 4000u);
  CHECK(static_cast<double>(bytes[1]) < 0.55 * static_cast<double>(bytes[0]));
  CHECK(static_cast<double>(bytes[2]) < 0.55 * static_cast<double>(bytes[0]));
  gt::Models ref;
  for (const auto& v : results[0]) ref.emplace_back(v.begin(), v.end());
  CHECK(gt::max_scaled_difference(results[1], ref) < 5e-3);
  CHECK(gt::max_scaled_difference(results[2], ref) < 3e-2);
  CHECK(gt::max_scaled_difference(results[1], ref) > 0.0);  // the codec did round
}

TEST_CASE("DeepSqueeze, CHOCO-SGD and D²: the mean of the models moves exactly like SGD") {
  const auto topo = gt::make_topo("ring:8");
  const auto n = static_cast<std::size_t>(topo.size());
  const gt::DiagonalQuadratic problem(topo.size(), 500, 8);
  const auto x0 = start_point(problem.d);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  const std::uint64_t rounds = 25;
  const float lr = 0.05f;
  // threshold: messages of varying length, sent exactly as long as the codec wrote them.
  for (std::string codec : {"identity", "qsgd:s=3,scaled=true", "qsgd:s=3", "topk:k=25", "sign",
                            "threshold:tau=0.05"}) {
    for (std::string name : {"deepsqueeze", "choco-sgd", "d2"}) {
      if ((name == "d2") != (codec == "identity")) continue;  // D²'s mean is exact in fp32 only
      CAPTURE(codec);
      CAPTURE(name);
      // hist[t][i]: peer i's model after t rounds.
      std::vector<std::vector<std::vector<float>>> hist(rounds + 1,
                                                        std::vector<std::vector<float>>(n, x0));
      gt::run_algorithm(config(name, lr, 0.3f, codec), topo, x0, rounds, grad,
                        [&](int rank, std::uint64_t t, ga::Algorithm& a) {
                          const auto p = a.params();
                          hist[t][static_cast<std::size_t>(rank)].assign(p.begin(), p.end());
                        });
      double worst = 0.0, spread = 0.0;
      std::vector<float> g(problem.d);
      for (std::uint64_t t = 0; t < rounds; ++t) {
        std::vector<double> expected(problem.d, 0.0), got(problem.d, 0.0);
        for (std::size_t i = 0; i < n; ++i) {
          problem.gradient(static_cast<int>(i), hist[t][i], g);
          for (std::size_t k = 0; k < problem.d; ++k) {
            expected[k] += (static_cast<double>(hist[t][i][k]) - lr * static_cast<double>(g[k])) /
                           static_cast<double>(n);
            got[k] += static_cast<double>(hist[t + 1][i][k]) / static_cast<double>(n);
          }
        }
        for (std::size_t k = 0; k < problem.d; ++k) {
          // Float rounding scales with the peers' models, which may be far larger than their
          // mean (unbiased 2-bit qsgd makes them wander).
          double magnitude = 1.0;
          for (std::size_t i = 0; i < n; ++i)
            magnitude = std::max(magnitude, std::abs(static_cast<double>(hist[t + 1][i][k])));
          worst = std::max(worst, std::abs(got[k] - expected[k]) / magnitude);
          spread = std::max(spread, std::abs(static_cast<double>(hist[t + 1][0][k]) - got[k]));
        }
      }
      CHECK(worst < 2e-5);
      CHECK(spread > 1e-3);  // the peers do disagree: the invariant is not trivial
    }
  }
}

TEST_CASE("DCD-PSGD and CHOCO-SGD: replicas are bit-identical, s_i = sum_j W_ij xhat_j") {
  for (std::string spec : {"ring:8", "erdos-renyi:8,p=0.5,seed=3"}) {
    for (std::string name : {"dcd-psgd", "choco-sgd"}) {
      CAPTURE(spec);
      CAPTURE(name);
      const auto topo = gt::make_topo(spec);
      const auto n = static_cast<std::size_t>(topo.size());
      const auto w = gt::dense_w(topo);
      const gt::DiagonalQuadratic problem(topo.size(), 300, 9);
      const auto x0 = start_point(problem.d);
      const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
        problem.gradient(r, x, g);
      };
      const std::uint64_t rounds = 20;
      const bool dcd = name == "dcd-psgd";
      const char* public_name = dcd ? "x" : "x_hat";
      gt::InprocNetwork network(topo);
      std::vector<std::unique_ptr<RecordingTransport>> rec;
      std::vector<gossip::net::Transport*> ptrs;
      for (auto& t : network.transports) {
        rec.push_back(std::make_unique<RecordingTransport>(*t));
        ptrs.push_back(rec.back().get());
      }
      // pub[t][i]: peer i's public model (x for DCD, x̂ for CHOCO); s[t][i]: its s_i.
      std::vector<std::vector<std::vector<float>>> pub(rounds + 1,
                                                       std::vector<std::vector<float>>(n)),
          s(rounds + 1, std::vector<std::vector<float>>(n));
      gt::run_algorithm_on(config(name, 0.05f, 0.5f, "qsgd:s=15"), topo, ptrs, x0, rounds, grad,
                           [&](int rank, std::uint64_t t, ga::Algorithm& a) {
                             const auto r = static_cast<std::size_t>(rank);
                             const auto p = a.state(public_name);
                             const auto si = a.state("s");
                             pub[t][r].assign(p.begin(), p.end());
                             s[t][r].assign(si.begin(), si.end());
                           });
      // Every neighbour received exactly the bytes the sender sent.
      bool same_bytes = true;
      for (std::size_t i = 0; i < n; ++i) {
        const auto nbs = network.transports[i]->neighbors();
        for (std::uint64_t t = 0; t < rounds; ++t)
          for (std::size_t k = 0; k < nbs.size(); ++k)
            same_bytes = same_bytes &&
                         rec[i]->received[t][k] == rec[static_cast<std::size_t>(nbs[k])]->sent[t];
      }
      CHECK(same_bytes);
      // A replica built by decoding j's messages, as every neighbour of j does, is j's own public
      // model bit for bit.
      auto codec = gossip::kernels::make_codec("qsgd:s=15");
      bool bit_identical = true;
      for (std::size_t j = 0; j < n; ++j) {
        std::vector<float> replica = dcd ? x0 : std::vector<float>(problem.d, 0.0f);
        for (std::uint64_t t = 0; t < rounds; ++t) {
          codec->decode_accumulate(rec[j]->sent[t], 1.0f, replica);
          bit_identical = bit_identical && std::memcmp(replica.data(), pub[t + 1][j].data(),
                                                       replica.size() * sizeof(float)) == 0;
        }
      }
      CHECK(bit_identical);
      double worst = 0.0, scale = 0.0;
      for (std::uint64_t t = 1; t <= rounds; ++t)
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t k = 0; k < problem.d; ++k) {
            double mix = 0.0;
            for (std::size_t j = 0; j < n; ++j) mix += static_cast<double>(w[i][j]) * pub[t][j][k];
            worst = std::max(worst, std::abs(mix - s[t][i][k]) / (1.0 + std::abs(mix)));
            scale = std::max(scale, std::abs(mix));
          }
      CHECK(worst < 1e-5);
      CHECK(scale > 0.1);
    }
  }
}

TEST_CASE("D-PSGD with the gradient overlapped with the exchange gives the same bytes") {
  const auto topo = gt::make_topo("torus:2x4");
  const gt::DiagonalQuadratic problem(topo.size(), 500, 10);
  const auto x0 = start_point(problem.d);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  auto cfg = config("dpsgd", 0.05f, 1.0f, "bf16");
  cfg.momentum = 0.9f;
  cfg.weight_decay = 1e-3f;
  const auto plain = gt::run_algorithm(cfg, topo, x0, 30, grad);
  cfg.overlap_gradient = true;
  std::vector<double> compute(static_cast<std::size_t>(topo.size()), 0.0);
  const auto overlapped =
      gt::run_algorithm(cfg, topo, x0, 30, grad, [&](int r, std::uint64_t, ga::Algorithm& a) {
        compute[static_cast<std::size_t>(r)] = a.totals().compute_s;
      });
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CHECK(std::memcmp(plain[i].data(), overlapped[i].data(), plain[i].size() * sizeof(float)) == 0);
    CHECK(compute[i] > 0.0);
  }
  // A gradient that throws on the worker thread surfaces on the caller's thread.
  const auto one = gt::make_topo("ring:1");
  gt::InprocNetwork net(one);
  auto algo = ga::make_algorithm(cfg, *net.transports[0], one, x0);
  CHECK_THROWS_WITH(algo->step([](std::span<const float>, std::span<float>) {
    throw std::runtime_error("gradient failed");
  }),
                    "gradient failed");
}

TEST_CASE("D-PSGD overlapped with unequal neighbour weights: same bytes, and the reference") {
  // torus:2x4 gives every neighbour the same weight, so a swap of two neighbours' weights in the
  // overlapped combine went unseen. Here every row of W has three different off-diagonal weights.
  std::string toml =
      "name = \"w\"\nmatrix = [[0.4, 0.1, 0.2, 0.3], [0.1, 0.5, 0.25, 0.15], "
      "[0.2, 0.25, 0.5, 0.05], [0.3, 0.15, 0.05, 0.5]]\n";
  for (int r = 0; r < 4; ++r)
    toml += fmt::format("[[peer]]\nrank = {}\nendpoint = \"ipc:///tmp/gossip-w-{}\"\n", r, r);
  const auto topo = gossip::topology::parse_topology(toml, "w.toml");
  REQUIRE(topo.weight(1, 2) != topo.weight(1, 3));
  const gt::DiagonalQuadratic problem(topo.size(), 64, 11);
  const auto x0 = start_point(problem.d);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  const std::uint64_t rounds = 20;
  for (const char* codec : {"identity", "bf16"}) {
    CAPTURE(codec);
    auto cfg = config("dpsgd", 0.05f, 1.0f, codec);
    const auto plain = gt::run_algorithm(cfg, topo, x0, rounds, grad);
    cfg.overlap_gradient = true;
    const auto overlapped = gt::run_algorithm(cfg, topo, x0, rounds, grad);
    for (std::size_t i = 0; i < plain.size(); ++i)
      CHECK(std::memcmp(plain[i].data(), overlapped[i].data(), plain[i].size() * sizeof(float)) ==
            0);
    if (std::string(codec) == "identity") {
      const auto ref = gt::reference_dpsgd(topo, x0, 0.05f, rounds, grad);
      CHECK(gt::max_scaled_difference(overlapped, ref) < 1e-5);
    }
  }
}

TEST_CASE("quasi-global momentum: the buffer averages the model's movement per unit step") {
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(topo.size(), 64, 5, 1.0f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  const auto x0 = start_point(problem.d);
  for (std::string name : {"dpsgd", "choco-sgd"}) {
    CAPTURE(name);
    auto c = config(name, 0.05f, 0.5f, "identity");
    c.momentum = 0.9f;
    c.quasi_global = true;
    const auto n = static_cast<std::size_t>(topo.size());
    std::vector<std::vector<float>> x_before(n, x0), buf_before(n, std::vector<float>(x0.size()));
    std::vector<double> worst(n, 0.0);
    gt::run_algorithm(c, topo, x0, 30, grad, [&](int r, std::uint64_t, ga::Algorithm& algo) {
      const auto i = static_cast<std::size_t>(r);
      const auto x = algo.params();
      const auto buf = algo.state("momentum");
      for (std::size_t k = 0; k < x.size(); ++k) {
        const double want = 0.9 * buf_before[i][k] + 0.1 * (x_before[i][k] - x[k]) / 0.05;
        worst[i] = std::max(worst[i], std::abs(buf[k] - want) / (1.0 + std::abs(want)));
      }
      x_before[i].assign(x.begin(), x.end());
      buf_before[i].assign(buf.begin(), buf.end());
    });
    for (double w : worst) CHECK(w < 1e-4);
  }
}

TEST_CASE("a W whose peers never agree (rho = 1) is refused, saying why") {
  const auto peers = [](int n) {
    std::string t;
    for (int r = 0; r < n; ++r)
      t += fmt::format("[[peer]]\nrank = {}\nendpoint = \"ipc:///tmp/gossip-rho-{}\"\n", r, r);
    return t;
  };
  const auto refused = [&](const std::string& matrix, int n) {
    const auto topo = gossip::topology::parse_topology(
        "name = \"t\"\nmatrix = " + matrix + "\n" + peers(n), "t.toml");
    auto hub = std::make_shared<gossip::net::InprocHub>(topo);
    gossip::net::InprocTransport t(hub, 0);
    const std::vector<float> x0(4, 0.0f);
    std::string what;
    try {
      (void)ga::make_algorithm(config("dpsgd", 0.1f, 1.0f, "identity"), t, topo, x0);
    } catch (const std::invalid_argument& e) {
      what = e.what();
    }
    return what;
  };
  // Two peers that swap models: W = [[0, 1], [1, 0]] has eigenvalue -1.
  CHECK(refused("[[0.0, 1.0], [1.0, 0.0]]", 2).find("W has period 2") != std::string::npos);
  // A 4-cycle with zero self-weights: bipartite, period 2 as well.
  CHECK(refused("[[0.0, 0.5, 0.0, 0.5], [0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5], "
                "[0.5, 0.0, 0.5, 0.0]]",
                4)
            .find("W has period 2") != std::string::npos);
  // A bipartite graph with positive self-weights contracts: accepted.
  CHECK(refused("[[0.5, 0.5], [0.5, 0.5]]", 2).empty());
  // A triangle with zero self-weights is not bipartite: accepted.
  CHECK(refused("[[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]", 3).empty());
  // Best-constant weights may make the diagonal negative; a ring of 4 still contracts.
  const auto ring = gt::make_topo("ring:4,weights=best-constant");
  auto hub = std::make_shared<gossip::net::InprocHub>(ring);
  gossip::net::InprocTransport t(hub, 0);
  const std::vector<float> x0(4, 0.0f);
  CHECK_NOTHROW((void)ga::make_algorithm(config("dpsgd", 0.1f, 1.0f, "identity"), t, ring, x0));
}
