// Local steps (AlgorithmConfig::local_steps = H): round t communicates when (t + 1) mod H = 0,
// the other rounds step locally and send nothing. H = 1 is the algorithm as it was; the bytes
// are those of the communication rounds only; D-PSGD on W = J gives equal models after every
// exchange; the exchange does not move the mean; all-reduce with H > 1 is local SGD.

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "algorithm_harness.hpp"
#include "gossip/algorithms/registry.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

const char* topology_for(std::string_view name) {
  return ga::find_algorithm(name).topology == ga::TopologyNeed::tree ? "grid:4" : "ring:4";
}

}  // namespace

TEST_CASE("local_steps = 1: the models and the settings hash are bit-identical to before") {
  // Captured from the build before local steps existed (commit "One registry of algorithms"):
  // 11 rounds on 4 peers, the FNV-1a of every peer's final model bits. Momentum and a random
  // codec, so that every part of the round counts.
  struct Golden {
    const char* name;
    const char* topology;
    const char* codec;
    std::uint64_t hash;
  };
  const Golden golden[] = {
      {"dpsgd", "ring:4", "fp16", 0x8cbe04100d591279ULL},
      {"dcd-psgd", "ring:4", "qsgd:s=7", 0x5af6fd3e2d25c251ULL},
      {"deepsqueeze", "ring:4", "qsgd:s=7", 0x26811b1bfedc861eULL},
      {"choco-sgd", "ring:4", "qsgd:s=7", 0xdd2fccf2593e7aeeULL},
      {"d2", "ring:4", "identity", 0x94943d76ec62eee4ULL},
      {"relaysum", "grid:4", "qsgd:s=7", 0xfdde21047cad9e2eULL},
      {"allreduce", "ring:4", "identity", 0xa22d174318cca005ULL},
  };
  // Every row that takes local steps (the later centralized ones, DGA and DoubleSqueeze, do not).
  std::size_t with_local_steps = 0;
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) with_local_steps += a.local_steps;
  CHECK(std::size(golden) == with_local_steps);
  for (const Golden& g : golden) {
    CAPTURE(g.name);
    const auto topo = gt::make_topo(g.topology);
    gt::DiagonalQuadratic problem(4, 33, 7, 0.5f);
    std::vector<float> x0(33, 0.2f);
    ga::AlgorithmConfig cfg;
    cfg.name = g.name;
    cfg.codec = g.codec;
    cfg.lr = 0.05f;
    cfg.consensus_step = 0.5f;
    cfg.momentum = 0.5f;
    cfg.seed = 3;
    cfg.local_steps = 1;
    const auto models = gt::run_algorithm(
        cfg, topo, x0, 11,
        [&](int r, std::span<const float> x, std::span<float> gr) { problem.gradient(r, x, gr); });
    CHECK(gt::fnv_of_bits(models) == g.hash);
  }
  // The settings hash before local steps (also recomputed from its byte layout in Python): the
  // handshakes and saved states of runs without local steps do not change.
  ga::AlgorithmConfig s;
  s.name = "choco-sgd";
  s.codec = "qsgd:s=3,scaled=true";
  CHECK(ga::settings_hash(s, 100) == 0xef21e5a7bb775877ULL);
  s.local_steps = 2;
  CHECK(ga::settings_hash(s, 100) != 0xef21e5a7bb775877ULL);
}

