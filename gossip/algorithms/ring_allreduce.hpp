#pragma once
// Ring all-reduce over Transport::ring_step: reduce-scatter then all-gather, 2(n-1) steps of about
// d/n floats. Every peer ends with the same bytes (each chunk is summed once, in ring order, then
// copied around). Used by the C-PSGD baseline and by the runtime to average models at the end.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "gossip/transport.hpp"

namespace gossip::algorithms {

// Seconds spent in the two kinds of work, for callers that report them.
struct RingTimes {
  double wait_s = 0.0;    // inside ring_step
  double reduce_s = 0.0;  // summing and copying chunks
};

// Floats of scratch ring_allreduce_sum needs for d floats over n peers: the longest chunk.
inline std::size_t ring_scratch_floats(std::size_t d, std::size_t n) {
  return n > 1 ? d / n + (d % n != 0 ? 1 : 0) : 0;
}

// Step s (0 <= s < 2(n − 1)) of the ring all-reduce of d floats, at `rank`: which part of the
// vector goes to rank + 1, which part the message from rank − 1 lands on, and whether it is added
// (the first n − 1 steps, reduce-scatter) or copied (all-gather). ring_allreduce_sum runs them in
// order; an algorithm may spread them over rounds (DGA) as long as every peer runs step s of a
// vector in the same ring call.
struct RingStepPlan {
  std::size_t send_begin = 0, send_size = 0;
  std::size_t recv_begin = 0, recv_size = 0;
  bool add = true;
};
RingStepPlan ring_step_plan(std::size_t d, std::size_t n, std::size_t rank, std::size_t s);

// Ring steps a diagnostic all-reduce starts at, so that it can share a round with the all-reduce
// of the C-PSGD baseline (whose steps start at 0) and still keep (round, step) growing.
inline constexpr std::uint32_t kDiagnosticFirstStep = 1u << 24;

// The ranks of the ring: every rank not gone for good (net::gone_for_good), ascending.
std::vector<int> ring_members(const net::Transport& transport);

// Replaces `data` by its sum over the ring's members (ring_members: all peers unless some are
// gone). Every member calls it with the same `round`, `first_step` and length and knows the same
// departures; it uses ring steps first_step .. first_step + 2(m-1) - 1 of `round`, m members.
// `scratch` must hold ring_scratch_floats(d, m) floats. Allocates nothing without departures.
// Returns false when the ring was cut (Transport::ring_cut: a member left while it ran); `data`
// is then meaningless.
bool ring_allreduce_sum(net::Transport& transport, std::uint64_t round, std::span<float> data,
                        std::span<float> scratch, RingTimes* times = nullptr,
                        std::uint32_t first_step = 0);

// Replaces `data` by its mean over the ring's members (allocates its scratch); false when the
// ring was cut.
bool allreduce_mean(net::Transport& transport, std::uint64_t round, std::span<float> data,
                    std::uint32_t first_step = 0);

}  // namespace gossip::algorithms
