#include "topology/spectral.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>

#include <Spectra/SymEigsSolver.h>
#include <Eigen/Dense>
#include <Eigen/Sparse>

namespace gossip::topology {

namespace {

using Matvec = std::function<void(const double*, double*)>;

// A symmetric operator for Spectra given by its matrix-vector product.
class LinearOperator {
 public:
  using Scalar = double;
  LinearOperator(Eigen::Index n, Matvec mv) : n_(n), mv_(std::move(mv)) {}
  Eigen::Index rows() const { return n_; }
  Eigen::Index cols() const { return n_; }
  void perform_op(const double* x, double* y) const { mv_(x, y); }

 private:
  Eigen::Index n_;
  Matvec mv_;
};

// Below this many peers the dense solver is used whatever the limit: Spectra needs
// 1 <= nev < ncv <= n, and for n = 1, 2 the Krylov space is the whole space anyway.
constexpr int kMinSparse = 3;

// Largest algebraic eigenvalue of a symmetric operator, by implicitly restarted Lanczos (n >= 3).
double largest_eigenvalue(Eigen::Index n, Matvec mv) {
  LinearOperator op(n, std::move(mv));
  const Eigen::Index ncv = std::min<Eigen::Index>(n, 30);
  Spectra::SymEigsSolver<LinearOperator> eigs(op, 1, ncv);
  eigs.init();
  eigs.compute(Spectra::SortRule::LargestAlge, 5000, 1e-12);
  if (eigs.info() != Spectra::CompInfo::Successful)
    throw std::runtime_error("sparse eigensolver did not converge");
  return eigs.eigenvalues()(0);
}

// Subtracts the component along the all-ones vector (the known eigenvector of W and L).
void remove_mean(double* y, Eigen::Index n) {
  double s = 0.0;
  for (Eigen::Index k = 0; k < n; ++k) s += y[k];
  const double mean = s / static_cast<double>(n);
  for (Eigen::Index k = 0; k < n; ++k) y[k] -= mean;
}

Eigen::SparseMatrix<double, Eigen::RowMajor> sparse_w(const Topology& t) {
  std::vector<Eigen::Triplet<double>> trip;
  for (int i = 0; i < t.size(); ++i)
    for (const auto& nb : t.W[static_cast<std::size_t>(i)])
      trip.emplace_back(i, nb.rank, nb.weight);
  Eigen::SparseMatrix<double, Eigen::RowMajor> m(t.size(), t.size());
  m.setFromTriplets(trip.begin(), trip.end());
  return m;
}

Eigen::SparseMatrix<double, Eigen::RowMajor> laplacian(const Graph& g) {
  std::vector<Eigen::Triplet<double>> trip;
  for (int i = 0; i < g.size(); ++i) {
    trip.emplace_back(i, i, g.degree(i));
    for (int j : g.neighbors(i)) trip.emplace_back(i, j, -1.0);
  }
  Eigen::SparseMatrix<double, Eigen::RowMajor> m(g.size(), g.size());
  m.setFromTriplets(trip.begin(), trip.end());
  return m;
}

void diameter(const Graph& g, const InspectOptions& opt, SpectralReport& r) {
  const auto work = static_cast<std::uint64_t>(g.size()) * (g.edge_count() + 1);
  r.diameter_exact = work <= opt.diameter_work_limit;
  if (r.diameter_exact) {
    int d = 0;
    for (int s = 0; s < g.size(); ++s) {
      const auto dist = g.distances_from(s);
      d = std::max(d, *std::max_element(dist.begin(), dist.end()));
    }
    r.diameter = d;
    return;
  }
  // Double sweep: the eccentricity of a farthest vertex is a lower bound, usually tight.
  int src = 0, d = 0;
  for (int sweep = 0; sweep < 4; ++sweep) {
    const auto dist = g.distances_from(src);
    const auto far = std::max_element(dist.begin(), dist.end());
    d = std::max(d, *far);
    src = static_cast<int>(far - dist.begin());
  }
  r.diameter = d;
}

void measured_contraction(const Topology& t, const InspectOptions& opt, SpectralReport& r) {
  const int n = t.size();
  if (n == 1) return;
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal;
  Eigen::VectorXd x(n), y(n);
  for (int k = 0; k < n; ++k) x(k) = normal(rng);
  x.array() -= x.mean();
  const auto w = sparse_w(t);
  // Geometric mean of the per-round ratio over the last quarter of the rounds: early rounds are
  // dominated by fast-decaying modes; late rounds show the slowest one, i.e. rho.
  std::vector<double> ratios;
  for (int round = 0; round < opt.contraction_rounds; ++round) {
    const double before = x.norm();
    y = w * x;
    y.array() -= y.mean();  // removes the rounding drift of the mean; W keeps it exactly otherwise
    const double after = y.norm();
    x.swap(y);
    ratios.push_back(after / before);
    if (after < 1e-250) break;  // at the floor of double precision (complete graph: one round)
  }
  r.measured_rounds = static_cast<int>(ratios.size());
  const std::size_t tail = std::max<std::size_t>(1, ratios.size() / 4);
  double log_sum = 0.0;
  for (std::size_t k = ratios.size() - tail; k < ratios.size(); ++k) {
    if (ratios[k] == 0.0) return;  // exact consensus: contraction 0
    log_sum += std::log(ratios[k]);
  }
  r.measured_contraction = std::exp(log_sum / static_cast<double>(tail));
}

}  // namespace

std::optional<long long> rounds_to_shrink(double rho, double factor, int peers) {
  if (peers <= 1) return 0;
  // Within rounding of 1 (a disconnected or period-2 W computes as 1 - 1e-16): never.
  if (rho >= 1.0 - 1e-9) return std::nullopt;
  if (rho <= 0.0) return 1;
  return static_cast<long long>(std::ceil(std::log(factor) / std::log(1.0 / rho) - 1e-12));
}

LaplacianExtremes laplacian_extremes(const Graph& g, int dense_limit) {
  const int n = g.size();
  LaplacianExtremes e;
  if (n == 1) return e;
  const auto lap = laplacian(g);
  if (n <= dense_limit || n < kMinSparse) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(Eigen::MatrixXd(lap), Eigen::EigenvaluesOnly);
    const auto& ev = es.eigenvalues();  // ascending
    e.lambda_max = ev(n - 1);
    e.lambda_fiedler = ev(1);
    return e;
  }
  e.lambda_max = largest_eigenvalue(n, [&](const double* x, double* y) {
    Eigen::Map<Eigen::VectorXd>(y, n) = lap * Eigen::Map<const Eigen::VectorXd>(x, n);
  });
  const double c = e.lambda_max;
  // c I - L has eigenvalue c on the ones vector; with it removed its top is c - lambda_fiedler.
  const double top = largest_eigenvalue(n, [&](const double* x, double* y) {
    Eigen::Map<Eigen::VectorXd> out(y, n);
    Eigen::Map<const Eigen::VectorXd> in(x, n);
    out = c * in - lap * in;
    remove_mean(y, n);
  });
  e.lambda_fiedler = c - top;
  return e;
}

