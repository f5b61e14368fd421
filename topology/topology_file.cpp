#include "topology/topology_file.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "topology/generators.hpp"
#include "topology/weights.hpp"

namespace gossip::topology {

TopologyFileError::TopologyFileError(const std::string& file, long line, const std::string& what)
    : std::runtime_error(fmt::format("{}:{}: {}", file, line, what)), file_(file), line_(line) {}

namespace {

long line_of(const toml::node& n) {
  return static_cast<long>(n.source().begin.line);
}

class Parser {
 public:
  explicit Parser(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void fail(long line, const std::string& msg) const {
    throw TopologyFileError(name_, line, msg);
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& msg) const {
    fail(line_of(n), msg);
  }

  void only_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
                 std::string_view where) const {
    for (const auto& [key, node] : t) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end())
        fail(node, fmt::format("unknown key '{}' in {} (allowed: {})", key.str(), where,
                               fmt::join(allowed, ", ")));
    }
  }

  long long get_int(const toml::table& t, std::string_view key, std::string_view where) const {
    const auto* n = t.get(key);
    if (!n) fail(t, fmt::format("{} needs '{}'", where, key));
    if (!n->is_integer()) fail(*n, fmt::format("'{}' in {} must be an integer", key, where));
    return n->as_integer()->get();
  }

  // An integer in [lo, hi], checked before it is narrowed.
  long long get_int_in(const toml::node& n, std::string_view what, long long lo,
                       long long hi) const {
    if (!n.is_integer()) fail(n, fmt::format("{} must be an integer", what));
    const long long v = n.as_integer()->get();
    if (v < lo || v > hi)
      fail(n, fmt::format("{} must be an integer in [{}, {}], got {}", what, lo, hi, v));
    return v;
  }

  // A finite number: TOML's nan and inf slip past every comparison that validates a weight.
  double get_number(const toml::node& n, std::string_view what) const {
    double v = 0.0;
    if (n.is_integer())
      v = static_cast<double>(n.as_integer()->get());
    else if (n.is_floating_point())
      v = n.as_floating_point()->get();
    else
      fail(n, fmt::format("{} must be a number", what));
    if (!std::isfinite(v)) fail(n, fmt::format("{} must be a finite number, got {}", what, v));
    return v;
  }

  std::string get_string(const toml::node& n, std::string_view what) const {
    if (!n.is_string()) fail(n, fmt::format("{} must be a string", what));
    return n.as_string()->get();
  }

