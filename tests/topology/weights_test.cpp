// Every weight scheme on every generator gives a symmetric, doubly stochastic W.

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "topology/generators.hpp"
#include "topology/spectral.hpp"
#include "topology/weights.hpp"

using namespace gossip::topology;

namespace {
const char* kSpecs[] = {"ring:1",
                        "ring:2",
                        "ring:3",
                        "ring:10",
                        "torus:3x4",
                        "torus:2x2x3",
                        "grid:4x3",
                        "grid:2x2x2",
                        "complete:1",
                        "complete:7",
                        "star:2",
                        "star:9",
                        "hypercube:1",
                        "hypercube:16",
                        "exponential:2",
                        "exponential:11",
                        "exponential:16",
                        "erdos-renyi:20,p=0.3,seed=4",
                        "random-regular:24,d=3,seed=1",
                        "random-regular:10,d=9"};
}

TEST_CASE("every scheme on every generator: symmetric, doubly stochastic, sign rules") {
  for (const char* text : kSpecs) {
    for (Scheme scheme : {Scheme::metropolis, Scheme::max_degree, Scheme::best_constant}) {
      auto spec = parse_spec(text);
      spec.weights = scheme;
      CAPTURE(text);
      CAPTURE(scheme_name(scheme));
      const Topology t = make_topology(spec);
      const int n = t.size();
      for (int i = 0; i < n; ++i) {
        double row = 0.0, col = 0.0;
        for (int j = 0; j < n; ++j) {
          row += t.weight(i, j);
          col += t.weight(j, i);
          CHECK(t.weight(i, j) == t.weight(j, i));
          if (i != j) {
            CHECK(t.weight(i, j) >= 0.0);
            CHECK((t.weight(i, j) > 0.0) == t.graph.has_edge(i, j));
          } else if (scheme != Scheme::best_constant) {
            CHECK(t.weight(i, i) >= 0.0);
          }
        }
        CHECK(std::abs(row - 1.0) < 1e-12);
        CHECK(std::abs(col - 1.0) < 1e-12);
      }
    }
  }
}

TEST_CASE("best-constant is never worse than max-degree") {
  for (const char* text : kSpecs) {
    CAPTURE(text);
    auto bc = parse_spec(text), md = parse_spec(text);
    bc.weights = Scheme::best_constant;
    md.weights = Scheme::max_degree;
    CHECK(inspect(make_topology(bc)).rho <= inspect(make_topology(md)).rho + 1e-12);
  }
}

TEST_CASE("default weights: ring 1/3, others Metropolis-Hastings") {
  const auto ring = make_topology(parse_spec("ring:6"));
  CHECK(ring.weight(0, 1) == doctest::Approx(1.0 / 3));
  CHECK(ring.weight(0, 5) == doctest::Approx(1.0 / 3));
  CHECK(ring.weight(0, 0) == doctest::Approx(1.0 / 3));
  const auto star = make_topology(parse_spec("star:5"));
  CHECK(star.weight(0, 3) == doctest::Approx(1.0 / 5));  // 1 / (1 + max(4, 1))
  CHECK(star.weight(3, 3) == doctest::Approx(4.0 / 5));
  CHECK_THROWS_WITH_AS(mixing_weights(star.graph, Scheme::ring), doctest::Contains("ring graph"),
                       std::invalid_argument);
}

TEST_CASE(
    "best-constant above the dense limit: alpha from the sparse solver's Laplacian extremes") {
  // Above 2000 peers the Laplacian's extremes come from Lanczos, which (as Spectra) met the
  // star's eigenvalues 0, 1 (n - 2 times), n and the complete graph's 0, n (n - 1 times) with
  // nonsense: off-diagonal weights of -7.3e-58 and 1.2e-75, W almost I.
  const auto star = mixing_weights(generate_graph(parse_spec("star:2001")), Scheme::best_constant);
  CHECK(std::abs(star[1][0].weight - 2.0 / 2002) < 1e-12);  // alpha = 2 / (n + 1)
  CHECK(std::abs(star[0][0].weight - (3.0 - 2001) / 2002) < 1e-9);
  const auto complete =
      mixing_weights(generate_graph(parse_spec("complete:2001")), Scheme::best_constant);
  CHECK(std::abs(complete[0][1].weight - 1.0 / 2001) < 1e-12);  // alpha = 2 / (n + n)
  CHECK(std::abs(complete[0][0].weight - 1.0 / 2001) < 1e-9);
}
