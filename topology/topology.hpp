#pragma once
// The topology layer's data model: peers, the undirected graph between them and the mixing
// matrix W, fixed or, for a time-varying topology, one W^(t) per round of a periodic schedule.
// Knows nothing of sockets or kernels.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gossip::topology {

// A peer's long-term CURVE public key (Curve25519, 32 bytes). Written in files as 64 hex
// digits: Z85, ZeroMQ's own text form, uses '#', '"' and ':' which TOML comments and quotes eat.
using PublicKey = std::array<std::uint8_t, 32>;

// The key of 64 hex digits (either case), nullopt for anything else.
std::optional<PublicKey> parse_key_hex(std::string_view hex);
// 64 lowercase hex digits.
std::string key_hex(const PublicKey& key);

// One non-zero of a row of W: the weight W_ij that peer i gives to peer j.
struct Neighbor {
  int rank = 0;
  double weight = 0.0;
};

// Rows of a mixing matrix: row i lists (j, W_ij) for the j it weighs, i included, by rank.
using MixingRows = std::vector<std::vector<Neighbor>>;

struct Peer {
  int rank = 0;
  std::string endpoint;       // ZeroMQ endpoint the peer binds: tcp://host:port or ipc://path
  std::optional<int> device;  // GPU index, when the file names one
};

// Why `endpoint` cannot be a peer's endpoint, "" when it can. A peer binds its endpoint and the
// others connect to it, so: tcp://HOST:PORT with a HOST other than empty or * (IPv6 as [::1] or
// ::1) and PORT decimal digits in 1..65535 (not *, not 0: ZeroMQ would bind a random port), or
// ipc:///absolute/path; no spaces or control characters anywhere.
std::string endpoint_problem(std::string_view endpoint);

// What two valid endpoints share when they name the same socket: host lowercased, localhost as
// 127.0.0.1, IPv6 without brackets, the port as a number, an ipc path lexically normalised.
std::string endpoint_key(std::string_view endpoint);

// The host of "tcp://HOST:PORT" as written (IPv6 brackets removed); "" for ipc:// and anything
// that is not tcp://.
std::string endpoint_host(std::string_view endpoint);

// An undirected simple graph on ranks 0..n-1, adjacency lists sorted and free of self loops.
class Graph {
 public:
  Graph() = default;
  explicit Graph(int n);
  int size() const { return static_cast<int>(adj_.size()); }
  // Adds the edge {a, b}; returns false (and changes nothing) if it is a self loop or exists.
  bool add_edge(int a, int b);
  bool has_edge(int a, int b) const;
  const std::vector<int>& neighbors(int i) const { return adj_[static_cast<std::size_t>(i)]; }
  int degree(int i) const { return static_cast<int>(neighbors(i).size()); }
  std::size_t edge_count() const;
  // Edges {a, b} with a < b, in ascending order.
  std::vector<std::pair<int, int>> edges() const;
  // Hop distances from `src` by breadth-first search; -1 for peers it cannot reach.
  std::vector<int> distances_from(int src) const;
  // Sizes of the connected components, largest first.
  std::vector<int> component_sizes() const;
  bool connected() const { return component_sizes().size() <= 1; }
  // The connected components, each ascending, ordered by their smallest rank.
  std::vector<std::vector<int>> components() const;
  // The same graph without the edges of the ranks in `gone` (they stay, as isolated ranks): what
  // is left when those peers leave a run (transport.on_peer_loss = "continue").
  Graph without(std::span<const int> gone) const;
  // Connected with n − 1 edges: no cycles (RelaySum's requirement).
  bool is_tree() const {
    return edge_count() + 1 == static_cast<std::size_t>(size()) && connected();
  }

 private:
  std::vector<std::vector<int>> adj_;
};

// A validated topology: peers, graph and mixing matrix, ready for the gossip layer.
//
// Static (schedule empty): W is symmetric and doubly stochastic, the same every round, and peer i
// exchanges with its graph neighbours in both directions.
// Time-varying (schedule non-empty): round t mixes with W^(t) = schedule[t mod period()], doubly
// stochastic but not symmetric in general; in round t peer i receives from the j != i of row i
// (receive_from) and sends to the j != i whose row names i (send_to). `graph` is then the union
// of every round's links, which the transport connects once at start-up, and W is empty.
struct Topology {
  std::vector<Peer> peers;  // indexed by rank
  Graph graph;              // static: the graph of W; time-varying: the union of the schedule
  MixingRows W;             // static only: row i: (j, W_ij) for j in N(i) including i, by rank
  std::vector<MixingRows> schedule;  // time-varying only: W^(t) for t = 0 .. period - 1
  std::string description;           // e.g. "ring n=8, weights=ring" or the file path
  // Indexed by rank: every peer's CURVE public key, or empty when the topology has none. With
  // keys, every link is encrypted and only these keys are admitted (docs/transport.md, "CURVE").
  std::vector<PublicKey> public_keys;

  int size() const { return graph.size(); }
  bool time_varying() const { return !schedule.empty(); }
  // Rounds after which the mixing matrices repeat: 1 for a static topology.
  std::size_t period() const { return schedule.empty() ? 1 : schedule.size(); }
  // The mixing matrix of round t: W, or schedule[t mod period()].
  const MixingRows& mixing(std::uint64_t round) const {
    return schedule.empty() ? W : schedule[round % schedule.size()];
  }
  // Round t's peers whose message i takes (row i of W^(t) without i) and that take i's message
  // (column i without i), ascending; both are i's graph neighbours for a static topology.
  std::vector<int> receive_from(int i, std::uint64_t round) const;
  std::vector<int> send_to(int i, std::uint64_t round) const;

  // W_ij, 0 when absent; row i of W without the diagonal entry (the peers i exchanges messages
  // with); W_ii. Static topologies only: a time-varying one throws std::logic_error (use
  // mixing(round)).
  double weight(int i, int j) const;
  std::vector<Neighbor> neighbors(int i) const;
  double self_weight(int i) const { return weight(i, i); }
  // A stable 64-bit hash of n, the edges, W (bit patterns), the endpoints, the schedule's
  // matrices when there is one and, when there are any, the public keys (a static topology
  // without keys hashes as before schedules and keys existed). Peers compare it at start-up to
  // prove they loaded the same topology.
  std::uint64_t hash() const;
  bool authenticated() const { return !public_keys.empty(); }
};

// W_ij of the mixing matrix `rows` (rows sorted by rank), 0 when absent.
double row_weight(const MixingRows& rows, int i, int j);

}  // namespace gossip::topology
