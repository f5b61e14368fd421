#pragma once
// Link emulation for experiments on one machine: per-link latency and bandwidth, applied by the
// receiver. A message becomes visible to the receiving algorithm only at
//   max(sent_at, link_free) + bytes / bandwidth  (the link is busy until then; token bucket)
//   + latency.
// Working from the sender's send time (carried in the frame header, CLOCK_MONOTONIC shared by
// all processes on a host) means a message that waited in a socket while the receiver computed is
// not delayed twice. Both transports share this code.

#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

namespace gossip::net {

struct LinkParams {
  std::chrono::nanoseconds latency{0};  // added one-way delay per message
  double bandwidth_bytes_per_s = 0.0;   // 0: unlimited
  std::uint64_t burst_bytes = 0;        // token bucket depth; 0 makes every byte pay

  bool active() const { return latency.count() > 0 || bandwidth_bytes_per_s > 0.0; }
};

struct LinkEmulation {
  LinkParams all;                      // every incoming link
  std::map<int, LinkParams> per_peer;  // overrides, keyed by the sending neighbour's rank

  const LinkParams& for_peer(int rank) const;
  bool active() const;
};

// Per-peer state of the token buckets of one receiver. Not thread safe: owned by one transport.
class LinkEmulator {
 public:
  LinkEmulator(LinkEmulation config, int size);

  bool active() const { return active_; }
  // The CLOCK_MONOTONIC time (ns) at which a message of `bytes` (header included) sent by `from`
  // at `sent_at_ns` is delivered. `now_ns` bounds clock values that cannot be right.
  std::uint64_t ready_at(int from, std::uint64_t bytes, std::uint64_t sent_at_ns,
                         std::uint64_t now_ns);

 private:
  struct Bucket {
    double tokens = 0.0;        // may go negative: bytes still owed
    std::uint64_t last_ns = 0;  // time tokens was last brought up to date
  };
  LinkEmulation config_;
  bool active_;
  std::vector<Bucket> buckets_;
};

}  // namespace gossip::net
