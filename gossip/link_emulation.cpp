#include "gossip/link_emulation.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace gossip::net {

RateLimit::RateLimit(double bytes_per_s, std::uint64_t burst_bytes)
    : rate_(bytes_per_s),
      depth_(static_cast<double>(burst_bytes)),
      tokens_(static_cast<double>(burst_bytes)) {}

Passage RateLimit::pass(Passage in, std::uint64_t bytes) {
  if (!limited()) return in;
  std::uint64_t start = in.first;
  if (start > last_ns_) {
    tokens_ = std::min(depth_, tokens_ + rate_ * static_cast<double>(start - last_ns_) * 1e-9);
    last_ns_ = start;
  } else {
    start = last_ns_;  // busy with an earlier message: this one queues behind it
  }
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ < 0.0) {
    last_ns_ = start + static_cast<std::uint64_t>(std::ceil(-tokens_ / rate_ * 1e9));
    tokens_ = 0.0;  // empty when the work is done: accounted from that instant
  }
  // The stage is free again once it has done the work (the next message may use the time in
  // which this one's bytes still trickle in from a slower stage); the last byte cannot leave
  // before it came.
  return {start, std::max(last_ns_, in.last)};
}

const LinkParams& LinkEmulation::for_peer(int rank) const {
  auto it = per_peer.find(rank);
  return it == per_peer.end() ? all : it->second;
}

bool LinkEmulation::active() const {
  if (all.active() || uplink_bytes_per_s > 0.0 || downlink_bytes_per_s > 0.0) return true;
  return std::any_of(per_peer.begin(), per_peer.end(),
                     [](const auto& kv) { return kv.second.active(); });
}

LinkEmulator::LinkEmulator(LinkEmulation config, int size)
    : config_(std::move(config)),
      active_(config_.active()),
      uplink_(config_.uplink_bytes_per_s, 0),
      downlink_(config_.downlink_bytes_per_s, 0) {
  for (int r = 0; r < std::max(size, 0); ++r) {
    const LinkParams& p = config_.for_peer(r);
    links_.emplace_back(p.bandwidth_bytes_per_s, p.burst_bytes);
  }
}

Passage LinkEmulator::arrive(int from, std::uint64_t bytes, Passage up) {
  Passage p = links_.at(static_cast<std::size_t>(from)).pass(up, bytes);
  const auto latency =
      static_cast<std::uint64_t>(std::max<std::int64_t>(config_.for_peer(from).latency.count(), 0));
  return {p.first + latency, p.last + latency};
}

std::uint64_t LinkEmulator::receive(std::uint64_t bytes, Passage at_nic) {
  return downlink_.pass(at_nic, bytes).last;
}

}  // namespace gossip::net
