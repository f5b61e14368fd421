// Time-varying topologies: the one-peer exponential schedule (Ying et al. NeurIPS 2021), its
// product over a period, its files and its schedule report.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "topology/generators.hpp"
#include "topology/spectral.hpp"
#include "topology/topology_file.hpp"

using namespace gossip::topology;

namespace {

Topology one_peer(int n) {
  return make_topology(parse_spec("one-peer-exponential:" + std::to_string(n)));
}

// 2^period times the product of a period's matrices, in integers: W^(t) = (I + P_k) / 2, so
// 2^period P = prod (I + P_k), counted exactly (no floating point at all), from the rule, not
// from the schedule under test.
std::vector<std::vector<std::uint64_t>> scaled_product_by_rule(int n) {
  int tau = 0;
  while ((1 << tau) < n) ++tau;
  std::vector<std::vector<std::uint64_t>> m(
      static_cast<std::size_t>(n), std::vector<std::uint64_t>(static_cast<std::size_t>(n)));
  for (int i = 0; i < n; ++i) m[static_cast<std::size_t>(i)][static_cast<std::size_t>(i)] = 1;
  for (int k = 0; k < tau; ++k) {
    auto next = m;
    // Row i of (I + P_k) M is row i of M plus row (i - 2^k) mod n of M.
    for (int i = 0; i < n; ++i) {
      const int from = ((i - (1 << k)) % n + n) % n;
      for (int c = 0; c < n; ++c)
        next[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)] +=
            m[static_cast<std::size_t>(from)][static_cast<std::size_t>(c)];
    }
    m = std::move(next);
  }
  return m;
}

}  // namespace

TEST_CASE("one-peer exponential: each W^(t) is doubly stochastic, one peer in and one out") {
  for (int n : {2, 3, 5, 6, 8, 12, 16, 33}) {
    CAPTURE(n);
    const Topology t = one_peer(n);
    REQUIRE(t.time_varying());
    int tau = 0;
    while ((1 << tau) < n) ++tau;
    CHECK(t.period() == static_cast<std::size_t>(tau));
    for (std::size_t r = 0; r < t.period(); ++r) {
      CAPTURE(r);
      std::vector<double> column(static_cast<std::size_t>(n), 0.0);
      for (int i = 0; i < n; ++i) {
        double row = 0.0;
        for (const Neighbor& nb : t.mixing(r)[static_cast<std::size_t>(i)]) {
          CHECK(nb.weight == 0.5);
          row += nb.weight;
          column[static_cast<std::size_t>(nb.rank)] += nb.weight;
        }
        CHECK(row == 1.0);
        const int hop = 1 << r;
        CHECK(t.receive_from(i, r) == std::vector<int>{(i - hop % n + n) % n});
        CHECK(t.send_to(i, r) == std::vector<int>{(i + hop) % n});
        // Every link of the round is in the union graph the transport connects.
        CHECK(t.graph.has_edge(i, (i + hop) % n));
      }
      for (double c : column) CHECK(c == 1.0);
      // Not symmetric: peer 2^k takes from 0, but 0 takes from 2^k only when 2^k = n - 2^k.
      const int hop = 1 << r;
      CHECK(row_weight(t.mixing(r), hop, 0) == 0.5);
      CHECK(row_weight(t.mixing(r), 0, hop) == (2 * hop == n ? 0.5 : 0.0));
    }
    // The round after a period uses W^(0) again.
    CHECK(t.receive_from(0, t.period()) == t.receive_from(0, 0));
  }
}