  PublicKey get_key(const toml::node& n, std::string_view what) const {
    const std::string text = get_string(n, what);
    const auto key = parse_key_hex(text);
    if (!key) {
      const bool all_hex = std::all_of(text.begin(), text.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c));
      });
      fail(n,
           fmt::format("{} must be 64 hex digits (a 32-byte CURVE key, as `gossip keygen` writes "
                       "it in NAME.pub), got {}",
                       what,
                       all_hex ? fmt::format("{} digits", text.size())
                               : std::string("a character that is not a hex digit")));
    }
    return *key;
  }

  // Two peers with one key could not be told apart: the key is how a frame's sender is known.
  void check_distinct_keys(const Topology& t, const std::vector<long>& key_line) const {
    std::map<PublicKey, int> owner;
    for (int r = 0; r < static_cast<int>(t.public_keys.size()); ++r) {
      const auto [it, fresh] = owner.try_emplace(t.public_keys[static_cast<std::size_t>(r)], r);
      if (!fresh)
        fail(
            key_line[static_cast<std::size_t>(r)],
            fmt::format("peer {} has the public key of peer {} (line {}): every peer needs its own "
                        "key pair",
                        r, it->second, key_line[static_cast<std::size_t>(it->second)]));
    }
  }

  const toml::array& get_array(const toml::node& n, std::string_view what) const {
    if (!n.is_array()) fail(n, fmt::format("{} must be an array", what));
    return *n.as_array();
  }

  Topology parse(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, name_);
    } catch (const toml::parse_error& e) {
      fail(static_cast<long>(e.source().begin.line), std::string(e.description()));
    }
    only_keys(root, {"name", "generator", "peer", "edge", "weights", "matrix", "schedule"},
              "the topology file");
    if (const auto* g = root.get("generator")) {
      for (std::string_view k : {"peer", "edge", "matrix", "weights", "schedule"})
        if (const auto* other = root.get(k))
          fail(*other, fmt::format("'{}' cannot be combined with [generator] (line {}): a file is "
                                   "either a generator or an explicit list of peers and edges",
                                   k, line_of(*g)));
      if (!g->is_table()) fail(*g, "'generator' must be a table: [generator]");
      return parse_generator(*g->as_table());
    }
    return parse_explicit(root);
  }

 private:
  Topology parse_generator(const toml::table& g) {
    only_keys(
        g,
        {"kind", "sizes", "weights", "seed", "p", "degree", "endpoint", "devices", "public_keys"},
        "[generator]");
    GeneratorSpec spec;
    const auto* kind = g.get("kind");
    if (!kind) fail(g, "[generator] needs 'kind'");
    try {
      spec.kind = parse_kind(get_string(*kind, "'kind'"));
    } catch (const std::invalid_argument& e) {
      fail(*kind, e.what());
    }
    const auto* sizes = g.get("sizes");
    if (!sizes) fail(g, "[generator] needs 'sizes', e.g. sizes = [8] or sizes = [4, 4]");
    constexpr auto kMaxSize = static_cast<long long>(kMaxPeers);
    if (sizes->is_integer()) {
      spec.sizes.push_back(static_cast<int>(get_int_in(*sizes, "'sizes'", 1, kMaxSize)));
    } else {
      for (const auto& s : get_array(*sizes, "'sizes'")) {
        if (!s.is_integer()) fail(s, "'sizes' must hold integers");
        spec.sizes.push_back(static_cast<int>(get_int_in(s, "a size", 1, kMaxSize)));
      }
    }
    if (const auto* w = g.get("weights")) {
      try {
        spec.weights = parse_scheme(get_string(*w, "'weights'"));
      } catch (const std::invalid_argument& e) {
        fail(*w, e.what());
      }
      if (*spec.weights == Scheme::explicit_weights)
        fail(*w, "a generator cannot have explicit weights; list the edges instead");
    }
    for (const char* key : {"p", "degree"})  // as in specs (kind_of_key); a seed is harmless
      if (const auto* n = g.get(key); n && *kind_of_key(key) != spec.kind)
        fail(*n, fmt::format("kind \"{}\" does not use '{}' (a key of {})", kind_name(spec.kind),
                             key, kind_name(*kind_of_key(key))));
    if (const auto* n = g.get("seed"))
      spec.seed = static_cast<std::uint64_t>(
          get_int_in(*n, "'seed'", 0, std::numeric_limits<std::int64_t>::max()));
    if (const auto* p = g.get("p")) {
      spec.p = get_number(*p, "'p'");
      if (!(spec.p >= 0.0 && spec.p <= 1.0))
        fail(*p, fmt::format("'p' must be a number in [0, 1], got {}", spec.p));
    }
    if (const auto* n = g.get("degree"))
      spec.degree =
          static_cast<int>(get_int_in(*n, "'degree'", 0, std::numeric_limits<int>::max()));
    if (spec.kind == Kind::erdos_renyi && !g.get("p")) fail(g, "erdos-renyi needs 'p'");
    if (spec.kind == Kind::random_regular && !g.get("degree"))
      fail(g, "random-regular needs 'degree'");
    const auto* endpoint = g.get("endpoint");
    if (endpoint) spec.endpoint = get_string(*endpoint, "'endpoint'");
    Topology t;
    try {
      t = make_topology(spec);
    } catch (const EndpointError& e) {
      fail(endpoint ? line_of(*endpoint) : line_of(g), e.what());
    } catch (const std::invalid_argument& e) {
      fail(g, e.what());
    }
    if (const auto* d = g.get("devices")) {
      const auto& arr = get_array(*d, "'devices'");
      if (arr.size() != t.peers.size())
        fail(*d,
             fmt::format("'devices' lists {} entries for {} peers", arr.size(), t.peers.size()));
      for (std::size_t r = 0; r < arr.size(); ++r) {
        if (!arr[r].is_integer()) fail(arr[r], "'devices' must hold integers");
        t.peers[r].device =
            static_cast<int>(get_int_in(arr[r], "a device", 0, std::numeric_limits<int>::max()));
      }
    }
    if (const auto* k = g.get("public_keys")) {
      const auto& arr = get_array(*k, "'public_keys'");
      if (arr.size() != t.peers.size())
        fail(*k, fmt::format("'public_keys' lists {} keys for {} peers: give every peer a key, "
                             "in rank order",
                             arr.size(), t.peers.size()));
      std::vector<long> key_line;
      for (const auto& key : arr) {
        t.public_keys.push_back(get_key(key, "a public key"));
        key_line.push_back(line_of(key));
      }
      check_distinct_keys(t, key_line);
    }
    t.description = fmt::format("{} ({})", name_, t.description);
    return t;
  }

  Topology parse_explicit(const toml::table& root) {
    const auto* peers_node = root.get("peer");
    if (!peers_node)
      fail(1, "no peers: write a [generator] table or [[peer]] entries (rank, endpoint)");
    if (!peers_node->is_array_of_tables())
      fail(*peers_node, "'peer' must be written as [[peer]] tables");
    const auto& peer_arr = *peers_node->as_array();
    const int n = static_cast<int>(peer_arr.size());

    Topology t;
    t.peers.resize(static_cast<std::size_t>(n));
    std::vector<long> peer_line(static_cast<std::size_t>(n), 0);
    std::vector<std::optional<double>> self_weight(static_cast<std::size_t>(n));
    std::map<std::string, std::pair<std::string, long>> endpoint_line;  // key -> (as written, line)
    std::vector<std::optional<PublicKey>> keys(static_cast<std::size_t>(n));
    std::vector<long> key_line(static_cast<std::size_t>(n), 0);
    long first_keyed = 0, first_unkeyed = 0;
    for (const auto& node : peer_arr) {
      const auto& p = *node.as_table();
      only_keys(p, {"rank", "endpoint", "device", "self_weight", "public_key"}, "[[peer]]");
      const long long rank = get_int(p, "rank", "[[peer]]");
      if (rank < 0 || rank >= n)
        fail(p, fmt::format("rank {} is out of range: {} peers are listed, so ranks are 0..{}",
                            rank, n, n - 1));
      const auto r = static_cast<std::size_t>(rank);
      if (peer_line[r] != 0)
        fail(p, fmt::format("rank {} is listed twice (first at line {})", rank, peer_line[r]));
      peer_line[r] = line_of(p);
      t.peers[r].rank = static_cast<int>(rank);
      const auto* ep = p.get("endpoint");
      if (!ep)
        fail(p, fmt::format("peer {} needs 'endpoint', e.g. \"tcp://127.0.0.1:29500\"", rank));
      const std::string& endpoint = t.peers[r].endpoint = get_string(*ep, "'endpoint'");
      if (const auto why = endpoint_problem(endpoint); !why.empty())
        fail(*ep, fmt::format("endpoint '{}' {}", endpoint, why));
      // Compared by the socket they name: tcp://localhost:29500 is tcp://127.0.0.1:29500.
      if (auto [it, fresh] =
              endpoint_line.try_emplace(endpoint_key(endpoint), endpoint, line_of(p));
          !fresh) {
        const auto& [first, first_line] = it->second;
        fail(*ep, first == endpoint
                      ? fmt::format("endpoint '{}' is used twice (first at line {})", endpoint,
                                    first_line)
                      : fmt::format("endpoint '{}' is the same socket as '{}' (line {})", endpoint,
                                    first, first_line));
      }
      if (const auto* d = p.get("device"))
        t.peers[r].device =
            static_cast<int>(get_int_in(*d, "'device'", 0, std::numeric_limits<int>::max()));
      if (const auto* sw = p.get("self_weight")) self_weight[r] = get_number(*sw, "'self_weight'");
      if (const auto* k = p.get("public_key")) {
        keys[r] = get_key(*k, "'public_key'");
        key_line[r] = line_of(*k);
        if (first_keyed == 0) first_keyed = line_of(p);
      } else if (first_unkeyed == 0) {
        first_unkeyed = line_of(p);
      }
    }
    // All or nothing: one unkeyed peer would be a hole in the allowlist, or a peer nobody can
    // reach; either way the run could not be what the keyed peers promise.
    if (first_keyed != 0 && first_unkeyed != 0)
      fail(first_unkeyed,
           fmt::format("this peer has no 'public_key' while the peer at line {} has one: give "
                       "every peer a key (CURVE) or none",
                       first_keyed));
    if (first_keyed != 0) {
      for (const auto& k : keys) t.public_keys.push_back(*k);
      check_distinct_keys(t, key_line);
    }

    if (const auto* schedule = root.get("schedule")) {
      read_schedule(root, *schedule, t, self_weight, peer_line);
      t.description = fmt::format("{} (explicit, {} peers, time-varying, period {})", name_, n,
                                  t.schedule.size());
      return t;
    }

    t.graph = Graph(n);
    std::map<std::pair<int, int>, double> edge_weight;  // (min, max) -> weight, when given
    std::map<std::pair<int, int>, long> edge_line;
    std::size_t weighted = 0, unweighted = 0;
    long first_unweighted = 0, first_weighted = 0;
    if (const auto* edges_node = root.get("edge")) {
      if (!edges_node->is_array_of_tables())
        fail(*edges_node, "'edge' must be written as [[edge]] tables");
      for (const auto& node : *edges_node->as_array()) {
        const auto& e = *node.as_table();
        only_keys(e, {"peers", "weight"}, "[[edge]]");
        const auto* pn = e.get("peers");
        if (!pn) fail(e, "[[edge]] needs 'peers = [a, b]'");
        const auto& pa = get_array(*pn, "'peers'");
        if (pa.size() != 2 || !pa[0].is_integer() || !pa[1].is_integer())
          fail(*pn, "'peers' must be two ranks, e.g. peers = [0, 1]");
        const long long a = pa[0].as_integer()->get(), b = pa[1].as_integer()->get();
        for (long long x : {a, b})
          if (x < 0 || x >= n)
            fail(*pn, fmt::format("edge names rank {}, out of range 0..{}", x, n - 1));
        if (a == b)
          fail(*pn, fmt::format("self edge {}-{}: a peer always mixes with itself", a, b));
        const std::pair<int, int> key = std::minmax(static_cast<int>(a), static_cast<int>(b));
        if (auto it = edge_line.find(key); it != edge_line.end())
          fail(*pn, fmt::format("duplicate edge {}-{} (first at line {})", key.first, key.second,
                                it->second));
        edge_line[key] = line_of(e);
        t.graph.add_edge(key.first, key.second);
        if (const auto* w = e.get("weight")) {
          const double v = get_number(*w, "'weight'");
          if (v < 0.0) fail(*w, fmt::format("negative weight {} on edge {}-{}", v, a, b));
          edge_weight[key] = v;
          if (weighted++ == 0) first_weighted = line_of(e);
        } else if (unweighted++ == 0) {
          first_unweighted = line_of(e);
        }
      }
    }

    const auto* scheme_node = root.get("weights");
    const auto* matrix_node = root.get("matrix");
    if (matrix_node && weighted > 0)
      fail(*matrix_node,
           fmt::format("give weights either per edge (line {}) or as a matrix, not both",
                       first_weighted));
    if (weighted > 0 && unweighted > 0)
      fail(first_unweighted,
           fmt::format("edge has no weight while the edge at line {} has one: give "
                       "every edge a weight, or none and a 'weights' scheme",
                       first_weighted));
    std::optional<Scheme> scheme;
    if (scheme_node) {
      try {
        scheme = parse_scheme(get_string(*scheme_node, "'weights'"));
      } catch (const std::invalid_argument& e) {
        fail(*scheme_node, e.what());
      }
    }
    // A lone peer (no edges) may state its self weight: that is its whole row.
    const bool lone_self_weight = t.graph.edge_count() == 0 && root.get("edge") == nullptr &&
                                  std::any_of(self_weight.begin(), self_weight.end(),
                                              [](const auto& w) { return w.has_value(); });
    const bool explicit_w = matrix_node || weighted > 0 || lone_self_weight;
    // Explicit weights may say they are the best-constant ones (as `topo generate` writes them
    // when a diagonal entry is negative): then they are checked against the scheme.
    const bool best_constant = scheme && *scheme == Scheme::best_constant;
    if (scheme && explicit_w && *scheme != Scheme::explicit_weights && !best_constant)
      fail(*scheme_node,
           fmt::format("weights = \"{}\" conflicts with the explicit weights in the file",
                       scheme_name(*scheme)));
    if (scheme && *scheme == Scheme::explicit_weights && !explicit_w)
      fail(*scheme_node, "weights = \"explicit\" but no edge has a weight and there is no matrix");

    std::vector<long> row_line = peer_line;
    if (matrix_node) {
      read_matrix(*matrix_node, n, t, row_line);
    } else if (explicit_w) {
      t.W.assign(static_cast<std::size_t>(n), {});
      for (int i = 0; i < n; ++i) {
        double off = 0.0;
        for (int j : t.graph.neighbors(i)) off += edge_weight[std::minmax(i, j)];
        const double self = self_weight[static_cast<std::size_t>(i)].value_or(1.0 - off);
        auto& row = t.W[static_cast<std::size_t>(i)];
        for (int j : t.graph.neighbors(i)) {
          if (j > i && (row.empty() || row.back().rank < i)) row.push_back({i, self});
          row.push_back({j, edge_weight[std::minmax(i, j)]});
        }
        if (row.empty() || row.back().rank < i) row.push_back({i, self});
      }
    } else {
      for (std::size_t r = 0; r < self_weight.size(); ++r)
        if (self_weight[r]) fail(peer_line[r], "'self_weight' needs explicit edge weights");
      if (!t.graph.connected()) fail_disconnected(t.graph, peer_line);
      try {
        t.W = mixing_weights(t.graph, scheme.value_or(Scheme::metropolis));
      } catch (const std::invalid_argument& e) {
        fail(scheme_node ? line_of(*scheme_node) : 1, e.what());
      }
    }
    validate(t, row_line, peer_line, best_constant);
    if (explicit_w && best_constant) check_best_constant(t, row_line, line_of(*scheme_node));
    t.description = fmt::format("{} (explicit, {} peers)", name_, n);
    return t;
  }

  void read_matrix(const toml::node& node, int n, Topology& t, std::vector<long>& row_line) {
    const auto& rows = get_array(node, "'matrix'");
    if (static_cast<int>(rows.size()) != n)
      fail(node, fmt::format("'matrix' has {} rows for {} peers", rows.size(), n));
    const bool edges_given = t.graph.edge_count() > 0;
    t.W.assign(static_cast<std::size_t>(n), {});
    for (int i = 0; i < n; ++i) {
      const auto& row = get_array(rows[static_cast<std::size_t>(i)], "a matrix row");
      row_line[static_cast<std::size_t>(i)] = line_of(rows[static_cast<std::size_t>(i)]);
      if (static_cast<int>(row.size()) != n)
        fail(row_line[static_cast<std::size_t>(i)],
             fmt::format("matrix row {} has {} entries, expected {}", i, row.size(), n));
      for (int j = 0; j < n; ++j) {
        const double v = get_number(row[static_cast<std::size_t>(j)], "a matrix entry");
        if (v == 0.0 && i != j) continue;
        if (i != j && !t.graph.has_edge(i, j)) {
          if (edges_given)
            fail(row[static_cast<std::size_t>(j)],
                 fmt::format("W[{}][{}] = {} but there is no edge {}-{}", i, j, v, i, j));
          t.graph.add_edge(i, j);
        }
        t.W[static_cast<std::size_t>(i)].push_back({j, v});
      }
    }
  }

  // `schedule = "one-peer-exponential"`: the mixing matrices come from the generator of that
  // name over the listed peers, so the file cannot also give edges or weights.
  void read_schedule(const toml::table& root, const toml::node& node, Topology& t,
                     const std::vector<std::optional<double>>& self_weight,
                     const std::vector<long>& peer_line) const {
    const std::string kind = get_string(node, "'schedule'");
    try {
      if (!time_varying_kind(parse_kind(kind))) throw std::invalid_argument("");
    } catch (const std::invalid_argument&) {
      fail(node, fmt::format("unknown schedule '{}' (known: one-peer-exponential)", kind));
    }
    for (std::string_view k : {"edge", "matrix", "weights"})
      if (const auto* other = root.get(k))
        fail(*other, fmt::format("'{}' cannot be combined with schedule = \"{}\" (line {}): the "
                                 "schedule gives every round's links and weights",
                                 k, kind, line_of(node)));
    for (std::size_t r = 0; r < self_weight.size(); ++r)
      if (self_weight[r])
        fail(peer_line[r], fmt::format("'self_weight' cannot be combined with schedule = \"{}\" "
                                       "(line {}): the schedule gives the weights",
                                       kind, line_of(node)));
    const int n = static_cast<int>(t.peers.size());
    try {
      t.schedule = one_peer_exponential_schedule(n);
      GeneratorSpec spec;
      spec.kind = Kind::one_peer_exponential;
      spec.sizes = {n};
      t.graph = generate_graph(spec);
    } catch (const std::invalid_argument& e) {
      fail(node, e.what());
    }
  }

  void fail_disconnected(const Graph& g, const std::vector<long>& peer_line) const {
    // Name a peer that cannot reach peer 0, at its own line.
    const auto dist = g.distances_from(0);
    const auto far =
        static_cast<std::size_t>(std::find(dist.begin(), dist.end(), -1) - dist.begin());
    const auto sizes = g.component_sizes();
    fail(peer_line[far],
         fmt::format("the graph is disconnected: {} components of sizes {}; peer {} "
                     "cannot reach peer 0",
                     sizes.size(), fmt::join(sizes, ", "), far));
  }

  // Explicit weights under weights = "best-constant" must be that scheme's weights.
  void check_best_constant(const Topology& t, const std::vector<long>& row_line,
                           long scheme_line) const {
    std::vector<std::vector<Neighbor>> expected;
    try {
      expected = mixing_weights(t.graph, Scheme::best_constant);
    } catch (const std::exception& e) {
      fail(scheme_line, e.what());
    }
    for (int i = 0; i < t.size(); ++i)
      for (const auto& nb : expected[static_cast<std::size_t>(i)]) {
        const double given = t.weight(i, nb.rank);
        if (std::abs(given - nb.weight) > kWeightTolerance)
          fail(row_line[static_cast<std::size_t>(i)],
               fmt::format("W[{}][{}] = {} but best-constant weights (weights = \"best-constant\" "
                           "at line {}) give {:.17g}",
                           i, nb.rank, given, scheme_line, nb.weight));
      }
  }

  // A negative diagonal is allowed only for best-constant weights: in a hand-written W it is
  // almost surely a mistake (edge weights summing past 1) and may leave rho >= 1.
  void validate(const Topology& t, const std::vector<long>& row_line,
                const std::vector<long>& peer_line, bool negative_diagonal_ok) const {
    const int n = t.size();
    for (int i = 0; i < n; ++i) {
      double sum = 0.0;
      for (const auto& nb : t.W[static_cast<std::size_t>(i)]) {
        sum += nb.weight;
        if (nb.rank != i && nb.weight < 0.0)
          fail(row_line[static_cast<std::size_t>(i)],
               fmt::format("negative weight W[{}][{}] = {}", i, nb.rank, nb.weight));
        const double back = t.weight(nb.rank, i);
        if (std::abs(back - nb.weight) > kWeightTolerance)
          fail(row_line[static_cast<std::size_t>(i)],
               fmt::format("W is not symmetric: W[{}][{}] = {} but W[{}][{}] = {}", i, nb.rank,
                           nb.weight, nb.rank, i, back));
      }
      if (std::abs(sum - 1.0) > kWeightTolerance)
        fail(row_line[static_cast<std::size_t>(i)],
             fmt::format("row {} of W sums to {:.12g}, not 1 (tolerance {:g})", i, sum,
                         kWeightTolerance));
      if (const double self = t.self_weight(i); self < 0.0 && !negative_diagonal_ok)
        fail(row_line[static_cast<std::size_t>(i)],
             fmt::format("peer {} has a negative self weight W[{}][{}] = {:.12g} (its edge weights "
                         "sum to more than 1): W would not be non-negative and may not converge; "
                         "only best-constant weights may do this (weights = \"best-constant\")",
                         i, i, i, self));
    }
    if (!t.graph.connected()) fail_disconnected(t.graph, peer_line);
  }

  std::string name_;
};

}  // namespace

