#pragma once
// Internal: what the gossip algorithms share (codec, send buffer, neighbour weights in
// transport order). The factories of the concrete algorithms are listed in registry.cpp. Not part
// of the public API; include gossip/algorithms/algorithm.hpp.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "gossip/algorithms/algorithm.hpp"
#include "kernels/codec.hpp"

namespace gossip::algorithms::detail {

class GossipAlgorithm : public Algorithm {
 protected:
  GossipAlgorithm(const AlgorithmConfig& config, net::Transport& transport,
                  const topology::Topology& topology, std::span<const float> x0);

  // Codec::encode of v into the send buffer, keyed by (seed, rank, round). Timed as encode.
  void encode(std::span<const float> v);
  // The same keyed by another round (a message re-sent after a resume).
  void encode(std::span<const float> v, std::uint64_t round);
  // Sends the encoded message to this round's ranks (send_to) and returns the messages of
  // receive_from(round), in that order (static topology: every neighbour, in neighbors() order).
  // Timed as wait. With no neighbours (n = 1) nothing is sent.
  const std::vector<std::span<const std::byte>>& exchange();
  // y += w * C(own message). Timed as decode.
  void accumulate_own(float w, std::span<float> y);
  // y += scale * W_ij * C(q_j) for every rank j the round took a message from. Timed as decode.
  void accumulate_neighbors(const std::vector<std::span<const std::byte>>& messages, float scale,
                            std::span<float> y);
  // Sends the encoded message and adds scale * W_ij * C(q_j) to y for every neighbour j as its
  // message comes in (Transport::exchange_each, neighbour order), so at most one received message
  // is held at a time. Same sums, in the same order, as exchange() + accumulate_neighbors().
  // Timed as wait and decode.
  void exchange_accumulate(float scale, std::span<float> y);
  // The overlapped form (Transport::exchange_lagged): sends this round's encoded message and adds
  // scale * W_ij * C(q_j) of the neighbours' messages of round `receive` (none: only sends).
  // receive == round_ is exchange_accumulate.
  void exchange_accumulate_from(std::optional<std::uint64_t> receive, float scale,
                                std::span<float> y);
  // Encodes v as the message of an earlier round and sends it again to every neighbour
  // (Transport::resend): after a resume, the messages that were in flight. Timed as encode, wait.
  void resend(std::uint64_t round, std::span<const float> v);
  // Σ_j W_ij over the neighbours, summed in neighbour order (1 − W_ii up to rounding).
  float neighbor_weight_sum() const;

  // Sends the encoded message; for every j = receive_from(round)[k], as its message comes in
  // (in that order), decodes C(q_j) into `scratch` and calls use(k, W_ij, scratch). For rules
  // that need the neighbour's values themselves rather than a weighted sum. Timed as wait and
  // decode, use() as update.
  using NeighborFn = FunctionRef<void(std::size_t k, float w_ij, std::span<const float> q_j)>;
  void exchange_decode_each(std::span<float> scratch, NeighborFn use);
  // y = C(own message). Timed as decode.
  void decode_own(std::span<float> y);
  // Runs decode() on neighbour k's message; a codec error (kernels::WireError) is rethrown as a
  // WireError that names this rank, the round and the peer (with its endpoint where the
  // transport knows it): "rank 0: round 3: message from peer 1 (…): <reason>".
  template <class Decode>
  void decode_from(std::size_t k, Decode&& decode) const {
    try {
      decode();
    } catch (const kernels::WireError& e) {
      neighbor_message_error(k, e);
    }
  }
  [[noreturn]] void neighbor_message_error(std::size_t k, const kernels::WireError& e) const;

  // After a peer loss (Transport::departures; static topologies): the row of W follows the
  // transport's receive_from, the old weights before the agreed round r* (a lost neighbour's
  // weight added to W_ii), Metropolis-Hastings weights on the graph left from r* on.
  void before_exchange() override;
  // y += scale * W_ik * C(own message) for every neighbour k whose message the last exchange did
  // not deliver because it is gone: its weight goes to our own message (the row stays stochastic,
  // W symmetric). Nothing without a loss.
  void fold_missing(float scale, std::span<float> y);

  // W_ii of this round (the same every round on a static topology).
  float self_weight() const { return self_weights_[phase() % self_weights_.size()]; }
  // The codec sends fp32 unchanged (spec "identity", however the config spelled it).
  bool lossless_codec() const { return codec_->spec() == "identity"; }

  // Throws std::invalid_argument unless config.consensus_step is in (0, 1]; `what` names it in
  // the message, e.g. "deepsqueeze: consensus_step (η)".
  static void require_consensus_step(const AlgorithmConfig& config, std::string_view what);

 private:
  // W_ij of this round, for j in transport.receive_from(round_) order.
  const std::vector<float>& round_weights() const { return weights_at(round_); }
  // W_ij of round t's phase, in transport.receive_from(t) order.
  const std::vector<float>& weights_at(std::uint64_t round) const {
    return weights_[phase(round) % weights_.size()];
  }
  // Which W^(t) of a time-varying schedule this round mixes with: one per exchange, so with
  // local steps H the phase advances every H rounds (as the transport's send_to/receive_from).
  std::uint64_t phase(std::uint64_t round) const {
    return round / std::max<std::uint64_t>(config_.local_steps, 1);
  }
  std::uint64_t phase() const { return phase(round_); }

  std::unique_ptr<SpaceCodec> codec_;  // keeps this round's message for the own-decode
  // Per round of the topology's period (one on a static topology): W_ij for j in
  // transport.receive_from(t) order, and W_ii.
  std::vector<std::vector<float>> weights_;
  std::vector<float> self_weights_;
  std::vector<std::span<const std::byte>> no_messages_;  // returned when there are no neighbours
  // Peer loss: the graph and our row of W as made, the departures taken into the weights, and
  // which messages the last exchange delivered.
  topology::Graph graph_;
  std::vector<topology::Neighbor> base_row_;
  // The peers absent from the mixing and the senders the weights were last computed for.
  std::vector<int> mixed_without_;
  std::vector<int> mixing_with_;
  std::vector<char> delivered_;
};

// Checks that the topology can drive a gossip algorithm over this transport: same n, the
// transport's neighbours are row rank of W without the diagonal, W symmetric, doubly stochastic,
// off-diagonal non-negative. Throws std::invalid_argument naming the first violation.
void validate_mixing(const net::Transport& transport, const topology::Topology& topology);

}  // namespace gossip::algorithms::detail