SpectralReport inspect(const Topology& t, const InspectOptions& opt) {
  SpectralReport r;
  const int n = t.size();
  const Graph& g = t.graph;
  r.peers = n;
  r.edges = g.edge_count();
  r.degree_min = std::numeric_limits<int>::max();
  for (int i = 0; i < n; ++i) {
    r.degree_min = std::min(r.degree_min, g.degree(i));
    r.degree_max = std::max(r.degree_max, g.degree(i));
  }
  r.degree_mean = 2.0 * static_cast<double>(r.edges) / n;
  r.min_diagonal = std::numeric_limits<double>::infinity();
  r.min_offdiagonal = std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i)
    for (const auto& nb : t.W[static_cast<std::size_t>(i)]) {
      double& slot = nb.rank == i ? r.min_diagonal : r.min_offdiagonal;
      slot = std::min(slot, nb.weight);
    }
  if (r.min_diagonal == std::numeric_limits<double>::infinity()) r.min_diagonal = 0.0;
  if (r.min_offdiagonal == std::numeric_limits<double>::infinity()) r.min_offdiagonal = 0.0;
  diameter(g, opt, r);

  if (n <= opt.dense_limit || n < kMinSparse) {
    r.solver = "dense (Eigen)";
    Eigen::MatrixXd w = Eigen::MatrixXd(sparse_w(t));
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(w, Eigen::EigenvaluesOnly);
    const auto& ev = es.eigenvalues();  // ascending
    r.eigenvalues.assign(ev.data(), ev.data() + n);
    std::reverse(r.eigenvalues.begin(), r.eigenvalues.end());
    if (n > 1) r.lambda_2 = r.eigenvalues[1];
    r.lambda_n = r.eigenvalues.back();
  } else {
    r.solver = "sparse Lanczos (Spectra)";
    const auto w = sparse_w(t);
    // W has eigenvalue 1 on the ones vector; with it removed, the top eigenvalue is lambda_2.
    r.lambda_2 = largest_eigenvalue(n, [&](const double* x, double* y) {
      Eigen::Map<Eigen::VectorXd>(y, n) = w * Eigen::Map<const Eigen::VectorXd>(x, n);
      remove_mean(y, n);
    });
    r.lambda_n = -largest_eigenvalue(n, [&](const double* x, double* y) {
      Eigen::Map<Eigen::VectorXd>(y, n) = -(w * Eigen::Map<const Eigen::VectorXd>(x, n));
    });
  }
  if (n > 1) {
    r.rho = std::max(std::abs(*r.lambda_2), std::abs(r.lambda_n));
    r.spectral_gap = 1.0 - r.rho;
  } else {
    r.rho = 0.0;
    r.spectral_gap = 1.0;
  }
  r.beta = 1.0 - r.lambda_n;
  r.rounds_to_1e6 = rounds_to_shrink(r.rho, 1e6, n);
  measured_contraction(t, opt, r);
  return r;
}

}  // namespace gossip::topology