TEST_CASE("one-peer exponential: a period averages exactly for n = 2, 4, 8, 16, 32 only") {
  for (int n : {2, 3, 4, 6, 8, 12, 16, 32}) {
    CAPTURE(n);
    const bool power_of_two = (n & (n - 1)) == 0;
    const auto m = scaled_product_by_rule(n);
    const std::uint64_t scale = std::uint64_t{1} << one_peer(n).period();
    // Exactly J = (1/n) 11^T: every entry of 2^tau P equals 2^tau / n.
    bool all_equal = true;
    for (const auto& row : m)
      for (std::uint64_t v : row)
        all_equal = all_equal && v * static_cast<std::uint64_t>(n) == scale;
    CHECK(all_equal == power_of_two);
    // The product the code computes (dyadic entries: exact in doubles) is the same matrix.
    const auto p = period_product(one_peer(n));
    bool same = true;
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < n; ++c)
        same = same && p[static_cast<std::size_t>(i * n + c)] ==
                           static_cast<double>(
                               m[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)]) /
                               static_cast<double>(scale);
    CHECK(same);
    const ScheduleReport s = inspect_schedule(one_peer(n));
    CHECK(s.doubly_stochastic);
    CHECK(s.product_computed);
    CHECK(s.exact_average == power_of_two);
    CHECK(s.send_degree_min == 1);
    CHECK(s.send_degree_max == 1);
    CHECK(s.receive_degree_max == 1);
    if (power_of_two) {
      CHECK(s.product_deviation == 0.0);
      CHECK(s.rho_period == 0.0);
      CHECK(s.rounds_to_1e6 == 1);
      CHECK(s.measured_contraction_period < 1e-12);
    } else {
      CHECK(s.product_deviation > 1e-3);
      CHECK(s.rho_period > 0.0);
      CHECK(s.rho_period < 1.0);
      // ||P y|| <= ||P - J||_2 ||y||: the measured ratio cannot beat the bound from above.
      CHECK(s.measured_contraction_period <= s.rho_period + 1e-9);
      CHECK(s.measured_contraction_period > 0.0);
    }
  }
}

TEST_CASE("one-peer exponential: rho of the period is ||P - J||_2 (n = 6 against its SVD)") {
  // For n = 6 (period 3), the product by the rule; ||P - J||_2 from its singular values by power
  // iteration on (P - J)^T (P - J), independent of the report's eigensolver.
  const int n = 6;
  const auto m = scaled_product_by_rule(n);
  std::vector<double> a(static_cast<std::size_t>(n * n));
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < n; ++c)
      a[static_cast<std::size_t>(i * n + c)] =
          static_cast<double>(m[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)]) / 8.0 -
          1.0 / n;
  std::vector<double> v(static_cast<std::size_t>(n)), w(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 1.0 + 0.1 * i;
  double sigma2 = 0.0;
  for (int it = 0; it < 2000; ++it) {
    std::vector<double> av(static_cast<std::size_t>(n), 0.0);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < n; ++c)
        av[static_cast<std::size_t>(i)] +=
            a[static_cast<std::size_t>(i * n + c)] * v[static_cast<std::size_t>(c)];
    std::fill(w.begin(), w.end(), 0.0);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < n; ++c)
        w[static_cast<std::size_t>(c)] +=
            a[static_cast<std::size_t>(i * n + c)] * av[static_cast<std::size_t>(i)];
    double norm = 0.0, vv = 0.0;
    for (int i = 0; i < n; ++i) {
      norm += w[static_cast<std::size_t>(i)] * w[static_cast<std::size_t>(i)];
      vv += v[static_cast<std::size_t>(i)] * w[static_cast<std::size_t>(i)];
    }
    double vn = 0.0;
    for (double x : v) vn += x * x;
    sigma2 = vv / vn;
    for (int i = 0; i < n; ++i)
      v[static_cast<std::size_t>(i)] = w[static_cast<std::size_t>(i)] / std::sqrt(norm);
  }
  CHECK(inspect_schedule(one_peer(n)).rho_period ==
        doctest::Approx(std::sqrt(sigma2)).epsilon(1e-9));
}

TEST_CASE("one-peer exponential: the union graph, the hash and what has no single W") {
  const Topology t = one_peer(8);
  const Topology expo = make_topology(parse_spec("exponential:8"));
  // The transport connects to every peer some round uses: hops +-1, +-2, +-4.
  CHECK(t.graph.edges() == expo.graph.edges());
  CHECK(t.W.empty());
  CHECK(t.hash() != expo.hash());
  CHECK(t.hash() == one_peer(8).hash());
  CHECK(t.hash() != one_peer(9).hash());
  CHECK_THROWS_AS(static_cast<void>(t.weight(0, 1)), std::logic_error);
  CHECK_THROWS_AS(static_cast<void>(t.neighbors(0)), std::logic_error);
  CHECK_THROWS_AS(static_cast<void>(inspect(t)), std::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(inspect_schedule(expo)), std::invalid_argument);
  // A static topology is its own one-round schedule.
  CHECK(expo.period() == 1);
  CHECK(expo.send_to(3, 7) == expo.graph.neighbors(3));
  CHECK(&expo.mixing(5) == &expo.W);
}