Topology parse_topology(std::string_view toml_text, const std::string& name) {
  return Parser(name).parse(toml_text);
}

Topology load_topology(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw TopologyFileError(name, 0, "is a directory, not a topology file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TopologyFileError(name, 0, "cannot open the topology file");
  // Read in chunks up to the limit: an endless source (/dev/zero) is refused there, and a pipe
  // (topo inspect <(...)) still works.
  std::string text;
  std::vector<char> chunk(std::size_t{1} << 16);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
    text.append(chunk.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxTopologyFileBytes)
      throw TopologyFileError(name, 0,
                              fmt::format("the topology file is larger than {} MiB; write a "
                                          "[generator] table instead of listing every edge",
                                          kMaxTopologyFileBytes >> 20));
  }
  if (in.bad()) throw TopologyFileError(name, 0, "cannot read the topology file");
  return parse_topology(text, name);
}

Topology load_topology_or_spec(const std::string& file_or_spec) {
  if (std::filesystem::exists(file_or_spec)) return load_topology(file_or_spec);
  if (file_or_spec.find(':') == std::string::npos || file_or_spec.ends_with(".toml"))
    throw std::invalid_argument(fmt::format(
        "'{}' is neither a topology file nor a spec like ring:8 or torus:4x4", file_or_spec));
  return make_topology(parse_spec(file_or_spec));
}

