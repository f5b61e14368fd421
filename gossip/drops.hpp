#pragma once
// Frames the transport received and threw away, counted by reason and by the connection they
// came on. A frame that fails a check (transport.md, "Dropped frames") is dropped and counted
// instead of ending the run, so a stranger that reaches a peer's port cannot stop it; a
// neighbour whose frames are all dropped still ends the run through the round timeout, and that
// error quotes these counts.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace gossip::net {

enum class DropReason : std::uint8_t {
  not_a_peer,         // the connection is not a peer's (unknown routing id / sender)
  bad_parts,          // not a two-part (header, payload) message
  header_size,        // header part is not 64 bytes
  bad_magic,          // not "GSPF"
  bad_version,        // another frame version
  bad_checksum,       // header checksum mismatch
  bad_kind,           // unknown frame kind
  bad_length,         // payload_length differs from the bytes that arrived
  too_long,           // payload_length over TransportOptions::max_payload_bytes
  wrong_session,      // session of another run or topology
  wrong_sender,       // header names another sender than the peer on that connection
  not_linked,         // from a peer this one has no link with
  wrong_receiver,     // addressed to another rank
  bad_hello,          // hello record that does not parse or names another rank
  before_hello,       // data or credit frame before the peer's hello
  stale,              // round (or ring step) already finished
  duplicate,          // second frame of the same kind, round, step and sender
  too_far_ahead,      // further ahead than a peer can be, or more early frames than it can send
  not_neighbor,       // exchange or credit frame from a peer that is not a topology neighbour
  wrong_ring_sender,  // ring frame from another rank than rank-1
  bad_credit,         // credit frame while exchanges are not paced, or with a payload
  bad_stop,           // stop_in that overflows the round
  bad_control,  // control frame (peer loss) that does not parse, or while losses stop the run;
                // a state frame (rejoin) a peer does not wait for
  // CURVE only (a topology with public keys):
  handshake_failed,  // a connection refused at the CURVE handshake (counted per attempt): a key
                     // not in the topology, no CURVE, a wrong server key, no ZAP handler
};
inline constexpr std::size_t kDropReasonCount =
    static_cast<std::size_t>(DropReason::handshake_failed) + 1;

// "bad checksum", "duplicate", ...
std::string_view drop_reason_name(DropReason r);

struct DropTally {
  std::uint64_t total = 0;
  std::array<std::uint64_t, kDropReasonCount> by_reason{};

  std::uint64_t operator[](DropReason r) const { return by_reason[static_cast<std::size_t>(r)]; }
  void add(DropReason r) {
    ++total;
    ++by_reason[static_cast<std::size_t>(r)];
  }
  // "35 bad checksum, 2 stale" (reasons in enum order); "" when nothing was dropped.
  std::string summary() const;
};

struct DropCounters {
  // Connections that are not a peer's are named individually up to this many; the drops of any
  // further ones are counted under kOtherStrangers, so a stranger that opens connection after
  // connection cannot grow this map without bound.
  static constexpr std::size_t kMaxStrangers = 32;
  static constexpr std::string_view kOtherStrangers = "other connections";

  DropTally all;
  // By the rank of the connection the frame came on (its routing id "r<rank>" over ZeroMQ), not
  // by the sender its header claims. One entry per rank.
  std::vector<DropTally> by_peer;
  // Connections that are not a peer's, by the transport's name for them ("routing id 0x…").
  std::map<std::string, DropTally, std::less<>> by_stranger;
};

}  // namespace gossip::net