TEST_CASE("one-peer exponential: specs and generator tables refuse what does not apply") {
  CHECK_THROWS_WITH_AS(one_peer(1), "one-peer-exponential needs at least 2 peers, got 1",
                       std::invalid_argument);
  try {
    make_topology(parse_spec("one-peer-exponential:8,weights=metropolis"));
    FAIL("weights accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("has its own weights") != std::string::npos);
  }
  const Topology g = parse_topology(
      "[generator]\nkind = \"one-peer-exponential\"\nsizes = [6]\n"
      "endpoint = \"ipc:///tmp/op-{rank}.sock\"\n",
      "gen.toml");
  CHECK(g.time_varying());
  CHECK(g.period() == 3);
  CHECK(g.peers[5].endpoint == "ipc:///tmp/op-5.sock");
  CHECK(g.hash() == make_topology(parse_spec("one-peer-exponential:6,endpoint=ipc:///tmp/"
                                             "op-{rank}.sock"))
                        .hash());
}

TEST_CASE("one-peer exponential: write -> parse reproduces the topology and its hash") {
  for (int n : {2, 6, 16}) {
    CAPTURE(n);
    const Topology t = one_peer(n);
    std::ostringstream out;
    write_topology(t, out);
    CHECK(out.str().find("schedule = \"one-peer-exponential\"") != std::string::npos);
    CHECK(out.str().find("[[edge]]") == std::string::npos);
    const Topology back = parse_topology(out.str(), "written.toml");
    CHECK(back.time_varying());
    CHECK(back.hash() == t.hash());
    CHECK(back.period() == t.period());
    CHECK(back.graph.edges() == t.graph.edges());
  }
}

TEST_CASE("one-peer exponential: file errors name the line") {
  const std::string peers =
      "[[peer]]\nrank = 0\nendpoint = \"tcp://127.0.0.1:29500\"\n"
      "[[peer]]\nrank = 1\nendpoint = \"tcp://127.0.0.1:29501\"\n"
      "[[peer]]\nrank = 2\nendpoint = \"tcp://127.0.0.1:29502\"\n";
  const auto error = [](const std::string& text) {
    try {
      parse_topology(text, "t.toml");
    } catch (const TopologyFileError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(error("schedule = \"ring\"\n" + peers) ==
        "t.toml:1: unknown schedule 'ring' (known: one-peer-exponential)");
  CHECK(error("schedule = \"one-peer-exponential\"\n" + peers + "[[edge]]\npeers = [0, 1]\n")
            .starts_with("t.toml:11: 'edge' cannot be combined with schedule"));
  CHECK(error("schedule = \"one-peer-exponential\"\nweights = \"metropolis\"\n" + peers)
            .starts_with("t.toml:2: 'weights' cannot be combined with schedule"));
  CHECK(error("schedule = \"one-peer-exponential\"\n"
              "[[peer]]\nrank = 0\nendpoint = \"tcp://127.0.0.1:29500\"\nself_weight = 0.5\n"
              "[[peer]]\nrank = 1\nendpoint = \"tcp://127.0.0.1:29501\"\n")
            .starts_with("t.toml:2: 'self_weight' cannot be combined with schedule"));
  CHECK(error("schedule = \"one-peer-exponential\"\n"
              "[[peer]]\nrank = 0\nendpoint = \"tcp://127.0.0.1:29500\"\n") ==
        "t.toml:1: one-peer-exponential needs at least 2 peers, got 1");
  CHECK(error("schedule = \"one-peer-exponential\"\n[generator]\nkind = \"ring\"\nsizes = [3]\n")
            .starts_with("t.toml:1: 'schedule' cannot be combined with [generator]"));
}
