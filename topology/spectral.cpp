#include "topology/spectral.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <Eigen/Dense>
#include <Eigen/Sparse>

namespace gossip::topology {

namespace {

using Matvec = std::function<void(const double*, double*)>;

// Below this many peers the dense solver is used whatever the limit: the Krylov space of one or
// two peers is the whole space, and the dense answer is exact.
constexpr int kMinSparse = 3;

// Dense fallback: when the sparse solver cannot certify an answer for at most this many peers,
// the dense solver (every eigenvalue, a second or two at this size) answers instead.
constexpr int kDenseFallback = 2000;

// Uniform double in [-1/2, 1/2) from 53 random bits: the same start vectors on every platform.
double uniform_centred(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53 - 0.5;
}

struct SparseFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Largest algebraic eigenvalue of the symmetric operator `mv` (n >= 3) whose spectrum lies in
// [-scale, scale]: Lanczos with full reorthogonalisation and thick restarts (Wu & Simon 2000).
//
// Every column of the projected matrix H = V^T A V is computed against the whole basis, so H
// stays exact whatever the basis holds. When the Krylov space becomes invariant (a spectrum with
// few distinct values: a star's W has three, a complete graph's two) the next basis vector is a
// fresh random one orthogonal to the basis instead of amplified rounding noise. The answer is
// accepted only when the top Ritz pair's residual ||A y - theta y||, recomputed with one more
// product, is at most kAccept * scale: then an eigenvalue of A lies within that distance of theta
// (a Rayleigh quotient, so at most the largest eigenvalue). Otherwise SparseFailure.
double largest_eigenvalue(Eigen::Index n, const Matvec& mv, double scale, std::string_view what) {
  constexpr double kConverged = 1e-12, kAccept = 1e-10;
  constexpr Eigen::Index kBasis = 40, kMaxBasis = 160;
  constexpr double kMaxBasisBytes = 256.0 * (1 << 20);  // what a grown basis may hold
  // Work (products x basis columns touched x n) before giving up: about a minute, or for the
  // largest graphs at least 2000 products of the first basis.
  const double max_work =
      std::max(6e10, 2000.0 * static_cast<double>(kBasis) * static_cast<double>(n));
  // The first basis: kBasis vectors, fewer (down to 24) where they would pass 1 GiB; a slow
  // problem may grow it to kMaxBasis vectors within kMaxBasisBytes.
  const Eigen::Index m0 = std::clamp<Eigen::Index>(
      static_cast<Eigen::Index>(1024.0 * (1 << 20) / (8.0 * n)), 24, kBasis);
  const Eigen::Index grow_cap = std::min<Eigen::Index>(
      n, std::max<Eigen::Index>(
             m0, std::min<Eigen::Index>(kMaxBasis,
                                        static_cast<Eigen::Index>(kMaxBasisBytes / (8.0 * n)))));
  Eigen::Index m = std::min(n, m0);
  Eigen::MatrixXd V(n, m), H = Eigen::MatrixXd::Zero(m, m), block;
  Eigen::VectorXd w(n), h(m), g(m), y(n), ay(n);
  std::mt19937_64 rng(0x5eed);
  long products = 0;
  double work = 0.0;

  // V.col(j) = a random unit vector orthogonal to the first j columns (j < n).
  auto random_column = [&](Eigen::Index j) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto v = V.col(j);
      for (Eigen::Index k = 0; k < n; ++k) v(k) = uniform_centred(rng);
      const double before = v.norm();
      for (int pass = 0; pass < 3 && j > 0; ++pass)
        v -= V.leftCols(j) * (V.leftCols(j).transpose() * v);
      const double after = v.norm();
      if (after > 1e-6 * before) {
        v /= after;
        return;
      }
    }
    throw SparseFailure(fmt::format("{}: no vector orthogonal to the Lanczos basis", what));
  };

