// Generators: structure of each graph, seeded randomness, and the errors for impossible input.

#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "topology/generators.hpp"

using namespace gossip::topology;

TEST_CASE("structure of each generator") {
  CHECK(generate_graph(parse_spec("ring:5")).edge_count() == 5);
  CHECK(generate_graph(parse_spec("ring:2")).edge_count() == 1);
  CHECK(generate_graph(parse_spec("ring:1")).edge_count() == 0);
  CHECK(generate_graph(parse_spec("torus:3x4")).edge_count() == 24);
  CHECK(generate_graph(parse_spec("torus:3x3x3")).edge_count() == 81);
  CHECK(generate_graph(parse_spec("grid:3x4")).edge_count() == 17);
  CHECK(generate_graph(parse_spec("complete:6")).edge_count() == 15);
  CHECK(generate_graph(parse_spec("star:6")).degree(0) == 5);
  const auto cube = generate_graph(parse_spec("hypercube:32"));
  for (int i = 0; i < 32; ++i) CHECK(cube.degree(i) == 5);
  // Exponential: hops 1, 2, 4, 8 both ways; for n = 16 the hop 8 coincides both ways.
  const auto expo = generate_graph(parse_spec("exponential:16"));
  for (int i = 0; i < 16; ++i) CHECK(expo.degree(i) == 7);
  CHECK(expo.has_edge(3, 11));
  CHECK(expo.has_edge(3, 15));  // 3 - 4 mod 16
  CHECK_FALSE(expo.has_edge(3, 6));
}

TEST_CASE("trees: connected with n - 1 edges") {
  for (const char* spec : {"grid:8", "star:6", "ring:1", "ring:2"})
    CHECK_MESSAGE(generate_graph(parse_spec(spec)).is_tree(), spec);
  for (const char* spec : {"ring:3", "grid:3x3", "complete:4"})
    CHECK_MESSAGE(!generate_graph(parse_spec(spec)).is_tree(), spec);
  Graph forest(4);  // n - 1 edges but two components
  forest.add_edge(0, 1);
  forest.add_edge(1, 2);
  forest.add_edge(2, 0);
  CHECK_FALSE(forest.is_tree());
}

TEST_CASE("random generators are seeded, connected and regular where asked") {
  const auto a = generate_graph(parse_spec("random-regular:200,d=4,seed=3"));
  const auto b = generate_graph(parse_spec("random-regular:200,d=4,seed=3"));
  const auto c = generate_graph(parse_spec("random-regular:200,d=4,seed=4"));
  CHECK(a.edges() == b.edges());
  CHECK(a.edges() != c.edges());
  for (int i = 0; i < 200; ++i) CHECK(a.degree(i) == 4);
  CHECK(a.connected());
  const auto er = generate_graph(parse_spec("erdos-renyi:300,p=0.05,seed=1"));
  CHECK(er.connected());
  // E[edges] = p n(n-1)/2 = 2242.5, sd ~ 46: a 6 sd window.
  CHECK(er.edge_count() > 2242 - 280);
  CHECK(er.edge_count() < 2242 + 280);
  CHECK(generate_graph(parse_spec("erdos-renyi:300,p=0.05,seed=1")).edges() == er.edges());
}

