#include "topology/generators.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

namespace gossip::topology {

namespace {
constexpr std::pair<Kind, std::string_view> kKinds[] = {
    {Kind::ring, "ring"},
    {Kind::torus, "torus"},
    {Kind::grid, "grid"},
    {Kind::complete, "complete"},
    {Kind::star, "star"},
    {Kind::hypercube, "hypercube"},
    {Kind::exponential, "exponential"},
    {Kind::erdos_renyi, "erdos-renyi"},
    {Kind::random_regular, "random-regular"},
    {Kind::one_peer_exponential, "one-peer-exponential"},
};

[[noreturn]] void fail(const std::string& msg) {
  throw std::invalid_argument(msg);
}

// 20000000 -> "20,000,000".
std::string grouped(std::uint64_t v) {
  std::string digits = std::to_string(v), out;
  for (std::size_t k = 0; k < digits.size(); ++k) {
    if (k > 0 && (digits.size() - k) % 3 == 0) out += ',';
    out += digits[k];
  }
  return out;
}

// Uniform double in [0, 1) from 53 random bits: the same on every platform, unlike
// std::uniform_real_distribution whose algorithm is implementation-defined.
double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound) {
  // Lemire-free rejection sampling: exact and portable.
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  std::uint64_t v;
  do v = rng();
  while (v >= limit);
  return v % bound;
}

int parse_int(std::string_view s, std::string_view what) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    fail(fmt::format("{} must be an integer, got '{}'", what, s));
  return v;
}

std::vector<int> mixed_radix(int index, const std::vector<int>& dims) {
  std::vector<int> c(dims.size());
  for (std::size_t k = dims.size(); k-- > 0;) {
    c[k] = index % dims[k];
    index /= dims[k];
  }
  return c;
}

int flat_index(const std::vector<int>& c, const std::vector<int>& dims) {
  int index = 0;
  for (std::size_t k = 0; k < dims.size(); ++k) index = index * dims[k] + c[k];
  return index;
}

Graph lattice(const std::vector<int>& dims, bool wrap) {
  int n = 1;
  for (int d : dims) n *= d;
  Graph g(n);
  for (int i = 0; i < n; ++i) {
    auto c = mixed_radix(i, dims);
    for (std::size_t k = 0; k < dims.size(); ++k) {
      if (dims[k] == 1) continue;
      auto up = c;
      if (c[k] + 1 < dims[k]) {
        up[k] = c[k] + 1;
      } else if (wrap) {
        up[k] = 0;
      } else {
        continue;
      }
      g.add_edge(i, flat_index(up, dims));
    }
  }
  return g;
}

// G(n, p) by geometric skipping over the n(n-1)/2 pairs (Batagelj & Brandes 2005): O(n + m).
Graph erdos_renyi_draw(int n, double p, std::mt19937_64& rng) {
  Graph g(n);
  if (p <= 0.0) return g;
  if (p >= 1.0) {
    for (int a = 0; a < n; ++a)
      for (int b = a + 1; b < n; ++b) g.add_edge(a, b);
    return g;
  }
  const double log_q = std::log1p(-p);
  long long v = 1, w = -1;
  while (v < n) {
    const double r = uniform01(rng);
    w += 1 + static_cast<long long>(std::floor(std::log1p(-r) / log_q));
    while (w >= v && v < n) {
      w -= v;
      ++v;
    }
    if (v < n) g.add_edge(static_cast<int>(v), static_cast<int>(w));
  }
  return g;
}