  random_column(0);
  Eigen::Index start = 0;  // columns 0..start-1 come with their part of H
  double best = std::numeric_limits<double>::infinity();
  while (work * static_cast<double>(n) <= max_work) {
    Eigen::Index used = m;
    double beta = 0.0;
    for (Eigen::Index j = start; j < m; ++j) {
      mv(V.col(j).data(), w.data());
      ++products;
      work += static_cast<double>(j + 1);
      // Column j of H: the three-term part first (v_j, v_{j-1}), then classical Gram-Schmidt
      // against the whole basis, repeated while it removes much (DGKS: right after a restart the
      // kept Ritz vectors, or cancellation).
      auto basis = V.leftCols(j + 1);
      auto hj = h.head(j + 1);
      hj.setZero();
      for (Eigen::Index i = j; i >= std::max<Eigen::Index>(0, j - 1); --i) {
        const double c = V.col(i).dot(w);
        w.noalias() -= c * V.col(i);
        hj(i) += c;
      }
      for (int pass = 0; pass < 3; ++pass) {
        const double before = w.norm();
        g.head(j + 1).noalias() = basis.transpose() * w;
        w.noalias() -= basis * g.head(j + 1);
        hj += g.head(j + 1);
        if (w.norm() > 0.717 * before) break;
      }
      H.col(j).head(j + 1) = hj;
      H.row(j).head(j + 1) = hj.transpose();
      beta = w.norm();
      if (j + 1 == m) break;
      if (beta > 1e-13 * scale) {
        V.col(j + 1) = w / beta;
      } else if (j + 1 < n) {
        random_column(j + 1);  // invariant subspace: go on in a fresh direction
      } else {
        used = j + 1;  // the basis spans the whole space: H holds every eigenvalue
        beta = 0.0;
        break;
      }
    }
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(H.topLeftCorner(used, used));
    if (es.info() != Eigen::Success)
      throw SparseFailure(fmt::format("{}: the projected eigenproblem failed", what));
    const auto& theta = es.eigenvalues();  // ascending
    const auto& s = es.eigenvectors();
    const double estimate = beta * std::abs(s(used - 1, used - 1));
    best = std::min(best, estimate);
    if (estimate <= kConverged * scale) {
      // Certify the top Ritz pair with a fresh product.
      y.noalias() = V.leftCols(used) * s.col(used - 1);
      y /= y.norm();
      mv(y.data(), ay.data());
      ++products;
      const double value = y.dot(ay);
      const double residual = (ay - value * y).norm();
      if (residual <= kAccept * scale && std::abs(value) <= scale * (1 + 1e-9)) return value;
      best = residual;
    }
    // Thick restart: keep the top half of the Ritz vectors (V S, in place by blocks of rows), the
    // residual direction next. A slow problem (lambda_2 of a long ring) gets a larger basis.
    if (products >= 25 * m && m < grow_cap) {
      m = std::min(2 * m, grow_cap);
      V.conservativeResize(n, m);
      H.resize(m, m);
      h.resize(m);
      g.resize(m);
    }
    const Eigen::Index kept = std::min(m / 2, used - 1);
    const auto top = s.rightCols(kept);
    for (Eigen::Index r0 = 0; r0 < n; r0 += 4096) {
      const Eigen::Index rows = std::min<Eigen::Index>(4096, n - r0);
      block.noalias() = V.block(r0, 0, rows, used) * top;
      V.block(r0, 0, rows, kept) = block;
    }
    H.setZero();
    H.diagonal().head(kept) = theta.tail(kept);
    if (beta > 1e-13 * scale)
      V.col(kept) = w / beta;
    else
      random_column(kept);
    // Rounding erodes orthogonality over many restarts: restore it for the new column.
    for (int pass = 0; pass < 2; ++pass) {
      auto v = V.col(kept);
      v -= V.leftCols(kept) * (V.leftCols(kept).transpose() * v);
      v /= v.norm();
    }
    start = kept;
  }
  throw SparseFailure(
      fmt::format("{}: the sparse eigensolver did not converge in {} matrix-vector products "
                  "(residual {:.3g}, needed {:.3g})",
                  what, products, best, kAccept * scale));
}

