// Closed forms of the spectrum for generated topologies, and the spectral quantities derived
// from it. Every expected value is computed from a formula, never copied from a run.

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "topology/generators.hpp"
#include "topology/spectral.hpp"

using namespace gossip::topology;

namespace {

std::vector<double> sorted_desc(std::vector<double> v) {
  std::sort(v.rbegin(), v.rend());
  return v;
}

void check_spectrum(const std::string& spec, std::vector<double> expected) {
  CAPTURE(spec);
  const auto r = inspect(make_topology(parse_spec(spec)));
  expected = sorted_desc(expected);
  REQUIRE(r.eigenvalues.size() == expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    CAPTURE(k);
    CHECK(std::abs(r.eigenvalues[k] - expected[k]) < 1e-9);
  }
  const std::size_t n = expected.size();
  if (n > 1) {
    const double rho = std::max(std::abs(expected[1]), std::abs(expected[n - 1]));
    CHECK(std::abs(r.rho - rho) < 1e-9);
    CHECK(std::abs(r.spectral_gap - (1 - rho)) < 1e-9);
    CHECK(std::abs(r.beta - (1 - expected[n - 1])) < 1e-9);
  } else {
    CHECK(r.rho == 0.0);
  }
}

}  // namespace

TEST_CASE("ring with 1/3 weights: lambda_k = 1/3 + 2/3 cos(2 pi k / n)") {
  for (int n = 1; n <= 12; ++n) {
    std::vector<double> ev;
    for (int k = 0; k < n; ++k)
      ev.push_back(1.0 / 3 + 2.0 / 3 * std::cos(2 * std::numbers::pi * k / n));
    check_spectrum("ring:" + std::to_string(n), ev);
  }
}

TEST_CASE("complete graph: W = 11^T / n, so rho = 0") {
  for (int n = 1; n <= 9; ++n) {
    std::vector<double> ev(static_cast<std::size_t>(n), 0.0);
    ev[0] = 1.0;
    check_spectrum("complete:" + std::to_string(n), ev);
    const auto r = inspect(make_topology(parse_spec("complete:" + std::to_string(n))));
    CHECK(r.rho < 1e-9);
    CHECK(r.measured_contraction < 1e-9);
  }
}

TEST_CASE(
    "2-D torus with Metropolis weights 1/5: 1/5 + 2/5 cos(2 pi a / r) + 2/5 cos(2 pi b / c)") {
  for (auto [rows, cols] : {std::pair{3, 3}, {3, 4}, {4, 4}, {5, 3}, {4, 6}}) {
    std::vector<double> ev;
    for (int a = 0; a < rows; ++a)
      for (int b = 0; b < cols; ++b)
        ev.push_back(0.2 + 0.4 * std::cos(2 * std::numbers::pi * a / rows) +
                     0.4 * std::cos(2 * std::numbers::pi * b / cols));
    check_spectrum("torus:" + std::to_string(rows) + "x" + std::to_string(cols), ev);
  }
}

TEST_CASE("hypercube of dimension k: 1 - 2m/(k+1) with multiplicity C(k, m)") {
  for (int k = 0; k <= 6; ++k) {
    std::vector<double> ev;
    for (int v = 0; v < (1 << k); ++v)
      ev.push_back(1.0 - 2.0 * std::popcount(static_cast<unsigned>(v)) / (k + 1));
    check_spectrum("hypercube:" + std::to_string(1 << k), ev);
  }
}

TEST_CASE("star with Metropolis weights: 1, 1 - 1/n (n-2 times), 0") {
  for (int n = 2; n <= 9; ++n) {
    std::vector<double> ev{1.0, 0.0};
    for (int k = 0; k < n - 2; ++k) ev.push_back(1.0 - 1.0 / n);
    check_spectrum("star:" + std::to_string(n), ev);
  }
}

