#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <queue>
#include <stdexcept>

#include "topology/topology.hpp"

namespace gossip::topology {

Graph::Graph(int n) {
  if (n < 1)
    throw std::invalid_argument("a topology needs at least 1 peer, got " + std::to_string(n));
  adj_.resize(static_cast<std::size_t>(n));
}

bool Graph::add_edge(int a, int b) {
  if (a == b || has_edge(a, b)) return false;
  auto insert = [](std::vector<int>& v, int x) {
    v.insert(std::lower_bound(v.begin(), v.end(), x), x);
  };
  insert(adj_[static_cast<std::size_t>(a)], b);
  insert(adj_[static_cast<std::size_t>(b)], a);
  return true;
}

bool Graph::has_edge(int a, int b) const {
  const auto& v = neighbors(a);
  return std::binary_search(v.begin(), v.end(), b);
}

std::size_t Graph::edge_count() const {
  std::size_t twice = 0;
  for (const auto& v : adj_) twice += v.size();
  return twice / 2;
}

std::vector<std::pair<int, int>> Graph::edges() const {
  std::vector<std::pair<int, int>> out;
  out.reserve(edge_count());
  for (int a = 0; a < size(); ++a)
    for (int b : neighbors(a))
      if (a < b) out.emplace_back(a, b);
  return out;
}

std::vector<int> Graph::distances_from(int src) const {
  std::vector<int> dist(adj_.size(), -1);
  std::vector<int> queue{src};
  dist[static_cast<std::size_t>(src)] = 0;
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const int v = queue[head];
    for (int u : neighbors(v))
      if (dist[static_cast<std::size_t>(u)] < 0) {
        dist[static_cast<std::size_t>(u)] = dist[static_cast<std::size_t>(v)] + 1;
        queue.push_back(u);
      }
  }
  return dist;
}

std::vector<std::vector<int>> Graph::components() const {
  std::vector<int> label(adj_.size(), -1);
  std::vector<std::vector<int>> out;
  std::vector<int> stack;
  for (int s = 0; s < size(); ++s) {
    if (label[static_cast<std::size_t>(s)] >= 0) continue;
    const int id = static_cast<int>(out.size());
    auto& members = out.emplace_back();
    stack.push_back(s);
    label[static_cast<std::size_t>(s)] = id;
    while (!stack.empty()) {
      const int v = stack.back();
      stack.pop_back();
      members.push_back(v);
      for (int u : neighbors(v)) {
        if (label[static_cast<std::size_t>(u)] < 0) {
          label[static_cast<std::size_t>(u)] = id;
          stack.push_back(u);
        }
      }
    }
    std::sort(members.begin(), members.end());
  }
  return out;
}

Graph Graph::without(std::span<const int> gone) const {
  Graph g(size());
  auto is_gone = [&](int r) { return std::find(gone.begin(), gone.end(), r) != gone.end(); };
  for (auto [a, b] : edges()) {
    if (!is_gone(a) && !is_gone(b)) g.add_edge(a, b);
  }
  return g;
}

std::vector<int> Graph::component_sizes() const {
  std::vector<int> label(adj_.size(), -1);
  std::vector<int> sizes;
  std::vector<int> stack;
  for (int s = 0; s < size(); ++s) {
    if (label[static_cast<std::size_t>(s)] >= 0) continue;
    const int id = static_cast<int>(sizes.size());
    int count = 0;
    stack.push_back(s);
    label[static_cast<std::size_t>(s)] = id;
    while (!stack.empty()) {
      const int v = stack.back();
      stack.pop_back();
      ++count;
      for (int u : neighbors(v)) {
        if (label[static_cast<std::size_t>(u)] < 0) {
          label[static_cast<std::size_t>(u)] = id;
          stack.push_back(u);
        }
      }
    }
    sizes.push_back(count);
  }
  std::sort(sizes.rbegin(), sizes.rend());
  return sizes;
}

double row_weight(const MixingRows& rows, int i, int j) {
  const auto& row = rows[static_cast<std::size_t>(i)];
  auto it = std::lower_bound(row.begin(), row.end(), j,
                             [](const Neighbor& nb, int r) { return nb.rank < r; });
  return (it != row.end() && it->rank == j) ? it->weight : 0.0;
}

namespace {
void require_static(const Topology& t, const char* what) {
  if (t.time_varying())
    throw std::logic_error(std::string(what) + " of a time-varying topology (" + t.description +
                           "): it has no single W, use mixing(round)");
}
}  // namespace

double Topology::weight(int i, int j) const {
  require_static(*this, "weight()");
  return row_weight(W, i, j);
}

std::vector<Neighbor> Topology::neighbors(int i) const {
  require_static(*this, "neighbors()");
  std::vector<Neighbor> out;
  for (const auto& nb : W[static_cast<std::size_t>(i)])
    if (nb.rank != i) out.push_back(nb);
  return out;
}

std::vector<int> Topology::receive_from(int i, std::uint64_t round) const {
  if (!time_varying()) return graph.neighbors(i);
  std::vector<int> out;
  for (const auto& nb : mixing(round)[static_cast<std::size_t>(i)])
    if (nb.rank != i) out.push_back(nb.rank);
  return out;
}

