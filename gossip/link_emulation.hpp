#pragma once
// Network emulation for experiments on one machine (docs/transport.md, "Network model"): each
// peer's NIC (an uplink shared by all it sends, a downlink shared by all it receives) and each
// link (latency, and optionally a bandwidth of its own). A message of B bytes (its 64-byte frame
// header included) passes, in order:
//   the sender's uplink     B / uplink rate; the k frames of one send (an exchange to k
//                           neighbours) share it and end together; sends in order (the sender)
//   the link                the link's token bucket, B / link rate   (the receiver, from then on)
//   the wire                + latency
//   the receiver's downlink B / downlink rate, after the work of the messages before it
// Each stage does a message's work once it has done the work of those before it, and the
// message's last byte leaves no sooner than it came from the stage before (cut-through: stages in
// series cost the slowest, not the sum). Times
// are nanoseconds of whatever clock the run uses: CLOCK_MONOTONIC (shared by all processes of a
// host) when emulating in real time, a peer's virtual clock in `gossip simulate` with
// transport.clock = "virtual". Both transports share this code.

#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

namespace gossip::net {

// When the first and the last byte of a message pass a point (ns).
struct Passage {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};

// One stage of limited rate: a token bucket of `burst_bytes` depth refilled at the rate. A
// message's work starts when it arrives (its first byte) or when the stage has done the work of
// the messages before it, whichever is later, and takes (bytes beyond the saved-up tokens) / rate;
// its last byte leaves when the work is done, or when it came if that is later. Rate 0: unlimited
// (the message passes as it came).
class RateLimit {
 public:
  RateLimit() = default;
  RateLimit(double bytes_per_s, std::uint64_t burst_bytes);
  bool limited() const { return rate_ > 0.0; }
  Passage pass(Passage in, std::uint64_t bytes);

 private:
  double rate_ = 0.0;          // bytes per second
  double depth_ = 0.0;         // bucket depth in bytes
  double tokens_ = 0.0;        // saved up
  std::uint64_t last_ns_ = 0;  // the work taken on so far is done then; tokens_ up to date there
};

struct LinkParams {
  std::chrono::nanoseconds latency{0};  // added one-way delay per message
  double bandwidth_bytes_per_s = 0.0;   // this link's own limit; 0: unlimited
  std::uint64_t burst_bytes = 0;        // token bucket depth; 0 makes every byte pay

  bool active() const { return latency.count() > 0 || bandwidth_bytes_per_s > 0.0; }
};

struct LinkEmulation {
  LinkParams all;                      // every incoming link
  std::map<int, LinkParams> per_peer;  // overrides, keyed by the sending neighbour's rank
  // This peer's NIC; 0: unlimited. Every peer of a run should use the same values (each applies
  // its own uplink to what it sends and its own downlink to what it receives).
  double uplink_bytes_per_s = 0.0;
  double downlink_bytes_per_s = 0.0;

  const LinkParams& for_peer(int rank) const;
  bool active() const;
};

// One peer's side of the emulation: its uplink, its downlink and the incoming links' buckets.
// Not thread safe: owned by one transport.
class LinkEmulator {
 public:
  LinkEmulator(LinkEmulation config, int size);

  bool active() const { return active_; }
  // The uplink, which a sender passes each send through (all the bytes of its frames at once: they
  // share it), in send order.
  RateLimit& uplink() { return uplink_; }
  // Where a message of `bytes` from `from`, that left the sender's uplink as `up`, is once it
  // has crossed the link (its bucket, then the latency): at our NIC. Messages of one sender must
  // come in the order it sent them.
  Passage arrive(int from, std::uint64_t bytes, Passage up);
  // When a message at our NIC as `at_nic` has passed our downlink: the time the receiver may use
  // it. The order of the calls is the downlink's service order.
  std::uint64_t receive(std::uint64_t bytes, Passage at_nic);

 private:
  LinkEmulation config_;
  bool active_;
  RateLimit uplink_, downlink_;
  std::vector<RateLimit> links_;  // per sending rank
};

}  // namespace gossip::net
