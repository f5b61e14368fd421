// D-PSGD on a time-varying topology (the one-peer exponential graph): the rule
// x_i <- 1/2 x_i + 1/2 x_{i - 2^k} - gamma g_i against a dense reference, convergence, bytes per
// round, bit-identical resume and transports, and the algorithms that refuse it.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "algorithm_harness.hpp"
#include "gossip/frame.hpp"
#include "gossip/zmq_transport.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

ga::AlgorithmConfig dpsgd(float lr, std::string codec = "identity") {
  ga::AlgorithmConfig c;
  c.name = "dpsgd";
  c.lr = lr;
  c.codec = std::move(codec);
  c.seed = 17;
  return c;
}

double worst_error(const std::vector<std::vector<float>>& x, const Eigen::VectorXd& optimum) {
  double worst = 0.0;
  for (const auto& xi : x) worst = std::max(worst, gt::relative_error(xi, optimum));
  return worst;
}

}  // namespace

TEST_CASE("one-peer exponential D-PSGD follows x_i <- (x_i + x_{i-2^k}) / 2 - gamma g_i") {
  for (const char* spec :
       {"one-peer-exponential:8", "one-peer-exponential:6", "one-peer-exponential:2"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 64, 5);
    std::vector<float> x0(problem.d);
    for (std::size_t k = 0; k < x0.size(); ++k) x0[k] = 0.01f * static_cast<float>(k);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const auto x = gt::run_algorithm(dpsgd(0.05f), topo, x0, 25, grad);
    const auto ref = gt::reference_dpsgd(topo, x0, 0.05f, 25, grad);
    CHECK(gt::max_scaled_difference(x, ref) < 2e-5);
    // The gradient computed during the exchange changes no bit.
    auto overlapped = dpsgd(0.05f);
    overlapped.overlap_gradient = true;
    const auto y = gt::run_algorithm(overlapped, topo, x0, 25, grad);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(gt::bit_equal(x[i], y[i]));
  }
  // And the reference itself is not the static rule: with the exponential graph's W instead the
  // models differ (the test would pass a transport that ignored the schedule otherwise).
  const auto one_peer = gt::make_topo("one-peer-exponential:8");
  const auto expo = gt::make_topo("exponential:8");
  const gt::DiagonalQuadratic problem(8, 16, 5);
  const std::vector<float> x0(problem.d, 0.0f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  CHECK(gt::max_scaled_difference(gt::run_algorithm(dpsgd(0.05f), one_peer, x0, 5, grad),
                                  gt::reference_dpsgd(expo, x0, 0.05f, 5, grad)) > 1e-3);
}

TEST_CASE(
    "one-peer exponential D-PSGD reaches the least-squares optimum, closer as the step "
    "halves; a period of 8 peers averages exactly") {
  const auto topo = gt::make_topo("one-peer-exponential:8");
  const gt::LeastSquares problem(8, 20, 10, 41);
  const std::vector<float> x0(problem.d, 0.0f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  const double start = worst_error({x0}, problem.optimum);
  std::vector<double> err;
  for (float lr : {0.08f, 0.04f, 0.02f}) {
    err.push_back(worst_error(gt::run_algorithm(dpsgd(lr), topo, x0, 1500, grad), problem.optimum));
  }
  MESSAGE("relative error at lr 0.08 / 0.04 / 0.02: " << err[0] << " / " << err[1] << " / "
                                                      << err[2] << " (start " << start << ")");
  CHECK(err[0] < 0.2 * start);
  CHECK(err[1] < 0.7 * err[0]);
  CHECK(err[2] < 0.7 * err[1]);
  // With a zero step the rounds only mix: after one period (3 rounds) every model is the
  // average of the start models, to float rounding.
  std::vector<std::vector<float>> starts(8, std::vector<float>(4));
  for (int i = 0; i < 8; ++i)
    for (int k = 0; k < 4; ++k)
      starts[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)] =
          static_cast<float>(i * i - 3 * k);
  std::vector<std::vector<float>> mixed(8);
  gt::InprocNetwork net(topo);
  gt::run_peers(8, [&](int r) {
    const auto i = static_cast<std::size_t>(r);
    auto algo = ga::make_algorithm(dpsgd(0.0f), *net.transports[i], topo, starts[i]);
    const std::vector<float> zero(4, 0.0f);
    for (int t = 0; t < 3; ++t) algo->step(zero);
    mixed[i].assign(algo->params().begin(), algo->params().end());
  });
  for (int k = 0; k < 4; ++k) {
    double mean = 0.0;
    for (int i = 0; i < 8; ++i)
      mean += starts[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)];
    mean /= 8;
    for (int i = 0; i < 8; ++i)
      CHECK(mixed[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)] ==
            doctest::Approx(mean).epsilon(1e-6));
  }
}

