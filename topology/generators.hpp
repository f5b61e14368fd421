#pragma once
// Graph generators and the spec strings that name them ("ring:8", "torus:4x4",
// "random-regular:256,d=4,seed=7").

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "topology/topology.hpp"
#include "topology/weights.hpp"

namespace gossip::topology {

enum class Kind {
  ring,
  torus,
  grid,
  complete,
  star,
  hypercube,
  exponential,
  erdos_renyi,
  random_regular,
  one_peer_exponential  // time-varying: one W^(t) per round (one_peer_exponential_schedule)
};

std::string_view kind_name(Kind k);
Kind parse_kind(std::string_view name);  // throws std::invalid_argument listing the known kinds
// The one kind a kind-specific key belongs to ("p": erdos-renyi; "d" or "degree":
// random-regular), nullopt for keys every kind takes. A key on another kind is a mistake
// (ring:8,p=0.1 is not a random graph); specs and [generator] tables both refuse it.
std::optional<Kind> kind_of_key(std::string_view key);

// Everything needed to build a topology from a generator.
struct GeneratorSpec {
  Kind kind = Kind::ring;
  std::vector<int> sizes;         // ring/complete/star/hypercube/...: {n}; torus/grid: dims
  double p = 0.0;                 // erdos-renyi edge probability
  int degree = 0;                 // random-regular degree
  std::uint64_t seed = 1;         // random generators
  std::optional<Scheme> weights;  // unset: the generator's default (default_scheme)
  // Base endpoint: rank r binds port + r, or "{rank}" is replaced. Empty: default_endpoint(n).
  std::string endpoint;

  // Product of the sizes in 64 bits, saturating at UINT64_MAX (0 when a size is below 1).
  std::uint64_t peer_count() const;
  int peers() const;              // peer_count(); throws std::invalid_argument above kMaxPeers
  std::string to_string() const;  // canonical spec string, parse_spec(to_string()) round-trips
};

// "KIND:SIZES[,key=value...]"; SIZES is "n" or "AxBxC". Keys: p (erdos-renyi), d (degree,
// random-regular), seed (the random kinds), weights, endpoint. Throws std::invalid_argument naming
// the bad part, also for a key the kind does not use.
GeneratorSpec parse_spec(std::string_view text);

// A seed as specs and `topo generate --seed` take it: decimal digits for [0, 2^64 - 1], nothing
// else (no sign: -1 is refused, not wrapped to 2^64 - 1; 2^64 is refused, not saturated). Throws
// std::invalid_argument.
std::uint64_t parse_seed(std::string_view text);

// Largest generated topology: peers, and undirected edges (the graph, W and the spectral report
// take about 120 bytes per edge: `topo inspect` of 2·10^7 edges needs about 2.5 GB).
inline constexpr std::uint64_t kMaxPeers = 10'000'000;
inline constexpr std::uint64_t kMaxEdges = 20'000'000;

// Edges the generator would make (for erdos-renyi the expected count p·n(n-1)/2), computed without
// building the graph. Throws std::invalid_argument as generate_graph does on bad sizes or degree.
std::uint64_t edge_count(const GeneratorSpec& spec);

// How many times a random generator redraws a disconnected graph before giving up.
inline constexpr int kMaxRedraws = 100;

// For a time-varying kind: the union of every round's links.
Graph generate_graph(const GeneratorSpec& spec);

// Whether the kind makes a time-varying topology (Topology::schedule) rather than one W.
bool time_varying_kind(Kind kind);

// The one-peer exponential graph's schedule (Ying et al. NeurIPS 2021): tau = ceil(log2 n)
// matrices; in round t (k = t mod tau) peer i takes x of peer (i - 2^k) mod n and sends its own
// to (i + 2^k) mod n, W^(t) = (I + P_k) / 2. Doubly stochastic, not symmetric for n > 2; the
// product over a period is exactly (1/n) 11^T when n is a power of two. n >= 2, else
// std::invalid_argument.
std::vector<MixingRows> one_peer_exponential_schedule(int n);
Scheme default_scheme(Kind kind);
// What make_topology throws when the endpoint template gives a rank an endpoint that is not one
// (endpoint_problem): a [generator] table reports it at its 'endpoint' line.
struct EndpointError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Graph + weights (or schedule) + endpoints. Throws std::invalid_argument on impossible parameters
// (EndpointError for endpoints, naming the spec and the rank).
Topology make_topology(const GeneratorSpec& spec);

// Endpoint of `rank` given a base endpoint: "{rank}" is replaced by the rank; otherwise a
// tcp:// endpoint gets its port increased by rank.
std::string endpoint_for(std::string_view base, int rank);

// tcp://127.0.0.1:29500 (+rank) while the ports last, else ipc:///tmp/gossip-{rank}.sock.
std::string default_endpoint(int peers);

}  // namespace gossip::topology
