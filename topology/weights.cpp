#include "topology/weights.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

#include "topology/spectral.hpp"

namespace gossip::topology {

namespace {
constexpr std::pair<Scheme, std::string_view> kSchemes[] = {
    {Scheme::ring, "ring"},
    {Scheme::metropolis, "metropolis"},
    {Scheme::max_degree, "max-degree"},
    {Scheme::best_constant, "best-constant"},
    {Scheme::explicit_weights, "explicit"},
};

bool is_ring(const Graph& g) {
  const int n = g.size();
  for (int i = 0; i < n; ++i) {
    const int next = (i + 1) % n, prev = (i + n - 1) % n;
    for (int j : g.neighbors(i))
      if (j != next && j != prev) return false;
    if (n > 1 && !g.has_edge(i, next)) return false;
  }
  return true;
}

// Rows from off-diagonal weights: w(i, j) for each edge, diagonal = 1 - row sum.
template <class OffDiagonal>
std::vector<std::vector<Neighbor>> rows_from(const Graph& g, OffDiagonal w) {
  std::vector<std::vector<Neighbor>> rows(static_cast<std::size_t>(g.size()));
  for (int i = 0; i < g.size(); ++i) {
    auto& row = rows[static_cast<std::size_t>(i)];
    double off = 0.0;
    for (int j : g.neighbors(i)) off += w(i, j);
    bool placed_self = false;
    for (int j : g.neighbors(i)) {
      if (!placed_self && j > i) {
        row.push_back({i, 1.0 - off});
        placed_self = true;
      }
      row.push_back({j, w(i, j)});
    }
    if (!placed_self) row.push_back({i, 1.0 - off});
  }
  return rows;
}
}  // namespace

std::string_view scheme_name(Scheme s) {
  for (auto [v, name] : kSchemes)
    if (v == s) return name;
  return "?";
}

Scheme parse_scheme(std::string_view name) {
  std::string known;
  for (auto [v, n] : kSchemes) {
    if (n == name) return v;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw std::invalid_argument("unknown weight scheme '" + std::string(name) + "' (known: " + known +
                              ")");
}

std::vector<std::vector<Neighbor>> mixing_weights(const Graph& g, Scheme scheme) {
  const int n = g.size();
  switch (scheme) {
    case Scheme::ring: {
      if (!is_ring(g))
        throw std::invalid_argument("weight scheme 'ring' needs a ring graph; use metropolis");
      // 1/3 to self, to i+1 and to i-1; for n <= 2 those coincide and their weights add up, which
      // keeps lambda_k = 1/3 + 2/3 cos(2 pi k / n) true for every n.
      std::vector<std::map<int, double>> acc(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i)
        for (int j : {i, (i + 1) % n, (i + n - 1) % n})
          acc[static_cast<std::size_t>(i)][j] += 1.0 / 3.0;
      std::vector<std::vector<Neighbor>> rows(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i)
        for (auto [j, w] : acc[static_cast<std::size_t>(i)])
          rows[static_cast<std::size_t>(i)].push_back({j, w});
      return rows;
    }
    case Scheme::metropolis:
      return rows_from(g, [&](int i, int j) {
        return 1.0 / (1.0 + static_cast<double>(std::max(g.degree(i), g.degree(j))));
      });
    case Scheme::max_degree: {
      int dmax = 0;
      for (int i = 0; i < n; ++i) dmax = std::max(dmax, g.degree(i));
      const double w = 1.0 / (dmax + 1.0);
      return rows_from(g, [w](int, int) { return w; });
    }
    case Scheme::best_constant: {
      if (n == 1) return rows_from(g, [](int, int) { return 0.0; });
      if (!g.connected())
        throw std::invalid_argument("best-constant weights need a connected graph");
      const auto ext = laplacian_extremes(g);
      const double alpha = 2.0 / (ext.lambda_max + ext.lambda_fiedler);
      return rows_from(g, [alpha](int, int) { return alpha; });
    }
    case Scheme::explicit_weights:
      break;
  }
  throw std::invalid_argument("explicit weights come from a topology file, not a scheme");
}

}  // namespace gossip::topology