// Random d-regular graph: pair up the n*d half-edges at random, refusing self loops and repeated
// edges; if the last half-edges cannot be paired, start over (bounded).
std::optional<Graph> random_regular_draw(int n, int d, std::mt19937_64& rng) {
  Graph g(n);
  std::vector<int> points;
  points.reserve(static_cast<std::size_t>(n) * static_cast<std::size_t>(d));
  for (int v = 0; v < n; ++v)
    for (int k = 0; k < d; ++k) points.push_back(v);
  while (!points.empty()) {
    bool paired = false;
    for (int attempt = 0; attempt < 1000 && !paired; ++attempt) {
      const auto ia = uniform_below(rng, points.size());
      const auto ib = uniform_below(rng, points.size());
      const int a = points[ia], b = points[ib];
      if (ia == ib || a == b || g.has_edge(a, b)) continue;
      g.add_edge(a, b);
      // Remove both points: swap each with the back (larger index first keeps the other valid).
      for (auto idx : {std::max(ia, ib), std::min(ia, ib)}) {
        points[idx] = points.back();
        points.pop_back();
      }
      paired = true;
    }
    if (!paired) return std::nullopt;
  }
  return g;
}

template <class Draw>
Graph connected_draw(const GeneratorSpec& spec, Draw draw) {
  std::mt19937_64 rng(spec.seed);
  std::vector<int> last_components;
  for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
    std::optional<Graph> g = draw(rng);
    if (!g) continue;
    if (g->connected()) return std::move(*g);
    last_components = g->component_sizes();
  }
  fail(fmt::format(
      "{}: no connected graph in {} draws (last draw had {} components, sizes {}); "
      "raise p or the degree",
      spec.to_string(), kMaxRedraws, last_components.size(), fmt::join(last_components, ", ")));
}
}  // namespace

std::optional<Kind> kind_of_key(std::string_view key) {
  if (key == "p") return Kind::erdos_renyi;
  if (key == "d" || key == "degree") return Kind::random_regular;
  return std::nullopt;
}

std::string_view kind_name(Kind k) {
  for (auto [v, name] : kKinds)
    if (v == k) return name;
  return "?";
}

Kind parse_kind(std::string_view name) {
  std::string known;
  for (auto [v, n] : kKinds) {
    if (n == name) return v;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  fail(fmt::format("unknown topology kind '{}' (known: {})", name, known));
}

std::uint64_t GeneratorSpec::peer_count() const {
  std::uint64_t n = 1;
  for (int s : sizes) {
    if (s < 1) return 0;
    const auto u = static_cast<std::uint64_t>(s);
    if (n > UINT64_MAX / u) return UINT64_MAX;
    n *= u;
  }
  return n;
}

int GeneratorSpec::peers() const {
  const std::uint64_t n = peer_count();
  if (n == UINT64_MAX)
    fail(fmt::format("{}: the product of the sizes overflows 64 bits, more than {} peers",
                     to_string(), grouped(kMaxPeers)));
  if (n > kMaxPeers)
    fail(fmt::format("{}: {} peers, more than {}", to_string(), grouped(n), grouped(kMaxPeers)));
  return static_cast<int>(n);
}

std::string GeneratorSpec::to_string() const {
  std::string s = fmt::format("{}:{}", kind_name(kind), fmt::join(sizes, "x"));
  if (kind == Kind::erdos_renyi) s += fmt::format(",p={}", p);
  if (kind == Kind::random_regular) s += fmt::format(",d={}", degree);
  if (kind == Kind::erdos_renyi || kind == Kind::random_regular) s += fmt::format(",seed={}", seed);
  if (weights) s += fmt::format(",weights={}", scheme_name(*weights));
  return s;
}

std::uint64_t parse_seed(std::string_view text) {
  std::uint64_t seed = 0;
  // from_chars takes no sign, no spaces and no value past 2^64 - 1 (result_out_of_range).
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seed);
  if (ec != std::errc() || end != text.data() + text.size())
    fail(fmt::format("seed must be an integer in [0, 2^64 - 1], got '{}'", text));
  return seed;
}

