// Overlapped D-PSGD (AlgorithmConfig::staleness = τ): in communication round c,
// x_i ← W_ii x_i + Σ_j W_ij x_j^{c−τ} − γ d_i with x_j^s = x_0 for s < 0. Tests: τ = 0 is the
// bulk-synchronous rule bit for bit; the runtime against a dense float64 reference (local steps
// included); the in-flight mass M moves exactly like SGD (float64 reference, and the runtime's
// state within float rounding); ZeroMQ and in-process runs are bit-identical; convergence on
// least squares; the instability the characteristic polynomial predicts; save/resume mid-run is
// bit-identical; one message per neighbour per round; the exchange overlaps the computation;
// algorithms without a stale rule refuse τ > 0.

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "algorithm_harness.hpp"
#include "gossip/algorithms/registry.hpp"
#include "gossip/zmq_transport.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

// The rule in float64 over all peers in one thread: rounds t = 0 … T−1, round t communicates when
// (t + 1) mod H = 0 (communication round c = t / H) and then mixes the neighbours' models of
// communication round c − τ (x_0 before 0); other rounds step locally. Also returns the in-flight
// mass M after every round (M[0] at the start) and γ Σ_i d_i of every round.
struct StaleReference {
  gt::Models x;
  std::vector<std::vector<double>> mass;  // M(t), t = 0 … T
  std::vector<std::vector<double>> step;  // γ Σ_i d_i^t
  std::vector<std::vector<double>> sum;   // Σ_i x_i^t, t = 0 … T
};

// 1 − W_jj is the mass peer j's message of communication round s − τ carries (the sum of the
// weights its receivers give it: W of the round it was sent in; before round 0 x_0, weighed as
// the round that receives it).
double in_flight_self_weight(const gossip::topology::Topology& topo, int j, std::uint64_t s,
                             std::uint64_t tau) {
  return gossip::topology::row_weight(topo.mixing(s < tau ? s : s - tau), j, j);
}

StaleReference reference_stale(const gossip::topology::Topology& topo, std::span<const float> x0,
                               float lr, std::uint64_t rounds, std::uint32_t tau, std::uint32_t h,
                               const gt::PeerGradient& grad) {
  const int n = topo.size();
  const auto un = static_cast<std::size_t>(n);
  const std::size_t d = x0.size();
  StaleReference out;
  out.x.assign(un, std::vector<double>(x0.begin(), x0.end()));
  // sent[c][j]: peer j's model at the start of communication round c.
  std::vector<gt::Models> sent;
  auto mass = [&](std::uint64_t completed) {  // communication rounds done so far
    std::vector<double> m(d, 0.0);
    for (std::size_t i = 0; i < un; ++i) {
      for (std::size_t k = 0; k < d; ++k) m[k] += out.x[i][k];
      for (std::uint64_t s = completed; s < completed + tau; ++s) {  // s − τ in c − τ … c − 1
        const double off = 1.0 - in_flight_self_weight(topo, static_cast<int>(i), s, tau);
        for (std::size_t k = 0; k < d; ++k) {
          const double v = s < tau ? static_cast<double>(x0[k]) : sent[s - tau][i][k];
          m[k] += off * v;
        }
      }
    }
    return m;
  };
  auto sum = [&] {
    std::vector<double> m(d, 0.0);
    for (const auto& xi : out.x)
      for (std::size_t k = 0; k < d; ++k) m[k] += xi[k];
    return m;
  };
  out.mass.push_back(mass(0));
  out.sum.push_back(sum());
  std::vector<float> xf(d), gf(d);
  for (std::uint64_t t = 0; t < rounds; ++t) {
    gt::Models g(un, std::vector<double>(d));
    std::vector<double> total(d, 0.0);
    for (std::size_t i = 0; i < un; ++i) {
      for (std::size_t k = 0; k < d; ++k) xf[k] = static_cast<float>(out.x[i][k]);
      grad(static_cast<int>(i), xf, gf);
      for (std::size_t k = 0; k < d; ++k) {
        g[i][k] = gf[k];
        total[k] += static_cast<double>(lr) * gf[k];
      }
    }
    out.step.push_back(total);
    if ((t + 1) % h != 0) {
      for (std::size_t i = 0; i < un; ++i)
        for (std::size_t k = 0; k < d; ++k) out.x[i][k] -= static_cast<double>(lr) * g[i][k];
    } else {
      const std::uint64_t c = t / h;
      sent.push_back(out.x);
      gt::Models next(un, std::vector<double>(d, 0.0));
      // The own model with this round's W_ii; a neighbour's message of round c − τ with the W_ij
      // of the round it was sent in (x_0 before round 0: this round's).
      const auto& own = topo.mixing(c);
      const auto& theirs = topo.mixing(c < tau ? c : c - tau);
      for (std::size_t i = 0; i < un; ++i) {
        const auto ii = static_cast<int>(i);
        const double w_ii = gossip::topology::row_weight(own, ii, ii);
        for (std::size_t k = 0; k < d; ++k) next[i][k] += w_ii * out.x[i][k];
        for (const auto& nb : theirs[i]) {
          const auto j = static_cast<std::size_t>(nb.rank);
          if (j == i) continue;
          for (std::size_t k = 0; k < d; ++k) {
            const double v = c < tau ? static_cast<double>(x0[k]) : sent[c - tau][j][k];
            next[i][k] += nb.weight * v;
          }
        }
        for (std::size_t k = 0; k < d; ++k) next[i][k] -= static_cast<double>(lr) * g[i][k];
      }
      out.x = std::move(next);
    }
    out.mass.push_back(mass((t + 1) / h));
    out.sum.push_back(sum());
  }
  return out;
}

