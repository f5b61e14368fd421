#include "gossip/link_emulation.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace gossip::net {

const LinkParams& LinkEmulation::for_peer(int rank) const {
  auto it = per_peer.find(rank);
  return it == per_peer.end() ? all : it->second;
}

bool LinkEmulation::active() const {
  if (all.active()) return true;
  return std::any_of(per_peer.begin(), per_peer.end(),
                     [](const auto& kv) { return kv.second.active(); });
}

LinkEmulator::LinkEmulator(LinkEmulation config, int size)
    : config_(std::move(config)),
      active_(config_.active()),
      buckets_(static_cast<std::size_t>(std::max(size, 0))) {
  for (std::size_t r = 0; r < buckets_.size(); ++r) {
    buckets_[r].tokens = static_cast<double>(config_.for_peer(static_cast<int>(r)).burst_bytes);
  }
}

std::uint64_t LinkEmulator::ready_at(int from, std::uint64_t bytes, std::uint64_t sent_at_ns,
                                     std::uint64_t now_ns) {
  if (!active_) return now_ns;
  const LinkParams& p = config_.for_peer(from);
  // A send time in the future or zero means the sender is on another host (or lied): fall back
  // to our own clock, which can only make the emulated link slower, never faster.
  std::uint64_t t = (sent_at_ns == 0 || sent_at_ns > now_ns) ? now_ns : sent_at_ns;
  if (p.bandwidth_bytes_per_s > 0.0) {
    Bucket& b = buckets_.at(static_cast<std::size_t>(from));
    const double rate = p.bandwidth_bytes_per_s;
    const double depth = static_cast<double>(p.burst_bytes);
    if (t > b.last_ns) {
      b.tokens = std::min(depth, b.tokens + rate * static_cast<double>(t - b.last_ns) * 1e-9);
      b.last_ns = t;
    } else {
      // The link is still busy with an earlier message: this one queues behind it.
      t = b.last_ns;
    }
    b.tokens -= static_cast<double>(bytes);
    if (b.tokens < 0.0) {
      const auto wait_ns = static_cast<std::uint64_t>(std::ceil(-b.tokens / rate * 1e9));
      // The bucket is empty when the last byte leaves; account from that instant.
      b.last_ns = t + wait_ns;
      b.tokens = 0.0;
      t += wait_ns;
    }
  }
  return t + static_cast<std::uint64_t>(std::max<std::int64_t>(p.latency.count(), 0));
}

}  // namespace gossip::net