GeneratorSpec parse_spec(std::string_view text) {
  GeneratorSpec spec;
  const auto colon = text.find(':');
  if (colon == std::string_view::npos)
    fail(fmt::format("topology spec '{}' has no sizes: write KIND:SIZES, e.g. ring:8 or torus:4x4",
                     text));
  spec.kind = parse_kind(text.substr(0, colon));
  std::string_view rest = text.substr(colon + 1);
  std::vector<std::string_view> parts;
  for (std::size_t pos = 0;;) {
    const auto comma = rest.find(',', pos);
    parts.push_back(rest.substr(pos, comma - pos));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  for (std::size_t pos = 0;;) {
    const auto x = parts[0].find('x', pos);
    spec.sizes.push_back(parse_int(parts[0].substr(pos, x - pos), "a size"));
    if (x == std::string_view::npos) break;
    pos = x + 1;
  }
  bool have_p = false, have_d = false;
  for (std::size_t k = 1; k < parts.size(); ++k) {
    const auto eq = parts[k].find('=');
    if (eq == std::string_view::npos)
      fail(fmt::format("'{}' in spec '{}' is not key=value", parts[k], text));
    const auto key = parts[k].substr(0, eq), value = parts[k].substr(eq + 1);
    if (key == "p") {
      // stod throws out_of_range on underflow (1e-320) as on overflow; nan fails the range check.
      try {
        std::size_t used = 0;
        spec.p = std::stod(std::string(value), &used);
        if (used != value.size()) throw std::invalid_argument("");
      } catch (const std::out_of_range&) {
        fail(
            fmt::format("p = {} is out of range (beyond a double's exponent): p must be a number "
                        "in [0, 1], e.g. p=0.1",
                        value));
      } catch (const std::exception&) {
        fail(fmt::format("p must be a number in [0, 1], got '{}'", value));
      }
      if (!(spec.p >= 0.0 && spec.p <= 1.0))
        fail(fmt::format("p must be a number in [0, 1], got '{}'", value));
      have_p = true;
    } else if (key == "d" || key == "degree") {
      spec.degree = parse_int(value, "d");
      have_d = true;
    } else if (key == "seed") {
      spec.seed = parse_seed(value);
    } else if (key == "weights") {
      spec.weights = parse_scheme(value);
    } else if (key == "endpoint") {
      spec.endpoint = std::string(value);
    } else {
      fail(fmt::format("unknown key '{}' in spec '{}' (known: p, d, seed, weights, endpoint)", key,
                       text));
    }
  }
  // A seed is harmless anywhere (a script may pass one to every kind it sweeps); p and d not.
  for (auto [given, key] : {std::pair{have_p, "p"}, std::pair{have_d, "d"}})
    if (const auto owner = kind_of_key(key); given && *owner != spec.kind)
      fail(fmt::format("{} does not use the key '{}' (a key of {}) in spec '{}'",
                       kind_name(spec.kind), key, kind_name(*owner), text));
  if (spec.kind == Kind::erdos_renyi && !have_p)
    fail("erdos-renyi needs p, e.g. erdos-renyi:64,p=0.1");
  if (spec.kind == Kind::random_regular && !have_d)
    fail("random-regular needs d, e.g. random-regular:64,d=4");
  return spec;
}

Scheme default_scheme(Kind kind) {
  return kind == Kind::ring ? Scheme::ring : Scheme::metropolis;
}

std::uint64_t edge_count(const GeneratorSpec& spec) {
  const auto& s = spec.sizes;
  const bool lattice_kind = spec.kind == Kind::torus || spec.kind == Kind::grid;
  if (s.empty()) fail(fmt::format("{} needs a size", kind_name(spec.kind)));
  if (!lattice_kind && s.size() != 1)
    fail(fmt::format("{} takes one size (the number of peers), got {}", kind_name(spec.kind),
                     fmt::join(s, "x")));
  for (int v : s)
    if (v < 1) fail(fmt::format("sizes must be at least 1, got {}", fmt::join(s, "x")));
  const auto n = static_cast<std::uint64_t>(spec.peers());
  switch (spec.kind) {
    case Kind::ring:
      return n <= 2 ? n - 1 : n;
    case Kind::torus:
    case Kind::grid: {
      // Per dimension of size d: n/d lines of d peers, each with d - 1 edges, plus the wrap-around
      // edge of a torus when d > 2 (for d = 2 it repeats the one edge).
      std::uint64_t m = 0;
      for (int v : s) {
        const auto d = static_cast<std::uint64_t>(v);
        m += spec.kind == Kind::torus && d > 2 ? n : n / d * (d - 1);
      }
      return m;
    }
    case Kind::complete:
      return n * (n - 1) / 2;
    case Kind::star:
      return n - 1;
    case Kind::hypercube:
      if ((n & (n - 1)) != 0) fail(fmt::format("hypercube needs a power of two peers, got {}", n));
      return n * static_cast<std::uint64_t>(std::bit_width(n) - 1) / 2;
    case Kind::exponential:
    case Kind::one_peer_exponential: {  // its union graph is the exponential graph
      // Hops h and n - h give the same n edges {a, a + h}; h = n/2 gives n/2 of them.
      std::vector<std::uint64_t> hops;
      for (std::uint64_t hop = 1; hop < n; hop <<= 1) hops.push_back(std::min(hop, n - hop));
      std::sort(hops.begin(), hops.end());
      hops.erase(std::unique(hops.begin(), hops.end()), hops.end());
      std::uint64_t m = 0;
      for (std::uint64_t h : hops) m += 2 * h == n ? n / 2 : n;
      return m;
    }
    case Kind::erdos_renyi:
      if (!(spec.p >= 0.0 && spec.p <= 1.0))
        fail(fmt::format("p must be a number in [0, 1], got {}", spec.p));
      return static_cast<std::uint64_t>(
          std::llround(spec.p * static_cast<double>(n) * static_cast<double>(n - 1) / 2.0));
    case Kind::random_regular:
      if (spec.degree < 0 || static_cast<std::uint64_t>(spec.degree) >= n)
        fail(fmt::format("random-regular degree must lie in [0, n-1] = [0, {}], got {}", n - 1,
                         spec.degree));
      if ((n * static_cast<std::uint64_t>(spec.degree)) % 2 != 0)
        fail(fmt::format("random-regular needs n*d even, got n={} d={}", n, spec.degree));
      return n * static_cast<std::uint64_t>(spec.degree) / 2;
  }
  fail("unhandled topology kind");
}

Graph generate_graph(const GeneratorSpec& spec) {
  const auto& s = spec.sizes;
  const std::uint64_t edges = edge_count(spec);
  if (edges > kMaxEdges)
    fail(fmt::format("{}: {}{} edges, more than the limit of {}", spec.to_string(),
                     spec.kind == Kind::erdos_renyi ? "about " : "", grouped(edges),
                     grouped(kMaxEdges)));
  const int n = spec.peers();
  switch (spec.kind) {
    case Kind::ring:
      return lattice({n}, true);
    case Kind::torus:
      return lattice(s, true);
    case Kind::grid:
      return lattice(s, false);
    case Kind::complete: {
      Graph g(n);
      for (int a = 0; a < n; ++a)
        for (int b = a + 1; b < n; ++b) g.add_edge(a, b);
      return g;
    }
    case Kind::star: {
      Graph g(n);
      for (int b = 1; b < n; ++b) g.add_edge(0, b);
      return g;
    }
    case Kind::hypercube: {
      Graph g(n);
      for (int a = 0; a < n; ++a)
        for (int bit = 1; bit < n; bit <<= 1) g.add_edge(a, a ^ bit);
      return g;
    }
    case Kind::exponential:
    case Kind::one_peer_exponential: {
      Graph g(n);
      for (int a = 0; a < n; ++a)
        for (long long hop = 1; hop < n; hop <<= 1) {
          g.add_edge(a, static_cast<int>((a + hop) % n));
          g.add_edge(a, static_cast<int>((a - hop % n + n) % n));
        }
      return g;
    }
    case Kind::erdos_renyi:
      return connected_draw(spec, [&](std::mt19937_64& rng) {
        return std::optional<Graph>(erdos_renyi_draw(n, spec.p, rng));
      });
    case Kind::random_regular:
      if (n == 1) return Graph(1);
      return connected_draw(
          spec, [&](std::mt19937_64& rng) { return random_regular_draw(n, spec.degree, rng); });
  }
  fail("unhandled topology kind");
}

bool time_varying_kind(Kind kind) {
  return kind == Kind::one_peer_exponential;
}

std::vector<MixingRows> one_peer_exponential_schedule(int n) {
  if (n < 2) fail(fmt::format("one-peer-exponential needs at least 2 peers, got {}", n));
  const int tau = std::bit_width(static_cast<unsigned>(n - 1));  // ceil(log2 n)
  std::vector<MixingRows> schedule(static_cast<std::size_t>(tau));
  for (int k = 0; k < tau; ++k) {
    auto& rows = schedule[static_cast<std::size_t>(k)];
    rows.resize(static_cast<std::size_t>(n));
    const int hop = 1 << k;  // < n, so the sender is never i itself
    for (int i = 0; i < n; ++i) {
      const int from = (i - hop % n + n) % n;
      rows[static_cast<std::size_t>(i)] = from < i ? std::vector<Neighbor>{{from, 0.5}, {i, 0.5}}
                                                   : std::vector<Neighbor>{{i, 0.5}, {from, 0.5}};
    }
  }
  return schedule;
}

std::string endpoint_for(std::string_view base, int rank) {
  std::string s(base);
  if (auto at = s.find("{rank}"); at != std::string::npos)
    return s.replace(at, 6, std::to_string(rank));
  if (!s.starts_with("tcp://"))
    fail(fmt::format("endpoint '{}' must be tcp://host:port or contain {{rank}}", base));
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon < 6) fail(fmt::format("endpoint '{}' has no port", base));
  const int port = parse_int(std::string_view(s).substr(colon + 1), "the endpoint's port");
  if (port < 1 || port + rank > 65535)
    fail(fmt::format("endpoint '{}' plus rank {} leaves the port range", base, rank));
  return s.substr(0, colon + 1) + std::to_string(port + rank);
}