TEST_CASE("bytes: exactly the communication rounds' worth; local rounds send nothing") {
  const std::uint64_t T = 11, H = 3;  // communication rounds 2, 5, 8: ⌊T/H⌋ = 3 of them
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    if (!a.local_steps) continue;  // refused: tested below
    CAPTURE(a.name);
    const auto topo = gt::make_topo(topology_for(a.name));
    gt::DiagonalQuadratic problem(4, 40, 3);
    std::vector<float> x0(40, 0.0f);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.lr = 0.05f;
    cfg.consensus_step = 0.5f;
    auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    // Per peer: bytes of one round with H = 1 (identity codec: the same every round).
    std::vector<std::uint64_t> per_round(4), total(4), communicated(4);
    gt::run_algorithm(cfg, topo, x0, 1, grad, [&](int r, std::uint64_t, ga::Algorithm& algo) {
      per_round[static_cast<std::size_t>(r)] = algo.last_round().bytes_sent;
    });
    cfg.local_steps = H;
    gt::run_algorithm(cfg, topo, x0, T, grad, [&](int r, std::uint64_t round, ga::Algorithm& algo) {
      const auto i = static_cast<std::size_t>(r);
      const auto& last = algo.last_round();
      if (round % H == 0) {
        ++communicated[i];
        CHECK(last.bytes_sent == per_round[i]);
      } else {
        CHECK(last.bytes_sent == 0);
        CHECK(last.bytes_received == 0);
        CHECK(last.wait_s == 0.0);
        CHECK(last.encode_s == 0.0);
        CHECK(last.decode_s == 0.0);
      }
      total[i] = algo.totals().bytes_sent;
    });
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(per_round[i] > 0);
      CHECK(communicated[i] == T / H);
      CHECK(total[i] == (T / H) * per_round[i]);
    }
  }
}

