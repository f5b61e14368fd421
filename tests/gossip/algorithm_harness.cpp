#include "algorithm_harness.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace gossip::algorithms::testing {

InprocNetwork::InprocNetwork(const topology::Topology& topo, std::uint32_t exchange_lag)
    : InprocNetwork(topo, [&] {
        net::TransportOptions o;
        o.exchange_lag = exchange_lag;
        return o;
      }()) {}

InprocNetwork::InprocNetwork(const topology::Topology& topo, const AlgorithmConfig& config)
    : InprocNetwork(topo, [&] {
        net::TransportOptions o;
        fit_transport_options(config, o);
        return o;
      }()) {}

InprocNetwork::InprocNetwork(const topology::Topology& topo, net::TransportOptions options)
    : hub(std::make_shared<net::InprocHub>(topo)) {
  // A peer that died of an exception leaves the others waiting: fail the test soon, not in 30 s.
  options.timeout = std::chrono::milliseconds(20000);
  for (int r = 0; r < topo.size(); ++r) {
    transports.push_back(std::make_unique<net::InprocTransport>(hub, r, options));
  }
}

std::vector<std::vector<float>> run_algorithm(const AlgorithmConfig& config,
                                              const topology::Topology& topo,
                                              std::span<const float> x0, std::uint64_t rounds,
                                              const PeerGradient& grad, const Observer& observe) {
  InprocNetwork network(topo, config);
  std::vector<net::Transport*> transports;
  for (auto& t : network.transports) transports.push_back(t.get());
  return run_algorithm_on(config, topo, transports, x0, rounds, grad, observe);
}

std::vector<std::vector<float>> run_algorithm_on(const AlgorithmConfig& config,
                                                 const topology::Topology& topo,
                                                 std::vector<net::Transport*> transports,
                                                 std::span<const float> x0, std::uint64_t rounds,
                                                 const PeerGradient& grad,
                                                 const Observer& observe) {
  const int n = topo.size();
  std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
  run_peers(n, [&](int rank) {
    auto algo = make_algorithm(config, *transports[static_cast<std::size_t>(rank)], topo, x0);
    auto g = [&](std::span<const float> x, std::span<float> gr) { grad(rank, x, gr); };
    std::vector<float> host_x, host_g;  // the gradient's host copies when the state is on a GPU
    for (std::uint64_t t = 0; t < rounds; ++t) {
      if (algo->on_device()) {
        host_x.resize(algo->dim());
        host_g.resize(algo->dim());
        algo->copy_params(host_x);
        grad(rank, host_x, host_g);
        algo->step(host_g);
      } else {
        algo->step(g);
      }
      if (observe) observe(rank, t + 1, *algo);
    }
    auto& x = out[static_cast<std::size_t>(rank)];
    x.resize(algo->dim());
    algo->copy_params(x);
  });
  return out;
}

DiagonalQuadratic::DiagonalQuadratic(int n_, std::size_t d_, std::uint64_t seed, float spread)
    : n(n_), d(d_) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> curvature(0.5f, 2.0f);
  std::normal_distribution<float> centre(0.0f, 1.0f);
  a.assign(static_cast<std::size_t>(n), std::vector<float>(d));
  c.assign(static_cast<std::size_t>(n), std::vector<float>(d));
  std::vector<float> common(d);
  for (float& v : common) v = centre(rng);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t k = 0; k < d; ++k) {
      a[i][k] = curvature(rng);
      c[i][k] = common[k] + spread * centre(rng);
    }
  }
  optimum.assign(d, 0.0);
  for (std::size_t k = 0; k < d; ++k) {
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      num += static_cast<double>(a[i][k]) * c[i][k];
      den += a[i][k];
    }
    optimum[k] = num / den;
  }
}