// W as a sparse matrix; `symmetric`: (W + W^T) / 2, which is W bit for bit when W is symmetric
// (halving is exact) and the symmetric matrix the eigensolvers assume when a file's W is only
// symmetric to kWeightTolerance.
Eigen::SparseMatrix<double, Eigen::RowMajor> sparse_w(const Topology& t, bool symmetric = false) {
  std::vector<Eigen::Triplet<double>> trip;
  for (int i = 0; i < t.size(); ++i)
    for (const auto& nb : t.W[static_cast<std::size_t>(i)]) {
      if (!symmetric) {
        trip.emplace_back(i, nb.rank, nb.weight);
      } else {
        trip.emplace_back(i, nb.rank, nb.weight / 2);
        trip.emplace_back(nb.rank, i, nb.weight / 2);
      }
    }
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
  int dmax = 0;
  for (int i = 0; i < n; ++i) dmax = std::max(dmax, g.degree(i));
  // Gershgorin: L's spectrum lies in [0, 2 d_max].
  const double scale = 2.0 * dmax + 1.0;
  auto dense = [&] {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(Eigen::MatrixXd(lap), Eigen::EigenvaluesOnly);
    const auto& ev = es.eigenvalues();  // ascending
    e.lambda_max = ev(n - 1);
    e.lambda_fiedler = ev(1);
  };
  if (n <= dense_limit || n < kMinSparse) {
    dense();
  } else {
    try {
      e.lambda_max = largest_eigenvalue(
          n,
          [&](const double* x, double* y) {
            Eigen::Map<Eigen::VectorXd>(y, n) = lap * Eigen::Map<const Eigen::VectorXd>(x, n);
          },
          scale, "largest Laplacian eigenvalue");
      // -L - scale 11^T/n: the ones vector moves from 0 to -scale, below every -lambda_i, so the
      // top eigenvalue is -lambda_fiedler (whatever the multiplicities).
      e.lambda_fiedler = -largest_eigenvalue(
          n,
          [&](const double* x, double* y) {
            Eigen::Map<const Eigen::VectorXd> in(x, n);
            Eigen::Map<Eigen::VectorXd> out(y, n);
            out.noalias() = -(lap * in);
            out.array() -= scale * in.mean();
          },
          scale, "smallest non-zero Laplacian eigenvalue");
    } catch (const SparseFailure& f) {
      if (n > kDenseFallback)
        throw std::runtime_error(fmt::format(
            "best-constant weights for {} peers: {}; choose another weight scheme", n, f.what()));
      dense();
    }
  }
  // A connected graph with an edge has d_max + 1 <= lambda_max <= 2 d_max and
  // 0 < lambda_fiedler <= lambda_max: anything else is a solver failure, never a weight.
  const double slack = 1e-9 * scale;
  if (!(e.lambda_max >= dmax + 1.0 - slack && e.lambda_max <= 2.0 * dmax + slack &&
        e.lambda_fiedler > -slack && e.lambda_fiedler <= e.lambda_max + slack))
    throw std::runtime_error(fmt::format(
        "Laplacian eigenvalues lambda_max = {:.17g}, lambda_fiedler = {:.17g} are impossible for "
        "a connected graph of maximum degree {} (the eigensolver failed)",
        e.lambda_max, e.lambda_fiedler, dmax));
  e.lambda_fiedler = std::max(e.lambda_fiedler, 0.0);
  return e;
}

SpectralReport graph_report(const Topology& t, const InspectOptions& opt) {
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
  diameter(g, opt, r);
  return r;
}