ga::AlgorithmConfig stale_config(std::uint32_t tau, std::uint32_t h = 1) {
  ga::AlgorithmConfig c;
  c.name = "dpsgd";
  c.lr = 0.05f;
  c.staleness = tau;
  c.local_steps = h;
  return c;
}

// F_i(x) = ½ a ‖x − c_i‖², the same curvature a on every peer, so that the linear iteration
// splits into the modes of W (the stability test).
struct SharedCurvature {
  float a;
  std::vector<std::vector<float>> c;
  void gradient(int rank, std::span<const float> x, std::span<float> g) const {
    const auto& ci = c[static_cast<std::size_t>(rank)];
    for (std::size_t k = 0; k < x.size(); ++k) g[k] = a * (x[k] - ci[k]);
  }
};

}  // namespace

TEST_CASE("staleness 0: the models and the settings hash are those of bulk-synchronous D-PSGD") {
  // The golden value of algorithm-local-steps (captured before local steps and staleness
  // existed): 11 rounds of D-PSGD on ring:4 with fp16 and momentum.
  const auto topo = gt::make_topo("ring:4");
  gt::DiagonalQuadratic problem(4, 33, 7, 0.5f);
  std::vector<float> x0(33, 0.2f);
  ga::AlgorithmConfig cfg;
  cfg.name = "dpsgd";
  cfg.codec = "fp16";
  cfg.lr = 0.05f;
  cfg.consensus_step = 0.5f;
  cfg.momentum = 0.5f;
  cfg.seed = 3;
  cfg.staleness = 0;
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  CHECK(gt::fnv_of_bits(gt::run_algorithm(cfg, topo, x0, 11, grad)) == 0x8cbe04100d591279ULL);
  cfg.staleness = 1;
  CHECK(gt::fnv_of_bits(gt::run_algorithm(cfg, topo, x0, 11, grad)) != 0x8cbe04100d591279ULL);

  ga::AlgorithmConfig s;
  s.name = "choco-sgd";
  s.codec = "qsgd:s=3,scaled=true";
  CHECK(ga::settings_hash(s, 100) == 0xef21e5a7bb775877ULL);
  s.name = "dpsgd";
  s.codec = "identity";
  const auto base = ga::settings_hash(s, 100);
  s.staleness = 1;
  const auto one = ga::settings_hash(s, 100);
  s.staleness = 2;
  CHECK(base != one);
  CHECK(one != ga::settings_hash(s, 100));
}