void DiagonalQuadratic::gradient(int rank, std::span<const float> x, std::span<float> g) const {
  const auto& ai = a[static_cast<std::size_t>(rank)];
  const auto& ci = c[static_cast<std::size_t>(rank)];
  for (std::size_t k = 0; k < d; ++k) g[k] = ai[k] * (x[k] - ci[k]);
}

LeastSquares::LeastSquares(int n_, std::size_t d_, std::size_t m_, std::uint64_t seed, float spread)
    : n(n_), d(d_), m(m_) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto di = static_cast<Eigen::Index>(d);
  const auto mi = static_cast<Eigen::Index>(m);
  Eigen::MatrixXd H = Eigen::MatrixXd::Zero(di, di);
  Eigen::VectorXd rhs = Eigen::VectorXd::Zero(di);
  Eigen::VectorXf common(di);
  for (Eigen::Index k = 0; k < di; ++k) common(k) = normal(rng);
  for (int i = 0; i < n; ++i) {
    Eigen::MatrixXf Ai(mi, di);
    for (Eigen::Index r = 0; r < mi; ++r)
      for (Eigen::Index k = 0; k < di; ++k) Ai(r, k) = normal(rng);
    Eigen::VectorXf xi(di);  // this peer's own solution
    for (Eigen::Index k = 0; k < di; ++k) xi(k) = common(k) + spread * normal(rng);
    Eigen::VectorXf noise(mi);
    for (Eigen::Index r = 0; r < mi; ++r) noise(r) = 0.1f * normal(rng);
    Eigen::VectorXf bi = Ai * xi + noise;
    H += Ai.cast<double>().transpose() * Ai.cast<double>() / static_cast<double>(m);
    rhs += Ai.cast<double>().transpose() * bi.cast<double>() / static_cast<double>(m);
    A.push_back(std::move(Ai));
    b.push_back(std::move(bi));
  }
  optimum = H.ldlt().solve(rhs);
}

void LeastSquares::gradient(int rank, std::span<const float> x, std::span<float> g) const {
  const auto& Ai = A[static_cast<std::size_t>(rank)];
  const auto& bi = b[static_cast<std::size_t>(rank)];
  Eigen::Map<const Eigen::VectorXf> xv(x.data(), static_cast<Eigen::Index>(d));
  Eigen::Map<Eigen::VectorXf> gv(g.data(), static_cast<Eigen::Index>(d));
  gv.noalias() = Ai.transpose() * (Ai * xv - bi) / static_cast<float>(m);
}

double relative_error(std::span<const float> x, std::span<const double> y) {
  double num = 0.0, den = 0.0;
  for (std::size_t k = 0; k < y.size(); ++k) {
    const double e = static_cast<double>(x[k]) - y[k];
    num += e * e;
    den += y[k] * y[k];
  }
  return std::sqrt(num / den);
}

double relative_error(std::span<const float> x, const Eigen::VectorXd& y) {
  return relative_error(x, std::span<const double>(y.data(), static_cast<std::size_t>(y.size())));
}

std::vector<std::vector<float>> dense_w(const topology::Topology& topo, std::uint64_t round) {
  const auto n = static_cast<std::size_t>(topo.size());
  std::vector<std::vector<float>> w(n, std::vector<float>(n, 0.0f));
  for (std::size_t i = 0; i < n; ++i)
    for (const auto& nb : topo.mixing(round)[i])
      w[i][static_cast<std::size_t>(nb.rank)] = static_cast<float>(nb.weight);
  return w;
}