SpectralReport inspect(const Topology& t, const InspectOptions& opt) {
  if (t.time_varying())
    throw std::invalid_argument(fmt::format(
        "{} is time-varying: it has no single W to take eigenvalues of (inspect_schedule)",
        t.description));
  SpectralReport r = graph_report(t, opt);
  const int n = t.size();
  r.min_diagonal = std::numeric_limits<double>::infinity();
  r.min_offdiagonal = std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i)
    for (const auto& nb : t.W[static_cast<std::size_t>(i)]) {
      double& slot = nb.rank == i ? r.min_diagonal : r.min_offdiagonal;
      slot = std::min(slot, nb.weight);
    }
  if (r.min_diagonal == std::numeric_limits<double>::infinity()) r.min_diagonal = 0.0;
  if (r.min_offdiagonal == std::numeric_limits<double>::infinity()) r.min_offdiagonal = 0.0;

  // Gershgorin: every eigenvalue of W lies in [lo, hi] ([-1, 1] when W >= 0).
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int i = 0; i < n; ++i) {
    double self = 0.0, off = 0.0;
    for (const auto& nb : t.W[static_cast<std::size_t>(i)]) {
      if (nb.rank == i)
        self += nb.weight;
      else
        off += std::abs(nb.weight);
    }
    lo = std::min(lo, self - off);
    hi = std::max(hi, self + off);
  }
  bool dense = n <= opt.dense_limit || n < kMinSparse;
  std::string fallback;
  if (!dense) {
    const auto w = sparse_w(t, true);
    r.solver = "sparse Lanczos";
    try {
      // W - c 11^T/n with c = 2 - lo: the ones vector (eigenvalue 1) moves to lo - 1, below every
      // other eigenvalue, so the top eigenvalue is lambda_2 even when it is negative.
      const double c = 2.0 - lo;
      r.lambda_2 = largest_eigenvalue(
          n,
          [&](const double* x, double* y) {
            Eigen::Map<const Eigen::VectorXd> in(x, n);
            Eigen::Map<Eigen::VectorXd> out(y, n);
            out.noalias() = w * in;
            out.array() -= c * in.mean();
          },
          std::max(std::abs(lo - 1.0), std::abs(hi)), "lambda_2 of W");
      r.lambda_n = -largest_eigenvalue(
          n,
          [&](const double* x, double* y) {
            Eigen::Map<Eigen::VectorXd>(y, n) = -(w * Eigen::Map<const Eigen::VectorXd>(x, n));
          },
          std::max(std::abs(lo), std::abs(hi)), "lambda_n of W");
    } catch (const SparseFailure& f) {
      if (n > kDenseFallback)
        throw std::runtime_error(fmt::format(
            "{} ({} peers); --dense-limit {} gives every eigenvalue with the dense solver, which "
            "needs {:.2g} GB of memory and time growing as n^3",
            f.what(), n, n, 8e-9 * static_cast<double>(n) * static_cast<double>(n)));
      dense = true;
      fallback = ", the sparse solver failed";
    }
  }
  if (dense) {
    r.solver = "dense (Eigen" + fallback + ")";
    Eigen::MatrixXd w = Eigen::MatrixXd(sparse_w(t, true));
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(w, Eigen::EigenvaluesOnly);
    if (es.info() != Eigen::Success) throw std::runtime_error("the dense eigensolver failed on W");
    const auto& ev = es.eigenvalues();  // ascending
    r.eigenvalues.assign(ev.data(), ev.data() + n);
    std::reverse(r.eigenvalues.begin(), r.eigenvalues.end());
    if (n > 1) r.lambda_2 = r.eigenvalues[1];
    r.lambda_n = r.eigenvalues.back();
  }
  // Never report an impossible spectrum: both values inside W's Gershgorin interval, in order.
  const double slack = 1e-9 * std::max(1.0, hi - lo);
  const double l2 = r.lambda_2.value_or(r.lambda_n);
  if (!(r.lambda_n >= lo - slack && l2 <= hi + slack && r.lambda_n <= l2 + slack))
    throw std::runtime_error(fmt::format(
        "the eigensolver ({}) gave lambda_2 = {:.17g}, lambda_n = {:.17g}, impossible for this W "
        "(its eigenvalues lie in [{:.17g}, {:.17g}]); --dense-limit {} uses the dense solver",
        r.solver, l2, r.lambda_n, lo, hi, n));
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
  if (const auto problem = contraction_problem(r); !problem.empty())
    throw std::runtime_error(
        fmt::format("the eigensolver ({}): {}{}", r.solver, problem,
                    dense ? "" : fmt::format("; --dense-limit {} uses the dense solver", n)));
  return r;
}

