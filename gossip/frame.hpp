#pragma once
// The transport's frame header: 64 bytes in front of every payload, little-endian, fixed layout.
// The payload itself (a codec wire message, a ring chunk, a handshake record) is opaque here.
//
//  off size field
//    0    4 magic           "GSPF" (0x46505347 read as little-endian u32)
//    4    2 version         kFrameVersion
//    6    2 kind            FrameKind
//    8    4 sender          rank of the peer that built the frame
//   12    4 receiver        rank it is addressed to
//   16    8 round           training round
//   24    4 step            ring step, the lane of a direct frame, the chunk of a state frame;
//                           in a hello 1 when the sender is a restarted peer rejoining (kRejoin)
//   28    4 uplink_us       microseconds the payload took through the sender's uplink (0: none)
//   32    8 payload_length  bytes that follow the header
//   40    8 session         session_hash(topology hash, run hash)
//   48    8 sent_at_ns      when the last byte left the sender's uplink, on the sender's clock
//                           (CLOCK_MONOTONIC, or its virtual clock); drives the network model
//   56    4 stop_in         0, or k > 0: the sender's run stops before round `round + k`
//   60    4 checksum        FNV-1a 32 of bytes [0, 60)

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gossip::net {

inline constexpr std::uint32_t kFrameMagic = 0x46505347u;  // bytes 'G' 'S' 'P' 'F'
// 2: the hello carries the launch nonce (Hello::nonce). 3: uplink_us (the flags were 0).
// 4: the hello carries the process instance; control records carry episode and instance.
inline constexpr std::uint16_t kFrameVersion = 4;
inline constexpr std::size_t kFrameHeaderSize = 64;

// credit: "send me your exchange payload of this round" (receive-window pacing, no payload).
// direct: a message from any peer to any other (Transport::post / collect), `step` its lane.
// control: peer loss (TransportOptions::on_peer_loss = continue), a Control record; a peer that
// stops on a loss drops it as bad control.
// state: one chunk of a peer's state for a peer that rejoins (Transport::send_state).
enum class FrameKind : std::uint16_t {
  hello = 1,
  exchange = 2,
  ring = 3,
  credit = 4,
  direct = 5,
  control = 6,
  state = 7
};
inline constexpr std::uint16_t kLastFrameKind = 7;
// The step of a hello frame sent by a restarted peer (TransportOptions::rejoin).
inline constexpr std::uint32_t kRejoin = 1;

std::string_view kind_name(FrameKind k);

struct FrameHeader {
  FrameKind kind = FrameKind::exchange;
  std::uint32_t sender = 0;
  std::uint32_t receiver = 0;
  std::uint64_t round = 0;
  std::uint32_t step = 0;
  std::uint64_t payload_length = 0;
  std::uint64_t session = 0;
  // When the last byte left the sender's uplink (its send time without one), and how long the
  // payload took through it: the receiver's network model starts from there (link_emulation.hpp).
  std::uint64_t sent_at_ns = 0;
  std::uint32_t uplink_us = 0;
  // Stop agreement (exchange and ring frames): 0, or k > 0 when the sender knows the run stops
  // before round round + k (Transport::request_stop).
  std::uint32_t stop_in = 0;
};

using HeaderBytes = std::array<std::byte, kFrameHeaderSize>;

HeaderBytes encode_header(const FrameHeader& h);

// Parses and checks the fixed fields (size, magic, version, checksum, kind). Returns the reason
// on failure instead of throwing, so the caller can name the peer and endpoint in its error, and
// count the failure by its fault.
enum class HeaderFault : std::uint8_t { none, size, magic, version, checksum, kind };
struct HeaderParse {
  std::optional<FrameHeader> header;
  std::string error;  // empty when header is set
  HeaderFault fault = HeaderFault::none;
};
HeaderParse decode_header(std::span<const std::byte> bytes);

// The value every data frame carries: both hashes folded so one compare rejects a frame of
// another run or topology; a non-zero launch nonce (TransportOptions::run_nonce) is folded in
// too, so frames of another launch of the same run are another session's.
std::uint64_t session_hash(std::uint64_t topology_hash, std::uint64_t run_hash,
                           std::uint64_t nonce = 0);

// Handshake record, the payload of a hello frame.
struct Hello {
  std::uint64_t topology_hash = 0;
  std::uint64_t run_hash = 0;
  std::uint32_t size = 0;
  std::uint32_t rank = 0;
  std::uint32_t window = 0;  // TransportOptions::receive_window: both sides must pace alike
  std::string endpoint;
  std::uint64_t nonce = 0;  // TransportOptions::run_nonce: both sides come from one launch
  // This process of the rank: random and non-zero, drawn by each transport. A restarted peer has
  // a new one, so a late hello or notice of a process already replaced is told apart from news.
  std::uint64_t instance = 0;
};
std::vector<std::byte> encode_hello(const Hello& h);
// Throws std::invalid_argument on a malformed record.
Hello decode_hello(std::span<const std::byte> bytes);

// Payload of a control frame, 32 bytes: type (u32), rank (u32), round (u64), episode (u64),
// instance (u64), little-endian.
//   leave: `rank` is gone from the run; every remaining peer mixes without it from round `round`
//          (r*) on, with Metropolis-Hastings weights on the graph left (docs/transport.md).
//          `episode` numbers the departures of that rank from 0 (Departure::episode).
//   alive: the sender is alive and waiting in round `round` (sent while a call waits long), so a
//          neighbour stuck behind a lost peer is not taken for lost itself; `rank` is the sender.
//   join:  `rank`, gone in departure `episode`, is back as process `instance` (Hello::instance)
//          from round `round` on (it restarted and asked to rejoin): every peer mixes with it
//          again from there, and its donor sends it the state of that round.
enum class ControlType : std::uint32_t { leave = 1, alive = 2, join = 3 };
struct Control {
  ControlType type = ControlType::leave;
  std::uint32_t rank = 0;
  std::uint64_t round = 0;
  std::uint64_t episode = 0;
  std::uint64_t instance = 0;
};
inline constexpr std::size_t kControlSize = 32;
std::array<std::byte, kControlSize> encode_control(const Control& c);
// nullopt: not 32 bytes, an unknown type, or a join without an instance.
std::optional<Control> decode_control(std::span<const std::byte> bytes);

// CLOCK_MONOTONIC in nanoseconds: shared by all processes of one host.
std::uint64_t monotonic_ns();

}  // namespace gossip::net
