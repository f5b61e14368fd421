#include <algorithm>
#include <bit>
#include <cstring>
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

double Topology::weight(int i, int j) const {
  const auto& row = W[static_cast<std::size_t>(i)];
  auto it = std::lower_bound(row.begin(), row.end(), j,
                             [](const Neighbor& nb, int r) { return nb.rank < r; });
  return (it != row.end() && it->rank == j) ? it->weight : 0.0;
}

std::vector<Neighbor> Topology::neighbors(int i) const {
  std::vector<Neighbor> out;
  for (const auto& nb : W[static_cast<std::size_t>(i)])
    if (nb.rank != i) out.push_back(nb);
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
  return f.h;
}

}  // namespace gossip::topology