std::vector<int> Topology::send_to(int i, std::uint64_t round) const {
  if (!time_varying()) return graph.neighbors(i);
  std::vector<int> out;
  const auto& rows = mixing(round);
  for (int j = 0; j < size(); ++j)  // j ascending: the output is sorted
    if (j != i && std::any_of(rows[static_cast<std::size_t>(j)].begin(),
                              rows[static_cast<std::size_t>(j)].end(),
                              [i](const Neighbor& nb) { return nb.rank == i; }))
      out.push_back(j);
  return out;
}

namespace {
// FNV-1a, 64-bit: stable across platforms and runs, which std::hash is not.
struct Fnv1a {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  void bytes(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t k = 0; k < n; ++k) h = (h ^ c[k]) * 0x100000001b3ULL;
  }
  void u64(std::uint64_t v) { bytes(&v, sizeof v); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
};
}  // namespace

std::uint64_t Topology::hash() const {
  Fnv1a f;
  f.u64(static_cast<std::uint64_t>(size()));
  for (const auto& p : peers) {
    f.u64(static_cast<std::uint64_t>(p.rank));
    f.str(p.endpoint);
  }
  for (std::size_t i = 0; i < W.size(); ++i) {
    f.u64(W[i].size());
    for (const auto& nb : W[i]) {
      f.u64(static_cast<std::uint64_t>(nb.rank));
      f.f64(nb.weight);
    }
  }
  // After W, so that a static topology hashes as before schedules existed.
  if (!schedule.empty()) {
    f.u64(0x5343484544554c45ULL);  // "SCHEDULE"
    f.u64(schedule.size());
    for (const auto& rows : schedule)
      for (const auto& row : rows) {
        f.u64(row.size());
        for (const auto& nb : row) {
          f.u64(static_cast<std::uint64_t>(nb.rank));
          f.f64(nb.weight);
        }
      }
  }
  if (!public_keys.empty()) {
    f.u64(public_keys.size());
    for (const auto& k : public_keys) f.bytes(k.data(), k.size());
  }
  return f.h;
}

std::optional<PublicKey> parse_key_hex(std::string_view hex) {
  if (hex.size() != 2 * PublicKey{}.size()) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  PublicKey key{};
  for (std::size_t i = 0; i < key.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    key[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return key;
}

std::string key_hex(const PublicKey& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * key.size());
  for (const auto b : key) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

namespace {
// "tcp://HOST:PORT" split at the last colon; the host keeps its IPv6 brackets.
struct TcpParts {
  std::string_view host, port;
};
std::optional<TcpParts> split_tcp(std::string_view endpoint) {
  const std::string_view rest = endpoint.substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return TcpParts{rest.substr(0, colon), rest.substr(colon + 1)};
}

std::string_view unbracketed(std::string_view host) {
  return host.size() >= 2 && host.front() == '[' && host.back() == ']'
             ? host.substr(1, host.size() - 2)
             : host;
}
}  // namespace

std::string endpoint_problem(std::string_view endpoint) {
  for (char c : endpoint)
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return "contains a space or control character";
  if (endpoint.starts_with("ipc://")) {
    const std::string_view path = endpoint.substr(6);
    if (path.empty()) return "has an empty path: write ipc:///absolute/path";
    if (path.front() != '/')
      return "needs an absolute path (ipc:///tmp/name.sock): a relative one depends on the "
             "directory each peer starts in";
    return "";
  }
  if (!endpoint.starts_with("tcp://")) return "must start with tcp:// or ipc://";
  const auto parts = split_tcp(endpoint);
  if (!parts) return "has no port: write tcp://host:port";
  const std::string_view host = parts->host, port = parts->port;
  if (host.empty()) return "has no host: write tcp://host:port, e.g. tcp://127.0.0.1:29500";
  if (host == "*" || host == "[*]")
    return "has host *: the other peers connect to this endpoint, so it must name a host";
  if (host.front() == '[' && (host.back() != ']' || unbracketed(host).empty()))
    return "has a malformed [IPv6] host";
  if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos)
    return "needs a port of decimal digits in 1..65535";
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535)
    return "has a port outside 1..65535";
  return "";
}

std::string endpoint_host(std::string_view endpoint) {
  if (!endpoint.starts_with("tcp://")) return "";
  const auto parts = split_tcp(endpoint);
  return std::string(parts ? unbracketed(parts->host) : endpoint.substr(6));
}

std::string endpoint_key(std::string_view endpoint) {
  if (endpoint.starts_with("ipc://"))
    return "ipc://" + std::filesystem::path(endpoint.substr(6)).lexically_normal().string();
  const auto parts = split_tcp(endpoint);
  if (!endpoint.starts_with("tcp://") || !parts) return std::string(endpoint);
  std::string host(unbracketed(parts->host));
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host == "localhost") host = "127.0.0.1";
  unsigned long port = 0;
  std::from_chars(parts->port.data(), parts->port.data() + parts->port.size(), port);
  return "tcp://" + host + ":" + std::to_string(port);
}

}  // namespace gossip::topology