TEST_CASE("the runtime follows the float64 rule; the in-flight mass moves exactly like SGD") {
  const int n = 6;
  const auto un = static_cast<std::size_t>(n);
  const std::size_t d = 16;
  gt::DiagonalQuadratic problem(n, d, 5, 1.0f);
  std::vector<float> x0(d);
  for (std::size_t k = 0; k < d; ++k) x0[k] = 0.1f * static_cast<float>(k % 5) - 0.2f;
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  struct Case {
    const char* topology;
    std::uint32_t tau, h;
    bool varied = false;  // a schedule whose phases weigh differently: W^(t) = a_t I + (1 − a_t) P
  };
  for (const Case& cs :
       {Case{"ring:6", 1, 1}, Case{"ring:6", 3, 1}, Case{"torus:2x3", 2, 3},
        Case{"erdos-renyi:6,p=0.6,seed=2", 2, 1}, Case{"one-peer-exponential:6", 1, 1},
        Case{"one-peer-exponential:6", 2, 2}, Case{"one-peer-exponential:6", 4, 1},
        Case{"one-peer-exponential:6", 2, 1, true}}) {
    CAPTURE(cs.topology);
    CAPTURE(cs.tau);
    CAPTURE(cs.h);
    CAPTURE(cs.varied);
    auto topo = gt::make_topo(cs.topology);
    if (cs.varied) {
      // Still doubly stochastic in every phase, but a message must be weighed with the W of the
      // round it was sent in, not of the round that mixes it: the reference and M tell them apart.
      for (std::size_t t = 0; t < topo.schedule.size(); ++t) {
        const double a = 0.3 + 0.2 * static_cast<double>(t);
        for (std::size_t i = 0; i < topo.schedule[t].size(); ++i)
          for (auto& nb : topo.schedule[t][i])
            nb.weight = static_cast<std::size_t>(nb.rank) == i ? a : 1.0 - a;
      }
    }
    const std::uint64_t T = 20;
    auto cfg = stale_config(cs.tau, cs.h);
    const auto ref = reference_stale(topo, x0, cfg.lr, T, cs.tau, cs.h, grad);

    // float64: M(t+1) = M(t) − γ Σ_i d_i^t, to rounding.
    for (std::uint64_t t = 0; t < T; ++t) {
      for (std::size_t k = 0; k < d; ++k) {
        const double moved = ref.mass[t + 1][k] - (ref.mass[t][k] - ref.step[t][k]);
        CHECK(std::abs(moved) <= 1e-12 * (1.0 + std::abs(ref.mass[t][k])));
      }
    }
    // Σ_i x_i alone does not move like SGD while messages are in flight: the in-flight terms
    // are what make M exact (the test would pass vacuously otherwise).
    double sum_alone = 0.0;
    for (std::uint64_t t = 0; t < T; ++t) {
      for (std::size_t k = 0; k < d; ++k) {
        sum_alone =
            std::max(sum_alone, std::abs(ref.sum[t + 1][k] - (ref.sum[t][k] - ref.step[t][k])));
      }
    }
    CHECK(sum_alone > 1e-3);

    // The runtime: every peer's x and the models it keeps as sent (x_sent_k holds the model of
    // the communication rounds s ≡ k mod τ still in flight, x_0 before round 0) give M exactly
    // as the definition does; it must move as γ Σ d within float rounding.
    std::vector<std::vector<std::vector<double>>> part(un);  // [rank][round] peer's share of M
    std::vector<std::vector<std::vector<double>>> steps(un);
    auto record = [&](int r, ga::Algorithm& algo) {
      const std::uint64_t completed = part[static_cast<std::size_t>(r)].size() / cs.h;
      const auto x = algo.state("x");
      std::vector<double> m(x.begin(), x.end());
      // The message of communication round s − τ, received in round s, is in slot s mod τ.
      for (std::uint64_t s = completed; s < completed + cs.tau; ++s) {
        const double off = 1.0 - in_flight_self_weight(topo, r, s, cs.tau);
        const auto sent = algo.state(fmt::format("x_sent_{}", s % cs.tau));
        for (std::size_t e = 0; e < d; ++e) m[e] += off * sent[e];
      }
      part[static_cast<std::size_t>(r)].push_back(std::move(m));
    };
    gt::InprocNetwork net(topo, cfg);
    std::vector<std::vector<float>> models(un);
    gt::run_peers(n, [&](int r) {
      auto algo = ga::make_algorithm(cfg, *net.transports[static_cast<std::size_t>(r)], topo, x0);
      record(r, *algo);
      for (std::uint64_t t = 0; t < T; ++t) {
        algo->step([&](std::span<const float> x, std::span<float> g) {
          grad(r, x, g);
          std::vector<double> s(d);
          for (std::size_t e = 0; e < d; ++e) s[e] = static_cast<double>(cfg.lr) * g[e];
          steps[static_cast<std::size_t>(r)].push_back(std::move(s));
        });
        record(r, *algo);
      }
      models[static_cast<std::size_t>(r)] = algo->state("x");
    });
    CHECK(gt::max_scaled_difference(models, ref.x) < 2e-5);
    double worst = 0.0;
    for (std::uint64_t t = 0; t < T; ++t) {
      for (std::size_t e = 0; e < d; ++e) {
        double before = 0, after = 0, step = 0;
        for (std::size_t i = 0; i < un; ++i) {
          before += part[i][t][e];
          after += part[i][t + 1][e];
          step += steps[i][t][e];
        }
        worst = std::max(worst, std::abs(after - (before - step)) / (1.0 + std::abs(before)));
      }
    }
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("ZeroMQ and in-process transports give bit-identical models with staleness") {
  struct Case {
    const char* topology;
    std::uint32_t tau, h;
  };
  int case_id = 0;
  for (const Case& cs :
       {Case{"ring:8", 1, 1}, Case{"ring:3", 3, 1}, Case{"torus:2x4", 2, 2}, Case{"ring:1", 2, 1},
        Case{"one-peer-exponential:8", 2, 1}, Case{"one-peer-exponential:5", 1, 2}}) {
    CAPTURE(cs.topology);
    CAPTURE(cs.tau);
    auto spec = gossip::topology::parse_spec(cs.topology);
    spec.endpoint =
        fmt::format("ipc:///tmp/gossip-stale-zmq-{}-{}-{{rank}}", ::getpid(), case_id++);
    const auto topo = gossip::topology::make_topology(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 301, 13, 0.3f);
    const std::vector<float> x0(problem.d, 0.1f);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    auto cfg = stale_config(cs.tau, cs.h);
    cfg.codec = "fp16";
    cfg.momentum = 0.5f;
    const std::uint64_t T = 30;
    const auto inproc = gt::run_algorithm(cfg, topo, x0, T, grad);
    gossip::net::TransportOptions options;
    options.timeout = std::chrono::milliseconds(20000);
    options.connect_timeout = std::chrono::milliseconds(20000);
    ga::fit_transport_options(cfg, options);
    std::vector<std::vector<float>> over_zmq(inproc.size());
    gt::run_peers(topo.size(), [&](int r) {
      gossip::net::ZmqTransport transport(topo, r, options);
      auto algo = ga::make_algorithm(cfg, transport, topo, x0);
      auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
      for (std::uint64_t t = 0; t < T; ++t) algo->step(g);
      over_zmq[static_cast<std::size_t>(r)] = algo->state("x");
    });
    CHECK(gt::bit_equal(inproc, over_zmq));
  }
}

TEST_CASE("least squares: τ = 1, 2 approach the optimum like τ = 0, closer as the step halves") {
  // The harness problem of algorithm-convergence: d = 20, 10 heterogeneous rows per peer.
  const gt::LeastSquares problem(8, 20, 10, 41);
  const auto topo = gt::make_topo("ring:8");
  const std::vector<float> x0(problem.d, 0.0f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  auto error = [&](const std::vector<std::vector<float>>& models) {
    double worst = 0.0;
    for (const auto& m : models) {
      const double e = gt::relative_error(m, problem.optimum);
      worst = std::isfinite(e) ? std::max(worst, e) : INFINITY;
    }
    return worst;
  };
  const double start = error({x0});
  for (std::uint32_t h : {1u, 2u}) {
    std::vector<double> at_04;
    for (std::uint32_t tau : {0u, 1u, 2u}) {
      CAPTURE(h);
      CAPTURE(tau);
      std::vector<double> err;
      for (float lr : {0.04f, 0.02f}) {
        auto cfg = stale_config(tau, h);
        cfg.lr = lr;
        err.push_back(error(gt::run_algorithm(cfg, topo, x0, 1500 * h, grad)));
      }
      MESSAGE("H = " << h << ", tau = " << tau << ": relative error at lr 0.04 / 0.02: " << err[0]
                     << " / " << err[1] << " (start " << start << ")");
      CHECK(err[0] < 0.2 * start);
      CHECK(err[1] < 0.7 * err[0]);  // the O(γ) floor of heterogeneous data shrinks with γ
      at_04.push_back(err[0]);
    }
    // At a small step staleness costs little: within a factor 1.5 of the synchronous error.
    CHECK(at_04[1] < 1.5 * at_04[0]);
    CHECK(at_04[2] < 1.5 * at_04[0]);
  }
}

TEST_CASE("stability: overlap diverges above the step the characteristic polynomial allows") {
  // complete:4 with W = J/4 and F_i = ½ a ‖x − c_i‖². For W's eigenvalue λ a mode evolves as
  // z^{τ+1} = (w − γa) z^τ + (λ − w), w = W_ii = 1/4. τ = 0: stable iff |λ − γa| < 1 for
  // λ ∈ {1, 0}, so for γa < 1. τ = 1, mean mode λ = 1: z² − (w − γa) z − (1 − w); at z = −1 it is
  // 2w − γa, so a root leaves the unit circle at γa = 2w = 0.5.
  const auto topo = gt::make_topo("complete:4");
  const std::size_t d = 8;
  SharedCurvature problem{1.0f, {}};
  for (int i = 0; i < 4; ++i) {
    problem.c.emplace_back(d);
    for (std::size_t k = 0; k < d; ++k)
      problem.c.back()[k] = static_cast<float>(i) - 1.5f + 0.1f * static_cast<float>(k);
  }
  const std::vector<float> x0(d, 0.5f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  // The worst distance of a model from the optimum of Σ F_i (the mean of the c_i) after 400
  // rounds. A stable run ends at its fixed point, γ(c_i − c̄)/(1 + γ) from the optimum (< 1 here,
  // the O(γ) disagreement of a constant step); an unstable mode with |z| ≥ 1.029 grows past 10^3.
  auto distance = [&](float lr, std::uint32_t tau) {
    auto cfg = stale_config(tau);
    cfg.lr = lr;
    const auto models = gt::run_algorithm(cfg, topo, x0, 400, grad);
    double worst = 0.0;
    for (const auto& m : models) {
      for (std::size_t k = 0; k < d; ++k) {
        const double opt = 0.1 * static_cast<double>(k);
        worst = std::max(worst, std::isfinite(m[k]) ? std::abs(m[k] - opt) : INFINITY);
      }
    }
    return worst;
  };
  // Below the bound both converge; above it only the synchronous rule does.
  CHECK(distance(0.45f, 0) < 1.0);
  CHECK(distance(0.45f, 1) < 1.0);
  CHECK(distance(0.55f, 0) < 1.0);
  CHECK(distance(0.55f, 1) > 1e3);
  CHECK(distance(0.8f, 0) < 1.0);
  CHECK(distance(0.8f, 1) > 1e6);
}

TEST_CASE("save, load into fresh transports and continue: bit-identical to not stopping") {
  const int n = 4;
  const auto un = static_cast<std::size_t>(n);
  const gt::DiagonalQuadratic problem(n, 120, 9, 0.5f);
  const std::vector<float> x0(problem.d, 0.3f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  struct Case {
    std::uint32_t tau, h;
    std::uint64_t stop;  // rounds before the save
  };
  // Mid-run, before the first stale message (stop < τ), and mid-period of local steps.
  for (const Case& cs : {Case{2, 1, 7}, Case{3, 1, 2}, Case{1, 3, 8}, Case{2, 2, 5}}) {
    CAPTURE(cs.tau);
    CAPTURE(cs.h);
    CAPTURE(cs.stop);
    const auto topo = gt::make_topo("ring:4");
    auto cfg = stale_config(cs.tau, cs.h);
    cfg.codec = "fp16";
    cfg.momentum = 0.9f;
    const std::uint64_t T = 16;
    const auto straight = gt::run_algorithm(cfg, topo, x0, T, grad);

    std::vector<std::string> saved(un);
    {
      gt::InprocNetwork net(topo, cfg);
      gt::run_peers(n, [&](int r) {
        auto algo = ga::make_algorithm(cfg, *net.transports[static_cast<std::size_t>(r)], topo, x0);
        auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
        for (std::uint64_t t = 0; t < cs.stop; ++t) algo->step(g);
        std::ostringstream out;
        algo->save(out);
        saved[static_cast<std::size_t>(r)] = out.str();
      });
    }
    std::vector<std::vector<float>> resumed(un);
    std::vector<std::uint64_t> messages(un);
    gt::InprocNetwork net(topo, cfg);
    gt::run_peers(n, [&](int r) {
      const std::vector<float> other(problem.d, -1.0f);  // the state must come from the file
      auto& transport = *net.transports[static_cast<std::size_t>(r)];
      auto algo = ga::make_algorithm(cfg, transport, topo, other);
      std::istringstream in(saved[static_cast<std::size_t>(r)]);
      algo->load(in);
      auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
      for (std::uint64_t t = cs.stop; t < T; ++t) algo->step(g);
      messages[static_cast<std::size_t>(r)] = transport.counters().messages_sent;
      resumed[static_cast<std::size_t>(r)] = algo->state("x");
    });
    CHECK(gt::bit_equal(straight, resumed));
    // The resumed peers re-send the messages that were in flight (those of the last τ
    // communication rounds before the save), once, to each of their 2 neighbours, then one per
    // neighbour per communication round. The hello is the first message.
    const std::uint64_t done = cs.stop / cs.h;  // communication rounds before the save
    const std::uint64_t in_flight = std::min<std::uint64_t>(done, cs.tau);
    const std::uint64_t after = T / cs.h - done;  // communication rounds after it
    for (std::size_t i = 0; i < un; ++i) CHECK(messages[i] == 2 + 2 * (in_flight + after));
  }
}

TEST_CASE("bytes: one message per neighbour per round, as without staleness") {
  const auto topo = gt::make_topo("torus:3x3");  // degree 4
  const gt::DiagonalQuadratic problem(9, 257, 2);
  const std::vector<float> x0(problem.d, 0.0f);
  auto grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  for (const char* codec : {"identity", "bf16"}) {
    CAPTURE(codec);
    // τ = 0: bytes of one round (the last; the first has the hellos) and of the whole run.
    std::vector<std::uint64_t> sent0(9), total0(9);
    auto cfg = stale_config(0);
    cfg.codec = codec;
    gt::run_algorithm(cfg, topo, x0, 9, grad, [&](int r, std::uint64_t, ga::Algorithm& algo) {
      sent0[static_cast<std::size_t>(r)] = algo.last_round().bytes_sent;
      total0[static_cast<std::size_t>(r)] = algo.totals().bytes_received;
    });
    for (std::uint32_t tau : {1u, 3u}) {
      CAPTURE(tau);
      cfg.staleness = tau;
      gt::run_algorithm(cfg, topo, x0, 9, grad,
                        [&](int r, std::uint64_t round, ga::Algorithm& algo) {
                          const auto i = static_cast<std::size_t>(r);
                          CHECK(sent0[i] > 0);
                          CHECK(algo.last_round().bytes_sent == sent0[i]);
                          // What arrives is counted when it arrives, so only the run's total is
                          // exact up to the messages of the last τ rounds, sent but never needed.
                          // Every peer's message has the same size and W is symmetric: a round
                          // receives what it sends.
                          if (round == 9) {
                            CHECK(algo.totals().bytes_received <= total0[i]);
                            CHECK(algo.totals().bytes_received >= total0[i] - tau * sent0[i]);
                          }
                        });
    }
  }
}

TEST_CASE("the exchange overlaps the computation: a message has τ rounds of compute to arrive") {
  // 60 ms of emulated latency and 80 ms of "compute" per round: synchronous rounds wait about
  // the latency for the neighbours' messages, overlapped ones find them there. Generous margins:
  // only sleeps, no CPU, so a loaded machine does not change the picture.
  const auto topo = gt::make_topo("ring:4");
  const std::vector<float> x0(64, 0.0f);
  auto wait_per_round = [&](std::uint32_t tau) {
    auto hub = std::make_shared<gossip::net::InprocHub>(topo);
    gossip::net::TransportOptions options;
    options.timeout = std::chrono::milliseconds(20000);
    options.link.all.latency = std::chrono::milliseconds(60);
    options.exchange_lag = tau;
    std::vector<double> wait(4);
    const std::uint64_t T = 6;
    gt::run_peers(4, [&](int r) {
      gossip::net::InprocTransport transport(hub, r, options);
      auto algo = ga::make_algorithm(stale_config(tau), transport, topo, x0);
      double waited = 0.0;
      for (std::uint64_t t = 0; t < T; ++t) {
        algo->step([](std::span<const float>, std::span<float> g) {
          std::this_thread::sleep_for(std::chrono::milliseconds(80));
          std::fill(g.begin(), g.end(), 0.0f);
        });
        if (t > 0) waited += algo->last_round().wait_s;  // round 0 has the handshake
      }
      wait[static_cast<std::size_t>(r)] = waited / static_cast<double>(T - 1);
    });
    return *std::max_element(wait.begin(), wait.end());
  };
  const double sync = wait_per_round(0), overlapped = wait_per_round(1);
  MESSAGE("wait per round: tau 0 " << sync * 1e3 << " ms, tau 1 " << overlapped * 1e3 << " ms");
  CHECK(sync > 0.045);
  CHECK(overlapped < 0.5 * sync);
}

TEST_CASE("algorithms without a stale rule, a receive window and plain transports refuse τ > 0") {
  const auto topo = gt::make_topo("ring:4");
  const std::vector<float> x0(10, 0.0f);
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.staleness = 1;
    if (a.staleness) {
      CHECK_NOTHROW(ga::check_staleness(a, 1));
      continue;
    }
    CHECK_NOTHROW(ga::check_staleness(a, 0));
    gt::InprocNetwork net(topo);
    const auto tree = gt::make_topo("grid:4");
    gt::InprocNetwork tree_net(tree);
    try {
      if (a.topology == ga::TopologyNeed::tree) {
        (void)ga::make_algorithm(cfg, *tree_net.transports[0], tree, x0);
      } else {
        (void)ga::make_algorithm(cfg, *net.transports[0], topo, x0);
      }
      FAIL("no error");
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      CHECK(what.find("staleness = 1") != std::string::npos);
      CHECK(what.find(std::string(a.name) + " has none") != std::string::npos);
      CHECK(what.find("dpsgd") != std::string::npos);
    }
  }
  // Credits ask for the payload of the round being received: no pacing with a lag.
  auto hub = std::make_shared<gossip::net::InprocHub>(topo);
  gossip::net::TransportOptions options;
  options.receive_window = 1;
  options.exchange_lag = 2;
  CHECK_THROWS_WITH_AS(gossip::net::InprocTransport(hub, 0, options),
                       doctest::Contains("receive window"), std::invalid_argument);
  // The transport must keep messages as long as the algorithm leaves them in flight.
  {
    gt::InprocNetwork net(topo, 1);
    CHECK_THROWS_WITH_AS((void)ga::make_algorithm(stale_config(2), *net.transports[0], topo, x0),
                         doctest::Contains("exchange_lag = 2 (it has 1)"), std::invalid_argument);
    // And know the interval between exchanges before the handshake sorts frames by round.
    CHECK_THROWS_WITH_AS((void)ga::make_algorithm(stale_config(1, 3), *net.transports[1], topo, x0),
                         doctest::Contains("local_steps 3 needs a transport made with "
                                           "TransportOptions::exchange_interval = 3 (it has 1)"),
                         std::invalid_argument);
  }
  // A receive round further back than the lag, or ahead of the send, is a usage error.
  options.receive_window = 0;
  options.exchange_lag = 1;
  gossip::net::InprocTransport plain(hub, 1, options);
  const std::byte payload[4] = {};
  auto ignore = [](std::size_t, std::span<const std::byte>) {};
  CHECK_THROWS_WITH_AS(plain.exchange_lagged(5, payload, 3, ignore),
                       doctest::Contains("at most 1 exchanges"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(plain.exchange_lagged(5, payload, 6, ignore),
                       doctest::Contains("receives round 6"), std::invalid_argument);
}