TEST_CASE(
    "one-peer exponential D-PSGD: one message of wire + 64 bytes each way per round, any "
    "codec") {
  const auto topo = gt::make_topo("one-peer-exponential:6");
  const gt::DiagonalQuadratic problem(6, 1000, 9);
  const std::vector<float> x0(problem.d, 0.5f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  for (std::string codec : {"identity", "fp16", "bf16"}) {
    CAPTURE(codec);
    const std::uint64_t wire = gossip::kernels::make_codec(codec)->wire_size(problem.d);
    const std::uint64_t frame = wire + gossip::net::kFrameHeaderSize;
    std::vector<std::string> bad(6);
    std::vector<std::uint64_t> received(6);
    constexpr std::uint64_t kRounds = 7;
    gt::run_algorithm(dpsgd(0.05f, codec), topo, x0, kRounds, grad,
                      [&](int r, std::uint64_t round, ga::Algorithm& algo) {
                        // Sent in the round itself; received whenever it arrives (a frame may come
                        // a round or more early), so the received bytes are checked over the run.
                        if (algo.last_round().bytes_sent != frame)
                          bad[static_cast<std::size_t>(r)] = fmt::format(
                              "round {}: {} bytes sent", round, algo.last_round().bytes_sent);
                        received[static_cast<std::size_t>(r)] = algo.totals().bytes_received;
                      });
    for (int r = 0; r < 6; ++r) {
      CAPTURE(r);
      CHECK(bad[static_cast<std::size_t>(r)] == "");
      // The hellos of its links (the union graph), then one frame per round.
      std::uint64_t hellos = 0;
      for (int j : topo.graph.neighbors(r))
        hellos += gossip::net::kFrameHeaderSize + 48 +
                  topo.peers[static_cast<std::size_t>(j)].endpoint.size();
      CHECK(received[static_cast<std::size_t>(r)] == hellos + kRounds * frame);
    }
  }
}

TEST_CASE("algorithms whose rule needs one fixed symmetric W refuse a time-varying topology") {
  const auto topo = gt::make_topo("one-peer-exponential:4");
  const std::vector<float> x0(8, 0.0f);
  struct Case {
    const char* name;
    const char* why;
  };
  for (const Case c : {Case{"choco-sgd", "s_i = sum_j W_ij x^_j"},
                       Case{"dcd-psgd", "only while W stays the same every round"},
                       Case{"deepsqueeze", "one fixed symmetric W"},
                       Case{"d2", "one fixed symmetric W with eigenvalues above -1/3"},
                       Case{"relaysum", "one fixed tree"}}) {
    CAPTURE(c.name);
    CHECK_FALSE(ga::time_varying_refusal(c.name).empty());
    gt::InprocNetwork net(topo);
    ga::AlgorithmConfig cfg = dpsgd(0.1f);
    cfg.name = c.name;
    cfg.consensus_step = 0.5f;
    std::string error;
    try {
      ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    } catch (const std::invalid_argument& e) {
      error = e.what();
    }
    CHECK(error.find(std::string(c.name) + " cannot run on the time-varying topology "
                                           "one-peer-exponential:4") != std::string::npos);
    CHECK(error.find(c.why) != std::string::npos);
    CHECK(error.find("use dpsgd") != std::string::npos);
  }
  CHECK(ga::time_varying_refusal("dpsgd").empty());
  CHECK(ga::time_varying_refusal("allreduce").empty());
  // All-reduce uses no W: it runs (over its ring) and every model stays the same.
  const gt::DiagonalQuadratic problem(4, 8, 3);
  ga::AlgorithmConfig ar = dpsgd(0.1f);
  ar.name = "allreduce";
  const auto x = gt::run_algorithm(
      ar, topo, x0, 5,
      [&](int r, std::span<const float> xs, std::span<float> g) { problem.gradient(r, xs, g); });
  for (const auto& xi : x) CHECK(gt::bit_equal(xi, x[0]));
}

TEST_CASE("one-peer exponential D-PSGD: save, load and continue is bit-identical") {
  const auto topo = gt::make_topo("one-peer-exponential:8");  // period 3
  const gt::DiagonalQuadratic problem(8, 100, 12);
  const std::vector<float> x0(problem.d, 0.3f);
  auto cfg = dpsgd(0.05f, "fp16");  // a random codec: the round keys its RNG too
  cfg.momentum = 0.9f;
  const std::uint64_t first = 7, second = 8;  // 7 is not a multiple of the period
  std::vector<std::string> saved(8);
  std::vector<std::vector<float>> straight(8), resumed(8);
  {
    gt::InprocNetwork net(topo);
    gt::run_peers(8, [&](int r) {
      const auto i = static_cast<std::size_t>(r);
      auto algo = ga::make_algorithm(cfg, *net.transports[i], topo, x0);
      auto g = [&](std::span<const float> x, std::span<float> gr) { problem.gradient(r, x, gr); };
      for (std::uint64_t t = 0; t < first; ++t) algo->step(g);
      std::ostringstream out;
      algo->save(out);
      saved[i] = out.str();
      for (std::uint64_t t = 0; t < second; ++t) algo->step(g);
      straight[i].assign(algo->params().begin(), algo->params().end());
    });
  }
  {
    gt::InprocNetwork net(topo);
    gt::run_peers(8, [&](int r) {
      const auto i = static_cast<std::size_t>(r);
      auto algo = ga::make_algorithm(cfg, *net.transports[i], topo, std::vector<float>(100, -1.0f));
      std::istringstream in(saved[i]);
      algo->load(in);
      auto g = [&](std::span<const float> x, std::span<float> gr) { problem.gradient(r, x, gr); };
      for (std::uint64_t t = 0; t < second; ++t) algo->step(g);
      resumed[i].assign(algo->params().begin(), algo->params().end());
    });
  }
  for (std::size_t i = 0; i < 8; ++i) CHECK(gt::bit_equal(resumed[i], straight[i]));
  // A state saved on the static exponential graph does not load here: the hash covers the
  // schedule.
  const auto expo = gt::make_topo("exponential:8");
  gt::InprocNetwork net(expo);
  std::string error;
  gt::run_peers(8, [&](int r) {
    auto algo = ga::make_algorithm(cfg, *net.transports[static_cast<std::size_t>(r)], expo, x0);
    if (r != 0) return;
    std::istringstream in(saved[0]);
    try {
      algo->load(in);
    } catch (const ga::StateError& e) {
      error = e.what();
    }
  });
  CHECK(error.find("config hash") != std::string::npos);
}

TEST_CASE("one-peer exponential D-PSGD: ZeroMQ and in-process runs are bit-identical") {
  int case_id = 0;
  for (const char* text : {"one-peer-exponential:8", "one-peer-exponential:5"}) {
    CAPTURE(text);
    auto spec = gossip::topology::parse_spec(text);
    spec.endpoint =
        fmt::format("ipc:///tmp/gossip-onepeer-zmq-{}-{}-{{rank}}", ::getpid(), case_id++);
    const auto topo = gossip::topology::make_topology(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 777, 31, 0.3f);
    const std::vector<float> x0(problem.d, 0.1f);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    auto cfg = dpsgd(0.05f, "fp16");
    cfg.momentum = 0.5f;
    const auto inproc = gt::run_algorithm(cfg, topo, x0, 40, grad);
    gossip::net::TransportOptions options;
    options.timeout = std::chrono::milliseconds(20000);
    options.connect_timeout = std::chrono::milliseconds(20000);
    std::vector<std::vector<float>> over_zmq(inproc.size());
    std::vector<std::uint64_t> extra_messages(inproc.size());
    gt::run_peers(topo.size(), [&](int r) {
      gossip::net::ZmqTransport transport(topo, r, options);
      auto algo = ga::make_algorithm(cfg, transport, topo, x0);
      auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
      for (int t = 0; t < 40; ++t) algo->step(g);
      const auto i = static_cast<std::size_t>(r);
      over_zmq[i].assign(algo->params().begin(), algo->params().end());
      // One exchange frame out and in per round, after the hellos to its links.
      const auto& c = transport.counters();
      extra_messages[i] = (c.messages_sent - transport.links().size() - 40) +
                          (c.messages_received - transport.links().size() - 40);
    });
    for (std::size_t i = 0; i < inproc.size(); ++i) {
      CHECK(gt::bit_equal(over_zmq[i], inproc[i]));
      CHECK(extra_messages[i] == 0);
    }
  }
}

TEST_CASE("one-peer exponential D-PSGD with local steps: one phase of the schedule per exchange") {
  // With H local steps the exchanges are rounds H-1, 2H-1, ...; keyed by the round number the
  // phase k = t mod 3 would repeat for H = 3 (only pairs would ever mix). One phase per exchange
  // makes a period of exchanges (3H rounds) average 8 models exactly with a zero step, and not
  // one round less.
  const auto topo = gt::make_topo("one-peer-exponential:8");
  for (std::uint32_t h : {2u, 3u}) {
    CAPTURE(h);
    std::vector<std::vector<float>> starts(8, std::vector<float>(3));
    for (int i = 0; i < 8; ++i)
      for (int k = 0; k < 3; ++k)
        starts[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)] =
            static_cast<float>(i * i + 5 * k);
    auto config = dpsgd(0.0f);
    config.local_steps = h;
    std::vector<std::vector<float>> early(8), mixed(8);
    gt::InprocNetwork net(topo, config);
    gt::run_peers(8, [&](int r) {
      const auto i = static_cast<std::size_t>(r);
      auto algo = ga::make_algorithm(config, *net.transports[i], topo, starts[i]);
      const std::vector<float> zero(3, 0.0f);
      for (std::uint32_t t = 0; t + 1 < 3 * h; ++t) algo->step(zero);
      early[i].assign(algo->params().begin(), algo->params().end());
      algo->step(zero);
      mixed[i].assign(algo->params().begin(), algo->params().end());
    });
    for (int k = 0; k < 3; ++k) {
      double mean = 0.0;
      for (int i = 0; i < 8; ++i)
        mean += starts[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)];
      mean /= 8;
      double early_gap = 0.0;
      for (int i = 0; i < 8; ++i) {
        const auto u = static_cast<std::size_t>(i);
        CHECK(mixed[u][static_cast<std::size_t>(k)] == doctest::Approx(mean).epsilon(1e-6));
        early_gap = std::max(
            early_gap, std::abs(static_cast<double>(early[u][static_cast<std::size_t>(k)]) - mean));
      }
      CHECK(early_gap > 1.0);  // two exchanges of three do not average yet
    }
  }
}