std::string default_endpoint(int peers) {
  return peers <= 65535 - 29500 ? "tcp://127.0.0.1:29500" : "ipc:///tmp/gossip-{rank}.sock";
}

Topology make_topology(const GeneratorSpec& spec) {
  Topology t;
  t.graph = generate_graph(spec);
  const bool varying = time_varying_kind(spec.kind);
  if (varying && spec.weights)
    fail(fmt::format("{}: weights={} does not apply: {} has its own weights, W^(t) = (I + P_k)/2",
                     spec.to_string(), scheme_name(*spec.weights), kind_name(spec.kind)));
  const Scheme scheme = spec.weights.value_or(default_scheme(spec.kind));
  if (varying)
    t.schedule = one_peer_exponential_schedule(t.graph.size());
  else
    t.W = mixing_weights(t.graph, scheme);
  const std::string base = spec.endpoint.empty() ? default_endpoint(t.graph.size()) : spec.endpoint;
  // Every rank's endpoint is checked: a template can go wrong for some ranks only
  // (tcp://127.0.0.1:{rank} gives rank 0 port 0).
  const auto where = [&] { return fmt::format("{},endpoint={}", spec.to_string(), base); };
  for (int r = 0; r < t.graph.size(); ++r) {
    std::string endpoint;
    try {
      endpoint = endpoint_for(base, r);
    } catch (const std::invalid_argument& e) {
      throw EndpointError(fmt::format("{}: {}", where(), e.what()));
    }
    if (const auto why = endpoint_problem(endpoint); !why.empty())
      throw EndpointError(
          fmt::format("{}: endpoint '{}' of rank {} {}", where(), endpoint, r, why));
    t.peers.push_back({r, std::move(endpoint), {}});
  }
  t.description =
      varying ? fmt::format("{} (time-varying, period {})", spec.to_string(), t.schedule.size())
              : fmt::format("{} (weights {})", spec.to_string(), scheme_name(scheme));
  return t;
}

}  // namespace gossip::topology
