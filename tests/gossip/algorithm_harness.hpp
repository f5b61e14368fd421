#pragma once
// Shared by the algorithm tests: n peers as threads over the in-process transport, synthetic
// problems with known optima, and dense reference implementations of the update rules.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <Eigen/Dense>

#include "gossip/algorithms/algorithm.hpp"
#include "gossip/algorithms/registry.hpp"
#include "gossip/inproc_transport.hpp"
#include "topology/generators.hpp"

namespace gossip::algorithms::testing {

inline topology::Topology make_topo(std::string_view spec) {
  return topology::make_topology(topology::parse_spec(spec));
}

// Runs body(rank) on one thread per peer; rethrows the first exception once all have ended.
template <class F>
void run_peers(int n, F&& body) {
  std::vector<std::thread> threads;
  std::exception_ptr first;
  std::mutex m;
  threads.reserve(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        std::lock_guard lock(m);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

// One in-process transport per peer of `topo`, sharing one hub; `exchange_lag` as the
// algorithm's staleness needs it (TransportOptions::exchange_lag).
struct InprocNetwork {
  explicit InprocNetwork(const topology::Topology& topo, std::uint32_t exchange_lag = 0);
  // The options `config`'s algorithm needs (fit_transport_options: lag, exchange interval, all
  // links, direct lag).
  InprocNetwork(const topology::Topology& topo, const AlgorithmConfig& config);
  InprocNetwork(const topology::Topology& topo, net::TransportOptions options);
  std::shared_ptr<net::InprocHub> hub;
  std::vector<std::unique_ptr<net::Transport>> transports;
};

// Gradient of peer `rank` at x into g.
using PeerGradient = std::function<void(int rank, std::span<const float> x, std::span<float> g)>;
// Called on the peer's thread after each step, with the round just finished (1-based).
using Observer = std::function<void(int rank, std::uint64_t round, Algorithm& algo)>;

// Runs `rounds` steps of `config` on every peer of `topo` from x0. Returns the final models. With
// config.cuda_device set, the gradient is computed on host copies of the model.
std::vector<std::vector<float>> run_algorithm(const AlgorithmConfig& config,
                                              const topology::Topology& topo,
                                              std::span<const float> x0, std::uint64_t rounds,
                                              const PeerGradient& grad,
                                              const Observer& observe = {});

// Same, over transports the caller made (wrapped, recorded, ...).
std::vector<std::vector<float>> run_algorithm_on(const AlgorithmConfig& config,
                                                 const topology::Topology& topo,
                                                 std::vector<net::Transport*> transports,
                                                 std::span<const float> x0, std::uint64_t rounds,
                                                 const PeerGradient& grad,
                                                 const Observer& observe = {});

// F_i(x) = ½ Σ_k a_ik (x_k − c_ik)²: separable, so cheap at d = 10⁴; a_ik ~ U(0.5, 2),
// c_ik = c_k + spread·N(0, 1), c_k ~ N(0, 1): heterogeneous across peers by `spread`.
// Optimum of Σ_i F_i: x*_k = Σ_i a_ik c_ik / Σ_i a_ik.
struct DiagonalQuadratic {
  DiagonalQuadratic(int n, std::size_t d, std::uint64_t seed, float spread = 1.0f);
  void gradient(int rank, std::span<const float> x, std::span<float> g) const;
  int n;
  std::size_t d;
  std::vector<std::vector<float>> a, c;
  std::vector<double> optimum;
};

// F_i(x) = 1/(2m) ‖A_i x − b_i‖² with Gaussian A_i (m × d), b_i = A_i (u + spread·v_i) + noise
// for a common u and per-peer v_i (heterogeneous data); optimum of Σ_i F_i from the normal
// equations (Eigen).
struct LeastSquares {
  LeastSquares(int n, std::size_t d, std::size_t m, std::uint64_t seed, float spread = 0.3f);
  void gradient(int rank, std::span<const float> x, std::span<float> g) const;
  int n;
  std::size_t d, m;
  std::vector<Eigen::MatrixXf> A;
  std::vector<Eigen::VectorXf> b;
  Eigen::VectorXd optimum;
};

// ‖x − y‖ / ‖y‖.
double relative_error(std::span<const float> x, std::span<const double> y);
double relative_error(std::span<const float> x, const Eigen::VectorXd& y);

// The dense W of `topo` (W^(round) of a time-varying one) in float (the weights the algorithms
// use).
std::vector<std::vector<float>> dense_w(const topology::Topology& topo, std::uint64_t round = 0);

// Reference runs over all peers in one thread, in double. x[i] is peer i's model.
using Models = std::vector<std::vector<double>>;
// D-PSGD: x_i ← Σ_j W_ij x_j − γ g_i(x_i), with W^(t) in round t on a time-varying topology.
Models reference_dpsgd(const topology::Topology& topo, std::span<const float> x0, float lr,
                       std::uint64_t rounds, const PeerGradient& grad);
// Adapt then combine: x_i ← Σ_j W_ij (x_j − γ g_j(x_j)).
Models reference_atc(const topology::Topology& topo, std::span<const float> x0, float lr,
                     std::uint64_t rounds, const PeerGradient& grad);

// RelaySum on a tree: x_i ← (1/n) Σ_k y_k of round t − max(d(i,k) − 1, 0), y_k = x_k − γ g_k(x_k),
// x0 for a peer whose model has not reached i yet. Kept as a history of every round's y.
Models reference_relaysum(const topology::Topology& topo, std::span<const float> x0, float lr,
                          std::uint64_t rounds, const PeerGradient& grad);

// Same length and the same bits (an empty pair is equal; memcmp never sees a null pointer).
bool bit_equal(std::span<const float> a, std::span<const float> b);
// Every peer's model bit for bit.
bool bit_equal(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b);
// FNV-1a over the bytes of every peer's model in rank order: a golden value for bit-exact runs.
std::uint64_t fnv_of_bits(const std::vector<std::vector<float>>& models);

// max over peers and coordinates of |x − ref| / (1 + |ref|).
double max_scaled_difference(const std::vector<std::vector<float>>& x, const Models& ref);

}  // namespace gossip::algorithms::testing
