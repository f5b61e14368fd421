#pragma once
// Mixing-weight schemes: turn a graph into a symmetric, doubly stochastic W.

#include <string_view>
#include <vector>

#include "topology/topology.hpp"

namespace gossip::topology {

enum class Scheme {
  ring,             // 1/3 to self and to each ring step, summed where steps coincide (n <= 2)
  metropolis,       // W_ij = 1 / (1 + max(d_i, d_j)), W_ii = 1 - sum
  max_degree,       // W_ij = 1 / (d_max + 1)
  best_constant,    // W = I - alpha L, alpha = 2 / (lambda_1(L) + lambda_{n-1}(L))
  explicit_weights  // weights given in the topology file
};

std::string_view scheme_name(Scheme s);
Scheme parse_scheme(std::string_view name);  // throws std::invalid_argument listing the schemes

// Rows of W for `g` under `scheme` (not explicit_weights). ring requires a ring graph.
std::vector<std::vector<Neighbor>> mixing_weights(const Graph& g, Scheme scheme);

}  // namespace gossip::topology