TEST_CASE("star with best-constant weights: negative centre weight (3 - n)/(n + 1)") {
  for (int n = 4; n <= 9; ++n) {
    const auto r =
        inspect(make_topology(parse_spec("star:" + std::to_string(n) + ",weights=best-constant")));
    CHECK(std::abs(r.min_diagonal - (3.0 - n) / (n + 1.0)) < 1e-12);
    // L has eigenvalues 0, 1 (n-2 times), n; alpha = 2/(n+1) puts 1 - alpha and 1 - n alpha
    // symmetric about 0: rho = (n - 1)/(n + 1).
    CHECK(std::abs(r.rho - (n - 1.0) / (n + 1.0)) < 1e-9);
  }
}

TEST_CASE("rounds to shrink disagreement a million-fold") {
  CHECK(rounds_to_shrink(0.5, 1e6, 4).value() == 20);  // 2^-20 < 1e-6 < 2^-19
  CHECK(rounds_to_shrink(0.9, 1e6, 4).value() == 132);
  CHECK(rounds_to_shrink(0.0, 1e6, 4).value() == 1);
  CHECK(rounds_to_shrink(0.3, 1e6, 1).value() == 0);
  CHECK_FALSE(rounds_to_shrink(1.0, 1e6, 4).has_value());
  // A period-2 or disconnected W computes as 1 - 1e-16, not 1: still never.
  CHECK_FALSE(rounds_to_shrink(1.0 - 1e-16, 1e6, 2).has_value());
  CHECK(rounds_to_shrink(1.0 - 1e-6, 1e6, 2).value() > 1e7);
  const auto r = inspect(make_topology(parse_spec("ring:16")));
  const double rho = r.rho;
  const auto t = *r.rounds_to_1e6;
  CHECK(std::pow(rho, static_cast<double>(t)) <= 1e-6);
  CHECK(std::pow(rho, static_cast<double>(t - 1)) > 1e-6);
}

TEST_CASE("measured contraction of x <- Wx approaches rho") {
  for (const char* spec : {"ring:9", "torus:4x5", "exponential:12", "random-regular:40,d=3,seed=2",
                           "erdos-renyi:30,p=0.2,seed=5", "grid:3x5", "star:6"}) {
    CAPTURE(spec);
    const auto r = inspect(make_topology(parse_spec(spec)));
    CHECK(std::abs(r.measured_contraction - r.rho) < 1e-3 * std::max(r.rho, 0.1));
  }
}

TEST_CASE("sparse Lanczos agrees with the dense solver") {
  for (const char* spec : {"random-regular:600,d=4,seed=3", "torus:20x25", "exponential:300",
                           "erdos-renyi:400,p=0.02,seed=9"}) {
    CAPTURE(spec);
    const auto t = make_topology(parse_spec(spec));
    InspectOptions dense, sparse;
    sparse.dense_limit = 10;
    const auto a = inspect(t, dense), b = inspect(t, sparse);
    REQUIRE(b.eigenvalues.empty());
    CHECK(std::abs(*a.lambda_2 - *b.lambda_2) < 1e-8);
    CHECK(std::abs(a.lambda_n - b.lambda_n) < 1e-8);
    const auto ld = laplacian_extremes(t.graph, 100000), ls = laplacian_extremes(t.graph, 10);
    CHECK(std::abs(ld.lambda_max - ls.lambda_max) < 1e-8);
    CHECK(std::abs(ld.lambda_fiedler - ls.lambda_fiedler) < 1e-8);
  }
}

TEST_CASE("diameter and degrees") {
  auto r = inspect(make_topology(parse_spec("ring:9")));
  CHECK(r.diameter == 4);
  r = inspect(make_topology(parse_spec("grid:3x5")));
  CHECK(r.diameter == 6);
  CHECK(r.degree_min == 2);
  CHECK(r.degree_max == 4);
  CHECK(r.edges == 3 * 4 + 5 * 2);
  r = inspect(make_topology(parse_spec("hypercube:32")));
  CHECK(r.diameter == 5);
  // Double-sweep bound on a ring is exact.
  InspectOptions opt;
  opt.diameter_work_limit = 1;
  r = inspect(make_topology(parse_spec("ring:21")), opt);
  CHECK_FALSE(r.diameter_exact);
  CHECK(r.diameter == 10);
}