std::vector<double> period_product(const Topology& t) {
  const auto n = static_cast<std::size_t>(t.size());
  std::vector<double> p(n * n, 0.0), next(n * n);
  for (std::size_t i = 0; i < n; ++i) p[i * n + i] = 1.0;
  // P <- W^(r) P for r = 0 .. period - 1: row i of the new P is sum_j W^(r)_ij (row j of P).
  for (std::size_t r = 0; r < t.period(); ++r) {
    const MixingRows& w = t.mixing(r);
    std::fill(next.begin(), next.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (const Neighbor& nb : w[i]) {
        const double* src = &p[static_cast<std::size_t>(nb.rank) * n];
        double* dst = &next[i * n];
        for (std::size_t c = 0; c < n; ++c) dst[c] += nb.weight * src[c];
      }
    p.swap(next);
  }
  return p;
}

ScheduleReport inspect_schedule(const Topology& t, const InspectOptions& opt) {
  if (!t.time_varying())
    throw std::invalid_argument(
        fmt::format("{} is static: its W has a spectral report (inspect)", t.description));
  const int n = t.size();
  const auto un = static_cast<std::size_t>(n);
  ScheduleReport s;
  s.period = t.period();
  s.send_degree_min = s.receive_degree_min = std::numeric_limits<int>::max();
  std::vector<double> column(un);
  for (std::size_t r = 0; r < s.period; ++r) {
    std::fill(column.begin(), column.end(), 0.0);
    for (int i = 0; i < n; ++i) {
      double row = 0.0;
      for (const Neighbor& nb : t.mixing(r)[static_cast<std::size_t>(i)]) {
        row += nb.weight;
        column[static_cast<std::size_t>(nb.rank)] += nb.weight;
      }
      s.doubly_stochastic = s.doubly_stochastic && std::abs(row - 1.0) <= 1e-12;
      const int sends = static_cast<int>(t.send_to(i, r).size());
      const int takes = static_cast<int>(t.receive_from(i, r).size());
      s.send_degree_min = std::min(s.send_degree_min, sends);
      s.send_degree_max = std::max(s.send_degree_max, sends);
      s.receive_degree_min = std::min(s.receive_degree_min, takes);
      s.receive_degree_max = std::max(s.receive_degree_max, takes);
    }
    for (double c : column) s.doubly_stochastic = s.doubly_stochastic && std::abs(c - 1.0) <= 1e-12;
  }

  if (n <= opt.dense_limit) {
    s.product_computed = true;
    const auto p = period_product(t);
    for (double v : p) s.product_deviation = std::max(s.product_deviation, std::abs(v - 1.0 / n));
    s.exact_average = s.product_deviation <= 1e-12;
    if (!s.exact_average) {
      // P^T P: symmetric, and doubly stochastic because P is; its rho is ||P - J||_2 squared.
      Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> pm(
          p.data(), n, n);
      const Eigen::MatrixXd gram = pm.transpose() * pm;
      Topology g;
      g.graph = Graph(n);
      g.W.resize(un);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          const double v = (gram(i, j) + gram(j, i)) / 2;  // symmetric to the bit
          if (v == 0.0 && i != j) continue;
          g.W[static_cast<std::size_t>(i)].push_back({j, v});
          if (i < j) g.graph.add_edge(i, j);
        }
      g.description = "P^T P of " + t.description;
      s.rho_period = std::sqrt(std::max(0.0, inspect(g, opt).rho));
    }
    s.rounds_to_1e6 =
        s.exact_average ? std::optional<long long>(1) : rounds_to_shrink(s.rho_period, 1e6, n);
  }

  // Measured: x <- W^(t) x over whole periods, the disagreement's ratio per period.
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal;
  Eigen::VectorXd x(n), y(n);
  for (int k = 0; k < n; ++k) x(k) = normal(rng);
  x.array() -= x.mean();
  const int periods =
      std::max(4, opt.contraction_rounds / static_cast<int>(std::max<std::size_t>(s.period, 1)));
  std::vector<double> ratios;
  for (int q = 0; q < periods; ++q) {
    const double before = x.norm();
    for (std::size_t r = 0; r < s.period; ++r) {
      y.setZero();
      const MixingRows& w = t.mixing(r);
      for (int i = 0; i < n; ++i)
        for (const Neighbor& nb : w[static_cast<std::size_t>(i)]) y(i) += nb.weight * x(nb.rank);
      x.swap(y);
    }
    x.array() -= x.mean();
    const double after = x.norm();
    ratios.push_back(after / before);
    if (after < 1e-250) break;
  }
  s.measured_periods = static_cast<int>(ratios.size());
  const std::size_t tail = std::max<std::size_t>(1, ratios.size() / 4);
  double log_sum = 0.0;
  bool zero = false;
  for (std::size_t k = ratios.size() - tail; k < ratios.size(); ++k) {
    zero = zero || ratios[k] == 0.0;
    if (!zero) log_sum += std::log(ratios[k]);
  }
  if (!zero) {
    s.measured_contraction_period = std::exp(log_sum / static_cast<double>(tail));
    s.measured_contraction =
        std::pow(s.measured_contraction_period, 1.0 / static_cast<double>(s.period));
  }
  // ||P y|| <= ||P - J||_2 ||y|| for y orthogonal to the ones vector: a measured ratio above
  // rho_period means the product or its eigenvalue is wrong.
  if (s.product_computed && s.measured_contraction_period > s.rho_period + 1e-6)
    throw std::runtime_error(fmt::format(
        "{}: the measured contraction over a period, {:.9g}, exceeds ||P - J||_2 = {:.9g}",
        t.description, s.measured_contraction_period, s.rho_period));
  return s;
}

std::string contraction_problem(const SpectralReport& r) {
  // 1e-6 is far above rounding; degree_max * 1e-9 bounds ||W - W^T|| / 2 for a file's W.
  const double slack = 1e-6 * std::max(1.0, std::abs(r.rho)) + 1e-9 * r.degree_max;
  if (r.measured_contraction <= r.rho + slack) return "";
  return fmt::format(
      "the measured contraction of x <- Wx, {:.9g} per round over {} rounds, exceeds rho = "
      "{:.9g} (lambda_2 = {:.17g}, lambda_n = {:.17g}): rho is an eigenvalue of W but not the "
      "largest in modulus on the disagreement",
      r.measured_contraction, r.measured_rounds, r.rho, r.lambda_2.value_or(r.lambda_n),
      r.lambda_n);
}

}  // namespace gossip::topology
