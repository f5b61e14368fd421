#pragma once
// Spectral diagnostics of a mixing matrix: what a topology costs in consensus rounds.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "topology/topology.hpp"

namespace gossip::topology {

struct InspectOptions {
  int dense_limit = 2000;        // up to this many peers (and always below 3): dense eigensolver
  int contraction_rounds = 300;  // rounds of x <- Wx for the measured contraction
  std::uint64_t seed = 1;        // start vector of the measured check
  std::uint64_t diameter_work_limit = 400'000'000;  // n * edges above which diameter is a bound
};

struct SpectralReport {
  int peers = 0;
  std::size_t edges = 0;
  int degree_min = 0;
  double degree_mean = 0.0;
  int degree_max = 0;
  int diameter = 0;
  bool diameter_exact = true;       // false: a four-sweep BFS lower bound
  std::vector<double> eigenvalues;  // all of W, descending; empty for the sparse solver
  // "dense (Eigen)", "sparse Lanczos", or "dense (Eigen, the sparse solver failed)": the
  // fallback when Lanczos cannot certify its answer for at most 2000 peers.
  std::string solver;
  std::optional<double> lambda_2;  // unset for a single peer
  double lambda_n = 1.0;
  double rho = 0.0;                        // max(|lambda_2|, |lambda_n|)
  double spectral_gap = 1.0;               // 1 - rho
  double beta = 0.0;                       // ||I - W||_2 = 1 - lambda_n
  std::optional<long long> rounds_to_1e6;  // unset when rho >= 1: disagreement never shrinks
  double measured_contraction = 0.0;  // observed ||x_{t+1} - mean|| / ||x_t - mean||, late rounds
  int measured_rounds = 0;
  double min_diagonal = 0.0;     // smallest W_ii; negative under best-constant on some graphs
  double min_offdiagonal = 0.0;  // smallest non-zero W_ij, i != j
};

// Static topologies: a time-varying one is std::invalid_argument (it has no single W; see
// inspect_schedule). Throws std::runtime_error when the sparse solver cannot certify lambda_2 or
// lambda_n above 2000 peers (below, the dense solver answers instead), and rather than report an
// eigenvalue outside W's Gershgorin interval.
// Also throws when the measured contraction clearly exceeds rho (contraction_problem): the
// solvers certify that lambda_2 and lambda_n are eigenvalues, not that they are the extremes.
SpectralReport inspect(const Topology& topo, const InspectOptions& opt = {});

// What a time-varying topology's schedule does (`gossip topo inspect`). Its union graph is
// described by the graph fields of a SpectralReport; this covers the rounds. P is the product
// over one period, P = W^(period-1) ... W^(1) W^(0), which is what a period does to the models.
struct ScheduleReport {
  std::size_t period = 0;
  // Over every round of the period and every peer: how many peers one sends to and takes from.
  int send_degree_min = 0, send_degree_max = 0;
  int receive_degree_min = 0, receive_degree_max = 0;
  bool doubly_stochastic = true;  // every W^(t), rows and columns summing to 1 within 1e-12
  // P and its diagnostics need the dense n x n product: computed up to dense_limit peers.
  bool product_computed = false;
  double product_deviation = 0.0;  // max |P_ij - 1/n|
  bool exact_average = false;      // P = (1/n) 11^T within 1e-12: every period averages exactly
  // ||P - J||_2, J = (1/n) 11^T: the worst disagreement left after a period, per unit. sqrt of
  // the rho of the symmetric doubly stochastic P^T P (inspect() on it); 0 when exact_average.
  double rho_period = 0.0;
  std::optional<long long> rounds_to_1e6;  // whole periods to shrink disagreement 1e6 times
  // Observed ||x - mean|| ratio over a period (and its period-th root: per round), geometric
  // mean of the last quarter of the periods of x <- W^(t) x from a seeded random x.
  double measured_contraction_period = 0.0;
  double measured_contraction = 0.0;
  int measured_periods = 0;
};

// Throws std::invalid_argument for a static topology, std::runtime_error when the measured
// contraction exceeds rho_period (as inspect()).
ScheduleReport inspect_schedule(const Topology& topo, const InspectOptions& opt = {});

// The product over one period, dense and row-major (n x n doubles): P = W^(p-1) ... W^(0).
std::vector<double> period_product(const Topology& topo);

// The graph part of a SpectralReport (peers, edges, degrees, diameter) of any topology: of a
// time-varying one, its union graph.
SpectralReport graph_report(const Topology& topo, const InspectOptions& opt = {});

// Why a report's measured contraction contradicts its rho, "" when it does not. For a symmetric W
// and x orthogonal to the ones vector, ||W x|| <= rho ||x||: every measured ratio is at most rho
// up to rounding (and W's asymmetry, at most the file tolerance per weight), so a measured
// contraction above rho + 1e-6 means rho is some eigenvalue of W but not the largest in modulus.
std::string contraction_problem(const SpectralReport& r);

// Rounds to shrink disagreement by `factor` at contraction rho: ceil(ln factor / ln(1/rho)).
std::optional<long long> rounds_to_shrink(double rho, double factor, int peers);

// Largest and smallest non-zero eigenvalue of the graph Laplacian L = D - A (connected graph),
// as best-constant weights need them: dense up to `dense_limit` peers, else Lanczos. Throws
// std::runtime_error rather than return values outside d_max + 1 <= lambda_max <= 2 d_max,
// 0 <= lambda_fiedler <= lambda_max.
struct LaplacianExtremes {
  double lambda_max = 0.0;
  double lambda_fiedler = 0.0;
};
LaplacianExtremes laplacian_extremes(const Graph& g, int dense_limit = 2000);

}  // namespace gossip::topology
