#pragma once
// Mean of a float vector over all peers, by a ring all-reduce over Transport::ring_step.

#include <cstdint>
#include <span>
#include <vector>

#include "gossip/transport.hpp"

namespace gossip::runtime {

// Replaces `data` by its mean over all peers. Every peer calls it with the same `round` (one not
// used by training) and the same length. Reduce-scatter then all-gather: 2(n-1) ring steps of
// about d/n floats; every peer ends with the same bytes.
void allreduce_mean(net::Transport& transport, std::uint64_t round, std::span<float> data);

}  // namespace gossip::runtime