TEST_CASE("one or two peers never reach the sparse solver, whatever the dense limit") {
  // Spectra needed 1 <= nev < ncv <= n: with dense_limit 0, ring:1 leaked its error message.
  InspectOptions sparse;
  sparse.dense_limit = 0;
  auto r = inspect(make_topology(parse_spec("ring:1")), sparse);
  CHECK(r.solver == "dense (Eigen)");
  CHECK_FALSE(r.lambda_2.has_value());
  CHECK(r.rho == 0.0);
  // ring:2 with ring weights: W = [[1/3, 2/3], [2/3, 1/3]], eigenvalues 1 and -1/3.
  r = inspect(make_topology(parse_spec("ring:2")), sparse);
  CHECK(r.solver == "dense (Eigen)");
  CHECK(*r.lambda_2 == doctest::Approx(-1.0 / 3));
  r = inspect(make_topology(parse_spec("ring:5")), sparse);  // from 3 peers on: Lanczos
  CHECK(r.solver == "sparse Lanczos");
  CHECK(*r.lambda_2 == doctest::Approx(1.0 / 3 + 2.0 / 3 * std::cos(2 * std::numbers::pi / 5)));
  // Two peers: L has eigenvalues 0 and 2.
  const auto e = laplacian_extremes(generate_graph(parse_spec("ring:2")), 0);
  CHECK(e.lambda_max == doctest::Approx(2.0));
  CHECK(e.lambda_fiedler == doctest::Approx(2.0));
  CHECK(make_topology(parse_spec("ring:2,weights=best-constant")).weight(0, 1) ==
        doctest::Approx(0.5));
}

TEST_CASE("sparse Lanczos on a star: lambda_2 = 1 - 1/n (n - 2 times), lambda_n = 0") {
  // Spectra's implicitly restarted Lanczos met the star's three distinct eigenvalues with
  // lambda_2 = 4.0e26 on star:3000, up to 1e143 on star:2500, and "TridiagEigen: eigen
  // decomposition failed" on star:2001 and star:10000.
  for (int n : {2001, 2500, 3000, 10000}) {
    CAPTURE(n);
    const auto r = inspect(make_topology(parse_spec("star:" + std::to_string(n))));
    REQUIRE(r.solver == "sparse Lanczos");
    CHECK(std::abs(*r.lambda_2 - (1.0 - 1.0 / n)) < 1e-9);
    CHECK(std::abs(r.lambda_n) < 1e-9);
    CHECK(std::abs(r.spectral_gap - 1.0 / n) < 1e-9);
  }
  // Best-constant: alpha = 2/(n + 1) from L's eigenvalues 0, 1 (n - 2 times), n, computed by the
  // sparse solver above 2000 peers; rho = (n - 1)/(n + 1) and the centre weight (3 - n)/(n + 1).
  // The star's Laplacian broke Spectra the same way: off-diagonal weights of -7.3e-58.
  for (int n : {2001, 3000}) {
    CAPTURE(n);
    const auto t =
        make_topology(parse_spec("star:" + std::to_string(n) + ",weights=best-constant"));
    CHECK(std::abs(t.weight(0, 1) - 2.0 / (n + 1)) < 1e-12);
    const auto r = inspect(t);
    CHECK(std::abs(r.rho - (n - 1.0) / (n + 1.0)) < 1e-9);
    CHECK(std::abs(r.min_diagonal - (3.0 - n) / (n + 1.0)) < 1e-12);
    const auto e = laplacian_extremes(t.graph);
    CHECK(std::abs(e.lambda_max - n) < 1e-9 * n);
    CHECK(std::abs(e.lambda_fiedler - 1.0) < 1e-9 * n);
  }
}