TEST_CASE("impossible parameters are errors that say why") {
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("erdos-renyi:50,p=0.0")),
                       doctest::Contains("no connected graph in 100 draws"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("erdos-renyi:50,p=0.0")),
                       doctest::Contains("50 components"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("random-regular:7,d=3")),
                       doctest::Contains("n*d even"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("random-regular:7,d=7")),
                       doctest::Contains("[0, 6]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("hypercube:12")),
                       doctest::Contains("power of two"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("moebius:8"),
                       doctest::Contains("unknown topology kind 'moebius'"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("ring"), doctest::Contains("KIND:SIZES"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("ring:8,q=3"), doctest::Contains("unknown key 'q'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("ring:eight"), doctest::Contains("integer"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("erdos-renyi:8"), doctest::Contains("needs p"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("ring:0")), doctest::Contains("at least 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("ring:4x4")), doctest::Contains("one size"),
                       std::invalid_argument);
}

TEST_CASE("spec strings round-trip and endpoints follow the rank") {
  for (const char* text : {"ring:8", "torus:4x4", "erdos-renyi:16,p=0.25,seed=9",
                           "random-regular:12,d=3,seed=2", "star:5,weights=best-constant"}) {
    const auto spec = parse_spec(text);
    CHECK(parse_spec(spec.to_string()).to_string() == spec.to_string());
    CHECK(make_topology(parse_spec(spec.to_string())).hash() == make_topology(spec).hash());
  }
  CHECK(endpoint_for("tcp://127.0.0.1:6000", 3) == "tcp://127.0.0.1:6003");
  CHECK(endpoint_for("ipc:///tmp/p-{rank}.sock", 12) == "ipc:///tmp/p-12.sock");
  CHECK_THROWS_AS(endpoint_for("tcp://127.0.0.1:65535", 1), std::invalid_argument);
  CHECK(make_topology(parse_spec("ring:70000")).peers[69999].endpoint ==
        "ipc:///tmp/gossip-69999.sock");
}

TEST_CASE("peers are counted in 64 bits: a product past int is refused, not wrapped") {
  // 65536 x 65537 wrapped to a small int (and crashed); 65536^2 wrapped to 0, 10^15 to negative.
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("torus:65536x65537")),
                       doctest::Contains("4,295,032,832 peers, more than 10,000,000"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("torus:65536x65536")),
                       doctest::Contains("4,294,967,296 peers, more than 10,000,000"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_topology(parse_spec("torus:100000x100000x100000")),
                       doctest::Contains("1,000,000,000,000,000 peers"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("grid:100000x100000x100000x100000x100000").peers(),
                       doctest::Contains("overflows 64 bits"), std::invalid_argument);
  CHECK(parse_spec("torus:65536x65537").peer_count() == 65536ULL * 65537ULL);
  CHECK(parse_spec("torus:2500x4000").peers() == 10'000'000);
}

TEST_CASE("edge_count matches the generated graph, and the edge limit is checked up front") {
  for (const char* text : {"ring:1",
                           "ring:2",
                           "ring:3",
                           "ring:9",
                           "torus:2x3",
                           "torus:3x4",
                           "torus:2x2x2",
                           "torus:3x3x3",
                           "torus:1x5",
                           "grid:3x4",
                           "grid:1x5",
                           "grid:2x2x3",
                           "complete:1",
                           "complete:7",
                           "star:1",
                           "star:6",
                           "hypercube:1",
                           "hypercube:2",
                           "hypercube:32",
                           "random-regular:10,d=3",
                           "random-regular:1,d=0"}) {
    CAPTURE(text);
    const auto spec = parse_spec(text);
    CHECK(edge_count(spec) == generate_graph(spec).edge_count());
  }
  for (int n = 1; n <= 40; ++n) {  // exponential: hops h and n - h coincide (n = 3, 5, 6, 9, ...)
    const auto spec = parse_spec("exponential:" + std::to_string(n));
    CAPTURE(n);
    CHECK(edge_count(spec) == generate_graph(spec).edge_count());
  }
  CHECK(edge_count(parse_spec("erdos-renyi:100,p=0.5")) == 2475);
  // These ran for minutes and took gigabytes; now they fail at once.
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("complete:100000")),
                       doctest::Contains("4,999,950,000 edges, more than the limit of 20,000,000"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("complete:20000")),
                       doctest::Contains("199,990,000 edges"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("random-regular:20000,d=19999")),
                       doctest::Contains("199,990,000 edges"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("hypercube:8388608")),
                       doctest::Contains("96,468,992 edges"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(generate_graph(parse_spec("erdos-renyi:10000,p=0.5")),
                       doctest::Contains("about 24,997,500 edges"), std::invalid_argument);
  CHECK(edge_count(parse_spec("complete:6325")) <= kMaxEdges);  // the largest complete graph
  CHECK(edge_count(parse_spec("complete:6326")) > kMaxEdges);
}

TEST_CASE("spec values: p in [0, 1], 64-bit seeds, and no keys the kind ignores") {
  for (const char* p : {"nan", "-nan", "inf", "-0.5", "1.5", "abc", "0.5x"})
    CHECK_THROWS_WITH_AS(parse_spec(std::string("erdos-renyi:16,p=") + p),
                         doctest::Contains("p must be a number in [0, 1]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("erdos-renyi:16,p=1e-320"), doctest::Contains("out of range"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("erdos-renyi:16,p=1e-320"),
                       doctest::Contains("p must be a number in [0, 1]"), std::invalid_argument);
  CHECK(parse_spec("random-regular:8,d=3,seed=99999999999").seed == 99999999999ULL);
  CHECK(parse_spec("erdos-renyi:8,p=0.5,seed=18446744073709551615").seed == UINT64_MAX);
  for (const char* seed : {"18446744073709551616", "-1", "7x"})
    CHECK_THROWS_WITH_AS(parse_spec(std::string("erdos-renyi:8,p=0.5,seed=") + seed),
                         doctest::Contains("seed must be an integer in [0, 2^64 - 1]"),
                         std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("ring:8,p=0.1"),
                       doctest::Contains("ring does not use the key 'p' (a key of erdos-renyi)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_spec("torus:4x4,d=3"),
                       doctest::Contains("torus does not use the key 'd'"), std::invalid_argument);
  CHECK(parse_spec("ring:8,seed=99999999999").seed == 99999999999u);  // a seed is harmless
  // parse_seed, which `topo generate --seed` shares: no sign, no spaces, no saturation.
  CHECK(parse_seed("0") == 0u);
  CHECK(parse_seed("18446744073709551615") == UINT64_MAX);
  for (const char* seed : {"-1", "+1", " 1", "1 ", "", "18446744073709551616", "1,weights=ring"}) {
    const std::string expected =
        std::string("seed must be an integer in [0, 2^64 - 1], got '") + seed + "'";
    CHECK_THROWS_WITH_AS(parse_seed(seed), expected.c_str(), std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(parse_spec("random-regular:8,d=3,p=0.5"),
                       doctest::Contains("random-regular does not use the key 'p'"),
                       std::invalid_argument);
}
