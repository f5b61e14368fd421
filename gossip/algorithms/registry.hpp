#pragma once
// The one table of algorithms. Every place that needs to know an algorithm reads its row here:
// make_algorithm (the factory and the topology check), the codec rule (library and run config),
// canonical names and aliases (hashes, checkpoints, messages), the run config's help text and the
// CLI's. A new algorithm is one source file with its factory plus one row in registry.cpp.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "gossip/algorithms/algorithm.hpp"
#include "gossip/transport_options.hpp"

namespace gossip::algorithms {

// Which codecs an algorithm's messages may go through.
enum class CodecRule {
  any,       // it compresses differences or sums and corrects the error itself
  lossless,  // "identity", "fp16" or "bf16": its messages are the models themselves, so a lossy
             // codec would only add noise to them
  identity,  // fp32 only (the exact sums of the all-reduce)
};

// What the algorithm needs of the topology.
enum class TopologyNeed {
  peers,        // only n: it talks over the ring links (all-reduce)
  symmetric_w,  // a connected, symmetric, doubly stochastic W whose neighbours the transport links
  tree,         // a symmetric W on a tree (no cycles)
  all_pairs,    // only n, but it sends every peer its own message (Transport::post / collect):
                // the transport links every pair (TransportOptions::all_links)
};

using AlgorithmFactory = std::unique_ptr<Algorithm> (*)(const AlgorithmConfig&, net::Transport&,
                                                        const topology::Topology&,
                                                        std::span<const float>);
// The largest payload, in bytes, one transport call of the algorithm carries for a d-float model
// on n peers, where it can exceed both one codec message of the model and an fp32 ring chunk.
using PayloadFn = std::size_t (*)(const AlgorithmConfig&, std::size_t d, int n);

struct AlgorithmInfo {
  std::string_view name;                      // canonical: hashes, checkpoints, metrics
  std::span<const std::string_view> aliases;  // other names that select it
  AlgorithmFactory make;
  bool consensus_step;  // reads AlgorithmConfig::consensus_step (η, γ_c)
  CodecRule codecs;
  TopologyNeed topology;
  bool time_varying;  // can run on a time-varying graph (a W that changes from round to round)
  bool centralized;   // all-reduce family: every peer holds the same model
  // Accepts AlgorithmConfig::staleness > 0 (overlapped gossip): its rule has a stale form whose
  // invariant is derived and tested (docs/algorithms.md "Overlapped gossip").
  bool staleness;
  bool local_steps;              // takes AlgorithmConfig::local_steps > 1
  PayloadFn payload;             // nullptr: one codec message of the model, or an fp32 ring chunk
  std::string_view description;  // one line, for help texts
  // Why its state cannot follow a W that changes mid-run, when a peer is lost and the others mix
  // with Metropolis-Hastings weights without it (transport.on_peer_loss = "continue"); "" when
  // it can: its rule reads W afresh every round and keeps no per-edge state.
  std::string_view peer_loss_refusal;
};

// Every algorithm, in the order help texts list them.
std::span<const AlgorithmInfo> algorithm_registry();
// The row of a canonical name or alias; throws std::invalid_argument listing every name.
const AlgorithmInfo& find_algorithm(std::string_view name);
// "dpsgd, dcd-psgd, ..." (canonical names in registry order).
std::string algorithm_names();
// One line per algorithm: "  name (aliases): description", for --help texts.
std::string algorithm_help();
// The largest payload of one transport call of `config`'s algorithm (d floats, n peers) beyond
// one codec message of the model and an fp32 ring chunk (0 when it sends nothing larger): what a
// transport's max_payload_bytes must admit.
std::size_t largest_payload(const AlgorithmConfig& config, std::size_t d, int n);
// Sets what `config`'s algorithm needs of the transport on every peer alike: the overlap lag
// (staleness), the rounds between exchanges (local steps), links between every pair
// (TopologyNeed::all_pairs) and how many rounds its direct messages may wait (DGA's delay). Throws
// std::invalid_argument on an unknown name.
void fit_transport_options(const AlgorithmConfig& config, net::TransportOptions& options);
// Throws std::invalid_argument (naming the algorithm, the codec and the rule) unless the codec
// spec is allowed by the row. `spec` must parse (kernels::parse_spec).
void check_codec(const AlgorithmInfo& algorithm, std::string_view spec);
// Throws std::invalid_argument (naming the algorithm, why, and the algorithms that can) when the
// row cannot follow a changed W (peer_loss_refusal). The message starts "= \"continue\"": the
// caller names the setting.
void check_peer_loss(const AlgorithmInfo& algorithm);
// Throws std::invalid_argument (naming the algorithm, why, and the algorithms that do) unless
// staleness is 0 or the row accepts a stale rule. The message starts "= τ": the caller names
// the setting.
void check_staleness(const AlgorithmInfo& algorithm, std::uint32_t staleness);

}  // namespace gossip::algorithms