TEST_CASE("sparse Lanczos on tiny and degenerate graphs agrees with the dense solver") {
  // --dense-limit 1 sent ring:3 and complete:3/4/8 to Spectra, which failed ("TridiagEigen: eigen
  // decomposition failed"): W - 11^T/n is zero there, and the Krylov space collapses at once.
  InspectOptions sparse;
  sparse.dense_limit = 1;
  for (const char* spec :
       {"ring:3", "ring:4", "ring:7", "complete:3", "complete:4", "complete:8", "complete:50",
        "star:3", "star:4", "star:9", "star:60", "hypercube:8", "hypercube:64", "grid:2x2",
        "complete:6,weights=best-constant", "star:7,weights=best-constant",
        "torus:3x3,weights=max-degree", "random-regular:12,d=11"}) {
    CAPTURE(spec);
    const auto t = make_topology(parse_spec(spec));
    const auto a = inspect(t), b = inspect(t, sparse);
    REQUIRE(a.solver == "dense (Eigen)");
    REQUIRE(b.solver == "sparse Lanczos");
    CHECK(std::abs(*a.lambda_2 - *b.lambda_2) < 1e-9);
    CHECK(std::abs(a.lambda_n - b.lambda_n) < 1e-9);
    CHECK(std::abs(a.rho - b.rho) < 1e-9);
    const auto ld = laplacian_extremes(t.graph), ls = laplacian_extremes(t.graph, 1);
    CHECK(std::abs(ld.lambda_max - ls.lambda_max) < 1e-9);
    CHECK(std::abs(ld.lambda_fiedler - ls.lambda_fiedler) < 1e-9);
  }
}

TEST_CASE("a negative lambda_2 is found by the sparse solver too") {
  // A triangle without self weights: W has eigenvalues 1, -1/2, -1/2. Taking the mean out of W
  // leaves eigenvalue 0 on the ones vector, above lambda_2; the solver must not report 0.
  Topology t;
  t.graph = Graph(3);
  t.graph.add_edge(0, 1);
  t.graph.add_edge(0, 2);
  t.graph.add_edge(1, 2);
  for (int i = 0; i < 3; ++i) {
    t.peers.push_back({i, "ipc:///tmp/t" + std::to_string(i), {}});
    std::vector<Neighbor> row;
    for (int j = 0; j < 3; ++j) row.push_back({j, i == j ? 0.0 : 0.5});
    t.W.push_back(row);
  }
  InspectOptions sparse;
  sparse.dense_limit = 0;
  const auto r = inspect(t, sparse);
  CHECK(r.solver == "sparse Lanczos");
  CHECK(*r.lambda_2 == doctest::Approx(-0.5));
  CHECK(r.lambda_n == doctest::Approx(-0.5));
  CHECK(r.rho == doctest::Approx(0.5));
}

TEST_CASE("sparse Lanczos on a long ring: lambda_2 within 1e-8 of 1") {
  // 1 - lambda_2 = 2/3 (1 - cos(2 pi / n)) = 5.3e-7; Spectra's 5000 restarts of 30 vectors were
  // not enough for ring:20000 (42 s, then "did not converge").
  const int n = 5000;
  InspectOptions sparse;
  sparse.dense_limit = 0;
  const auto r = inspect(make_topology(parse_spec("ring:" + std::to_string(n))), sparse);
  CHECK(std::abs(*r.lambda_2 - (1.0 / 3 + 2.0 / 3 * std::cos(2 * std::numbers::pi / n))) < 1e-12);
  CHECK(std::abs(r.lambda_n - (-1.0 / 3)) < 1e-12);
}

