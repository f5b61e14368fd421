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

// Throws std::runtime_error when the sparse solver cannot certify lambda_2 or lambda_n above 2000
// peers (below, the dense solver answers instead), and rather than report an eigenvalue outside
// W's Gershgorin interval.
// Also throws when the measured contraction clearly exceeds rho (contraction_problem): the
// solvers certify that lambda_2 and lambda_n are eigenvalues, not that they are the extremes.
SpectralReport inspect(const Topology& topo, const InspectOptions& opt = {});

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
