// RelaySGD (Vogels et al., NeurIPS 2021, "RelaySum for Decentralized Deep Learning on
// Heterogeneous Data", arXiv:2110.04175), the model-relaying form. On a tree, every peer ends each
// round with the plain average of all n peers' models after their local step, each delayed by its
// hop distance: x_i ← (1/n) Σ_k y_k^{(t − d(i,k) + 1)}, y = x − γ·d (d: the update direction).
// Gossip weights no peer more than another, so how different the peers' data are does not enter
// the rate; the price is a tree (no cycles, or sums would count a peer twice) and delays up to
// the tree's diameter. Peers whose model has not arrived yet (the first rounds) count with the
// common initial model x0.
//
// The relay: peer i owes neighbour j the sum m_{i→j} = y_i + Σ_{k ∈ N(i)∖j} m_{k→i}, over what
// it received last round from its other neighbours. All these differ per neighbour, but the
// transport sends one message to all of them, so peer i sends S_i = y_i + Σ_{k ∈ N(i)} m_{k→i}
// and neighbour j takes its own contribution back out: m_{i→j} = S_i − m_{j→i}, with m_{j→i} the
// sum j sent i the round before. Each peer keeps, per neighbour, the last sum received from it
// and the last sum it owed it: two model-sized buffers per neighbour, unlike the other
// algorithms, whose state does not grow with the degree. Bytes per round: one fp32 model per tree
// edge in each direction, as D-PSGD on the same tree.
//
// The sums are of up to n models, so a lossy codec's error would be relayed to every peer
// without a correction: fp32 only.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class RelaySum final : public GossipAlgorithm {
 public:
  RelaySum(const AlgorithmConfig& config, net::Transport& transport,
           const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0), x0_(model_buffer()) {
    if (config.codec != "identity") {
      throw std::invalid_argument(
          fmt::format("relaysum relays sums of models, which a lossy codec would corrupt at every "
                      "peer; codec must be \"identity\", got \"{}\"",
                      config.codec));
    }
    const auto& graph = topology.graph;
    if (!graph.connected() || graph.edge_count() + 1 != static_cast<std::size_t>(graph.size())) {
      throw std::invalid_argument(fmt::format(
          "relaysum needs a tree (connected, n - 1 edges): {} has {} edges for {} peers{}; use a "
          "path (grid:{}), a star or a tree written in a topology file",
          topology.description, graph.edge_count(), graph.size(),
          graph.connected() ? "" : " and is not connected", graph.size()));
    }
    std::copy(x0.begin(), x0.end(), x0_.begin());
    const std::vector<int> hops = graph.distances_from(rank_);
    reach_.assign(hops.size(), 0);
    for (int h : hops) ++reach_[static_cast<std::size_t>(h)];
    for (std::size_t h = 1; h < reach_.size(); ++h) reach_[h] += reach_[h - 1];
    for (int j : transport.neighbors()) {
      received_.push_back(model_buffer());
      owed_.push_back(model_buffer());
      names_.push_back(fmt::format("received from {}", j));
      names_.push_back(fmt::format("owed to {}", j));
    }
    scratch_ = model_buffer();
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    std::vector<StateBuffer> out{{"x0", x0_}};
    for (std::size_t k = 0; k < received_.size(); ++k) {
      out.push_back({names_[2 * k], received_[k]});
      out.push_back({names_[2 * k + 1], owed_[k]});
    }
    return out;
  }

  // Peers whose model is in this round's average: those at most round + 1 hops away.
  std::size_t arrived() const {
    const std::size_t h = std::min<std::uint64_t>(round_ + 1, reach_.size() - 1);
    return reach_[h];
  }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    const std::size_t d = x_.size();
    const float lr = config_.lr;
    // y = x − γ d in x; S = y + Σ_k received_k in g (the direction is no longer needed).
    for (std::size_t e = 0; e < d; ++e) {
      x_[e] -= lr * g_[e];
      float s = x_[e];
      for (const auto& r : received_) s += r[e];
      g_[e] = s;
    }
    last_.update_s += seconds_since(mark);
    encode(g_);
    exchange_decode_each(scratch_, [&](std::size_t k, float, std::span<const float> s_j) {
      auto& in = received_[k];
      auto& out = owed_[k];
      for (std::size_t e = 0; e < d; ++e) {
        const float from_j = s_j[e] - out[e];  // m_{j→i} of this round
        out[e] = g_[e] - in[e];  // m_{i→j} of this round, from last round's m_{j→i}
        in[e] = from_j;
      }
    });
    mark = Clock::now();
    const float missing = static_cast<float>(static_cast<std::size_t>(size_) - arrived());
    const float inv_n = 1.0f / static_cast<float>(size_);
    for (std::size_t e = 0; e < d; ++e) {
      float s = x_[e];
      for (const auto& r : received_) s += r[e];
      if (missing > 0.0f) s += missing * x0_[e];
      x_[e] = s * inv_n;
    }
    last_.update_s += seconds_since(mark);
  }

  std::vector<float> x0_;                     // the common initial model
  std::vector<std::vector<float>> received_;  // per neighbour: m_{j→i} of the last round
  std::vector<std::vector<float>> owed_;      // per neighbour: m_{i→j} of the last round
  std::vector<float> scratch_;                // one neighbour's S_j
  std::vector<std::size_t> reach_;            // reach_[h]: peers at most h hops away
  std::vector<std::string> names_;            // state buffer names, two per neighbour
};

}  // namespace

std::unique_ptr<Algorithm> make_relaysum(const AlgorithmConfig& config, net::Transport& transport,
                                         const topology::Topology& topology,
                                         std::span<const float> x0) {
  return std::make_unique<RelaySum>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