namespace {

// A ring of n peers with self weight `self` and (1 - self)/2 to each neighbour: eigenvalues
// self + (1 - self) cos(2 pi k / n).
Topology weighted_ring(int n, double self) {
  Topology t;
  t.graph = Graph(n);
  for (int i = 0; i < n; ++i) t.graph.add_edge(i, (i + 1) % n);
  for (int i = 0; i < n; ++i) {
    t.peers.push_back({i, "ipc:///tmp/r" + std::to_string(i), {}});
    std::vector<Neighbor> row{{i, self}};
    for (int j : t.graph.neighbors(i)) row.push_back({j, (1 - self) / 2});
    std::sort(row.begin(), row.end(), [](auto a, auto b) { return a.rank < b.rank; });
    t.W.push_back(row);
  }
  return t;
}

}  // namespace

TEST_CASE("rho is |lambda_n| when lambda_n dominates, dense and sparse") {
  // Self weight 0.1 on rings of 5 to 8 peers: 0.1 + 0.9 cos(2 pi k / n) has |lambda_n| > lambda_2
  // (5 peers: lambda_2 = 0.378, lambda_n = -0.628). Every other test spectrum had
  // |lambda_2| >= |lambda_n|, so rho = |lambda_2| survived them all.
  InspectOptions sparse;
  sparse.dense_limit = 1;
  for (int n = 5; n <= 8; ++n) {
    CAPTURE(n);
    const auto t = weighted_ring(n, 0.1);
    const double l2 = 0.1 + 0.9 * std::cos(2 * std::numbers::pi / n);
    const double ln = 0.1 + 0.9 * std::cos(2 * std::numbers::pi * (n / 2) / n);
    REQUIRE(std::abs(ln) > std::abs(l2) + 0.04);
    for (const auto& opt : {InspectOptions{}, sparse}) {
      const auto r = inspect(t, opt);
      CAPTURE(r.solver);
      CHECK(std::abs(*r.lambda_2 - l2) < 1e-9);
      CHECK(std::abs(r.lambda_n - ln) < 1e-9);
      CHECK(std::abs(r.rho - std::abs(ln)) < 1e-9);
      CHECK(std::abs(r.spectral_gap - (1 - std::abs(ln))) < 1e-9);
      // The measured contraction sees the slowest mode, whichever end of the spectrum it is at.
      CHECK(std::abs(r.measured_contraction - r.rho) < 1e-3 * r.rho);
    }
  }
  // Odd rings without self weight: lambda_n = -cos(pi / n) beats lambda_2 = cos(2 pi / n).
  const auto r = inspect(weighted_ring(101, 0.0), sparse);
  CHECK(r.solver == "sparse Lanczos");
  CHECK(std::abs(r.rho - std::cos(std::numbers::pi / 101)) < 1e-9);
}

TEST_CASE("a rho below the measured contraction is refused") {
  // The solvers certify an eigenvalue, not the extreme one: a report whose rho is an inner
  // eigenvalue is caught by x <- Wx, whose per-round ratio never exceeds the true rho.
  auto r = inspect(weighted_ring(5, 0.1));
  CHECK(contraction_problem(r) == "");
  auto wrong = r;
  wrong.rho = std::abs(*r.lambda_2);  // 0.378 against a measured 0.628
  const auto problem = contraction_problem(wrong);
  CHECK(problem.find("exceeds rho") != std::string::npos);
  // Rounding of the measurement is not a contradiction; a millionth more is.
  wrong.rho = r.measured_contraction - 1e-9;
  CHECK(contraction_problem(wrong) == "");
  wrong.rho = r.measured_contraction - 1e-5;
  CHECK(contraction_problem(wrong) != "");
  // Every report of the closed-form families passes.
  for (const char* spec : {"ring:9", "complete:7", "star:6", "hypercube:16", "torus:4x5",
                           "star:7,weights=best-constant", "erdos-renyi:30,p=0.2,seed=5"}) {
    CAPTURE(spec);
    CHECK(contraction_problem(inspect(make_topology(parse_spec(spec)))) == "");
  }
}