TEST_CASE("D-PSGD with local steps: the dense reference, the mean, and W = J equalizes") {
  const int n = 4;
  const auto un = static_cast<std::size_t>(n);
  const std::size_t d = 24;
  const std::uint32_t H = 4;
  const std::uint64_t T = 13;
  const float lr = 0.1f;
  gt::DiagonalQuadratic problem(n, d, 11, 1.0f);
  std::vector<float> x0(d, 0.1f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  for (const char* spec : {"ring:4", "complete:4"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const auto W = gt::dense_w(topo);
    ga::AlgorithmConfig cfg;
    cfg.name = "dpsgd";
    cfg.lr = lr;
    cfg.local_steps = H;
    // Every peer's model after each round.
    std::vector<std::vector<std::vector<float>>> after(T, std::vector<std::vector<float>>(un));
    const auto models = gt::run_algorithm(cfg, topo, x0, T, grad,
                                          [&](int r, std::uint64_t round, ga::Algorithm& a) {
                                            after[round - 1][static_cast<std::size_t>(r)].assign(
                                                a.params().begin(), a.params().end());
                                          });
    // The rule in double: x_i ← Σ_j W_ij x_j − γ g_i on communication rounds, else x_i − γ g_i.
    gt::Models x(un, std::vector<double>(x0.begin(), x0.end()));
    for (std::uint64_t t = 0; t < T; ++t) {
      const bool comm = (t + 1) % H == 0;
      gt::Models next = x;
      for (std::size_t i = 0; i < un; ++i) {
        std::vector<float> xf(x[i].begin(), x[i].end()), gf(d);
        grad(static_cast<int>(i), xf, gf);
        for (std::size_t k = 0; k < d; ++k) {
          double mixed = x[i][k];
          if (comm) {
            mixed = 0;
            for (std::size_t j = 0; j < un; ++j) mixed += static_cast<double>(W[i][j]) * x[j][k];
          }
          next[i][k] = mixed - static_cast<double>(lr) * gf[k];
        }
      }
      x = std::move(next);
      // Observed, with the gradients the peers computed (same inputs, same bits): y_i = x_i − γ g_i
      // from the models before the round. Local step or exchange (columns of W sum to 1), the
      // round moves the mean only by the steps: mean(x after) = mean(y).
      const auto& before = t == 0 ? std::vector<std::vector<float>>(un, x0) : after[t - 1];
      std::vector<std::vector<double>> y(un, std::vector<double>(d));
      for (std::size_t i = 0; i < un; ++i) {
        std::vector<float> gf(d);
        grad(static_cast<int>(i), before[i], gf);
        for (std::size_t k = 0; k < d; ++k)
          y[i][k] = static_cast<double>(before[i][k]) - static_cast<double>(lr) * gf[k];
      }
      for (std::size_t k = 0; k < d; ++k) {
        double mean_y = 0, mean_after = 0;
        for (std::size_t i = 0; i < un; ++i) {
          mean_after += after[t][i][k];
          mean_y += y[i][k];
        }
        CHECK(std::abs(mean_after - mean_y) <= 1e-6 * (1 + std::abs(mean_y)));
      }
      if (comm && std::string(spec) == "complete:4") {
        // W = J: right after an exchange every peer holds the same average (its own step of the
        // round aside): x_i + γ g_i is the same for every i.
        std::vector<float> g0(d), gi(d);
        grad(0, before[0], g0);
        for (std::size_t i = 1; i < un; ++i) {
          grad(static_cast<int>(i), before[i], gi);
          for (std::size_t k = 0; k < d; ++k) {
            const double a0 = after[t][0][k] + static_cast<double>(lr) * g0[k];
            const double ai = after[t][i][k] + static_cast<double>(lr) * gi[k];
            CHECK(std::abs(ai - a0) <= 1e-6 * (1 + std::abs(a0)));
          }
        }
      }
    }
    CHECK(gt::max_scaled_difference(models, x) < 1e-5);
  }
}

TEST_CASE("all-reduce with local steps is local SGD: models averaged every H rounds, identical") {
  const int n = 4;
  const auto un = static_cast<std::size_t>(n);
  const std::size_t d = 30;
  const std::uint32_t H = 3;
  const std::uint64_t T = 10;
  const float lr = 0.07f;
  const auto topo = gt::make_topo("ring:4");
  gt::DiagonalQuadratic problem(n, d, 21, 1.0f);
  std::vector<float> x0(d, -0.3f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  ga::AlgorithmConfig cfg;
  cfg.name = "allreduce";
  cfg.lr = lr;
  cfg.local_steps = H;
  std::vector<std::vector<std::vector<float>>> after(T, std::vector<std::vector<float>>(un));
  const auto models =
      gt::run_algorithm(cfg, topo, x0, T, grad, [&](int r, std::uint64_t round, ga::Algorithm& a) {
        after[round - 1][static_cast<std::size_t>(r)].assign(a.params().begin(), a.params().end());
      });
  // Local SGD directly, in double: x_i ← x_i − γ g_i every round, then the mean on rounds
  // with (t + 1) mod H = 0.
  gt::Models x(un, std::vector<double>(x0.begin(), x0.end()));
  for (std::uint64_t t = 0; t < T; ++t) {
    for (std::size_t i = 0; i < un; ++i) {
      std::vector<float> xf(x[i].begin(), x[i].end()), gf(d);
      grad(static_cast<int>(i), xf, gf);
      for (std::size_t k = 0; k < d; ++k) x[i][k] -= static_cast<double>(lr) * gf[k];
    }
    if ((t + 1) % H == 0) {
      for (std::size_t k = 0; k < d; ++k) {
        double mean = 0;
        for (std::size_t i = 0; i < un; ++i) mean += x[i][k] / n;
        for (std::size_t i = 0; i < un; ++i) x[i][k] = mean;
      }
      // The ring all-reduce hands every peer the same bytes: the models are bit-identical.
      for (std::size_t i = 1; i < un; ++i)
        CHECK(std::memcmp(after[t][i].data(), after[t][0].data(), d * sizeof(float)) == 0);
    } else if (t + 1 < H) {
      CHECK(after[t][1] != after[t][0]);  // before the first average the models differ
    }
  }
  CHECK(gt::max_scaled_difference(models, x) < 1e-5);
}

TEST_CASE("rows without local steps refuse local_steps > 1, naming the algorithm") {
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    if (a.local_steps) continue;
    CAPTURE(a.name);
    const auto topo = gt::make_topo("ring:4");
    gt::InprocNetwork net(topo);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.local_steps = 2;
    const std::vector<float> x0(8, 0.0f);
    std::string err;
    try {
      ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    } catch (const std::invalid_argument& e) {
      err = e.what();
    }
    CHECK(err.find(std::string(a.name) + " does not take local steps (local_steps = 2)") !=
          std::string::npos);
  }
  CHECK_FALSE(ga::find_algorithm("dga").local_steps);
  CHECK_FALSE(ga::find_algorithm("doublesqueeze").local_steps);
}