namespace {

Models reference_run(const topology::Topology& topo, std::span<const float> x0, float lr,
                     std::uint64_t rounds, const PeerGradient& grad, bool adapt_then_combine) {
  const auto n = static_cast<std::size_t>(topo.size());
  const std::size_t d = x0.size();
  Models x(n, std::vector<double>(x0.begin(), x0.end()));
  std::vector<float> xf(d), g(d);
  for (std::uint64_t t = 0; t < rounds; ++t) {
    const auto w = dense_w(topo, t);
    Models half(n, std::vector<double>(d));
    Models grads(n, std::vector<double>(d));
    for (std::size_t i = 0; i < n; ++i) {
      // The peer evaluates its gradient at its float model.
      for (std::size_t k = 0; k < d; ++k) xf[k] = static_cast<float>(x[i][k]);
      grad(static_cast<int>(i), xf, g);
      for (std::size_t k = 0; k < d; ++k) {
        grads[i][k] = static_cast<double>(lr) * g[k];
        half[i][k] = adapt_then_combine ? x[i][k] - grads[i][k] : x[i][k];
      }
    }
    Models next(n, std::vector<double>(d, 0.0));
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        if (w[i][j] == 0.0f) continue;
        for (std::size_t k = 0; k < d; ++k) next[i][k] += static_cast<double>(w[i][j]) * half[j][k];
      }
      if (!adapt_then_combine)
        for (std::size_t k = 0; k < d; ++k) next[i][k] -= grads[i][k];
    }
    x = std::move(next);
  }
  return x;
}

}  // namespace

Models reference_dpsgd(const topology::Topology& topo, std::span<const float> x0, float lr,
                       std::uint64_t rounds, const PeerGradient& grad) {
  return reference_run(topo, x0, lr, rounds, grad, false);
}

Models reference_atc(const topology::Topology& topo, std::span<const float> x0, float lr,
                     std::uint64_t rounds, const PeerGradient& grad) {
  return reference_run(topo, x0, lr, rounds, grad, true);
}

Models reference_relaysum(const topology::Topology& topo, std::span<const float> x0, float lr,
                          std::uint64_t rounds, const PeerGradient& grad) {
  const auto n = static_cast<std::size_t>(topo.size());
  const std::size_t d = x0.size();
  Models x(n, std::vector<double>(x0.begin(), x0.end()));
  std::vector<Models> history;  // history[t][k]: y_k of round t
  std::vector<float> xf(d), g(d);
  for (std::uint64_t t = 0; t < rounds; ++t) {
    Models& y = history.emplace_back(n, std::vector<double>(d));
    for (std::size_t k = 0; k < n; ++k) {
      for (std::size_t e = 0; e < d; ++e) xf[e] = static_cast<float>(x[k][e]);
      grad(static_cast<int>(k), xf, g);
      for (std::size_t e = 0; e < d; ++e) y[k][e] = x[k][e] - static_cast<double>(lr) * g[e];
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto hops = topo.graph.distances_from(static_cast<int>(i));
      std::vector<double> sum(d, 0.0);
      for (std::size_t k = 0; k < n; ++k) {
        // Peer k's model reaches i after hops − 1 rounds (its own and a neighbour's at once);
        // before that, x0 stands in for it.
        const auto lag = static_cast<std::uint64_t>(std::max(hops[k] - 1, 0));
        for (std::size_t e = 0; e < d; ++e)
          sum[e] += lag <= t ? history[t - lag][k][e] : static_cast<double>(x0[e]);
      }
      for (std::size_t e = 0; e < d; ++e) x[i][e] = sum[e] / static_cast<double>(n);
    }
  }
  return x;
}

bool bit_equal(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

bool bit_equal(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!bit_equal(a[i], b[i])) return false;
  return true;
}

std::uint64_t fnv_of_bits(const std::vector<std::vector<float>>& models) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& m : models) {
    const auto* p = reinterpret_cast<const unsigned char*>(m.data());
    for (std::size_t i = 0; i < m.size() * sizeof(float); ++i) {
      h ^= p[i];
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

double max_scaled_difference(const std::vector<std::vector<float>>& x, const Models& ref) {
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    for (std::size_t k = 0; k < ref[i].size(); ++k)
      worst = std::max(
          worst, std::abs(static_cast<double>(x[i][k]) - ref[i][k]) / (1.0 + std::abs(ref[i][k])));
  return worst;
}

}  // namespace gossip::algorithms::testing