namespace {

// `text` as a TOML basic string: quotes, backslashes and control characters escaped, so that
// reading it back gives the same bytes (an endpoint may hold any of them).
std::string toml_quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += c;
    }
  }
  return out + '"';
}

// A comment line: what would end it (a line break) is written as a space.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

}  // namespace

void write_topology(const Topology& t, std::ostream& out) {
  if (t.time_varying()) {
    // The schedule is named, not listed: its matrices follow from the number of peers.
    out << fmt::format(
        "# {}\n# Written by `gossip topo generate`: explicit peers; every round's links and "
        "weights come from the schedule.\n\nschedule = \"{}\"\n\n",
        one_line(t.description), kind_name(Kind::one_peer_exponential));
  } else {
    out << fmt::format(
        "# {}\n# Written by `gossip topo generate`: explicit form, weights at full "
        "precision.\n\n",
        one_line(t.description));
    // Only best-constant weights have a negative diagonal; a file must say so to be read back.
    bool negative_diagonal = false;
    for (int i = 0; i < t.size(); ++i) negative_diagonal |= t.self_weight(i) < 0.0;
    if (negative_diagonal) out << "weights = \"best-constant\"\n\n";
  }
  for (const auto& p : t.peers) {
    out << fmt::format("[[peer]]\nrank = {}\nendpoint = {}\n", p.rank, toml_quoted(p.endpoint));
    if (p.device) out << fmt::format("device = {}\n", *p.device);
    if (t.authenticated())
      out << fmt::format("public_key = \"{}\"\n",
                         key_hex(t.public_keys[static_cast<std::size_t>(p.rank)]));
    if (!t.time_varying()) out << fmt::format("self_weight = {:.17g}\n", t.self_weight(p.rank));
    out << "\n";
  }
  if (t.time_varying()) return;
  for (auto [a, b] : t.graph.edges())
    out << fmt::format("[[edge]]\npeers = [{}, {}]\nweight = {:.17g}\n\n", a, b, t.weight(a, b));
}

}  // namespace gossip::topology
