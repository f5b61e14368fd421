// libFuzzer target for what a peer reads off the wire before any algorithm sees it: the frame
// header (decode_header), the hello record (decode_hello) and the transport's checks of a whole
// frame (FramedTransport::accept), on rank 0 of a 4-ring whose transport is fed the frames.
//
// Input: byte 0 sets the receive window (0..2), a payload limit (bit 2: 1 KiB), peer loss
// (bit 3: on_peer_loss = continue, receive window 0: control frames, rejoin hellos) and, with
// it, a peer that rejoins (bit 4: state frames); then records,
// each: one byte (low bits: the connection, 0 a stranger, 1..4 rank 0..3; bit 7: reseal the header
// checksum so the checks behind it are reached), two bytes of payload length (little-endian), 64
// header bytes, the payload (what is left when shorter).
//
// Properties checked (a failure aborts, which libFuzzer reports):
//  - a header that decodes encodes back to the same 64 bytes (bar the reserved flags, which decode
//    ignores, and the checksum over them); one that does not names its fault;
//  - a hello record that decodes encodes back to the same bytes; a bad one throws only
//    std::invalid_argument;
//  - accept() throws nothing but TransportError, and that only for a hello on a peer's link that
//    names another run or setting (a real peer configured differently), never for a stranger;
//  - every frame is counted as received or held for a call; every frame from a stranger or from
//    rank 2 (not linked to rank 0) is dropped and counted, exactly once.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "gossip/frame.hpp"
#include "gossip/framed_transport.hpp"
#include "tests/gossip/transport_test_util.hpp"
#include "topology/generators.hpp"

namespace {

namespace gn = gossip::net;

constexpr int kPeers = 4;
constexpr std::uint64_t kRunHash = 0x5eed;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_frame: property violated: %s\n", what);
  std::abort();
}

const gossip::topology::Topology& topo() {
  static const auto t = gossip::topology::make_topology(gossip::topology::parse_spec("ring:4"));
  return t;
}

// Rank 0's transport with no backend: frames go in through accept(), nothing goes out.
class FedTransport final : public gn::FramedTransport {
 public:
  explicit FedTransport(gn::TransportOptions o)
      : FramedTransport(topo(), 0, std::move(o), "fuzz") {}
  using FramedTransport::accept;
  using FramedTransport::frames_held;

 protected:
  bool try_send(int, const gn::HeaderBytes&, std::span<const std::byte>) override { return true; }
  std::optional<gn::Inbound> wait_inbound(gn::Clock::time_point, std::span<const int>) override {
    return std::nullopt;
  }
  std::vector<int> wait_released(gn::Clock::time_point) override { return {}; }
  void abort() noexcept override {}
};

void check_header_round_trip(std::span<const std::byte> bytes) {
  const gn::HeaderParse p = gn::decode_header(bytes);
  if (!p.header) {
    if (p.fault == gn::HeaderFault::none || p.error.empty()) violated("refused header, no fault");
    return;
  }
  if (p.fault != gn::HeaderFault::none || !p.error.empty()) violated("header with a fault");
  const gn::HeaderBytes again = gn::encode_header(*p.header);
  for (std::size_t i = 0; i < gn::kFrameHeaderSize; ++i) {
    const bool flags_or_sum = (i >= 28 && i < 32) || i >= 60;
    if (again[i] != bytes[i] && !flags_or_sum) violated("header does not encode back");
  }
  const bool flags_zero = bytes[28] == std::byte{0} && bytes[29] == std::byte{0} &&
                          bytes[30] == std::byte{0} && bytes[31] == std::byte{0};
  if (flags_zero && std::memcmp(again.data(), bytes.data(), gn::kFrameHeaderSize) != 0)
    violated("header with zero flags does not encode back byte for byte");
}

void check_hello_round_trip(std::span<const std::byte> bytes) {
  gn::Hello h;
  try {
    h = gn::decode_hello(bytes);
  } catch (const std::invalid_argument&) {
    return;
  }
  const auto again = gn::encode_hello(h);
  if (again.size() != bytes.size() || std::memcmp(again.data(), bytes.data(), bytes.size()) != 0)
    violated("hello does not encode back byte for byte");
}

void write_seed(const std::string& dir, const std::string& name, const std::vector<std::byte>& b) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

// With GOSSIP_FUZZ_SEED_DIR set, writes real frame sequences there (the seed corpus): each peer's
// hello followed by exchange, credit and ring frames of the real session, as the transports build
// them.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // drops log a line each; the counters are checked
  const char* dir = std::getenv("GOSSIP_FUZZ_SEED_DIR");
  if (!dir) return 0;
  const std::uint64_t session = gn::session_hash(topo().hash(), kRunHash);
  const auto record = [](std::vector<std::byte>& out, int conn, const gn::HeaderBytes& h,
                         const std::vector<std::byte>& payload) {
    out.push_back(static_cast<std::byte>(conn));
    out.push_back(static_cast<std::byte>(payload.size() & 0xff));
    out.push_back(static_cast<std::byte>(payload.size() >> 8));
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), payload.begin(), payload.end());
  };
  std::vector<std::byte> body(40);
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<std::byte>(i * 7);
  for (int window = 0; window < 2; ++window) {
    std::vector<std::byte> seq{static_cast<std::byte>(window)};
    for (int from : {1, 3, 2}) {
      const gn::test::Forger f{nullptr, from, 0, session, &topo()};
      const auto hello = f.hello_body(kRunHash, static_cast<std::uint32_t>(window));
      record(seq, from + 1, f.header(gn::FrameKind::hello, 0, 0, hello.size(), 0), hello);
    }
    for (std::uint64_t round = 0; round < 3; ++round) {
      for (int from : {1, 3}) {
        const gn::test::Forger f{nullptr, from, 0, session, &topo()};
        record(seq, from + 1, f.header(gn::FrameKind::exchange, round, 0, body.size(), session),
               body);
        if (window > 0)
          record(seq, from + 1, f.header(gn::FrameKind::credit, round, 0, 0, session), {});
      }
      const gn::test::Forger ring{nullptr, 3, 0, session, &topo()};
      for (std::uint32_t step = 0; step < 3; ++step)
        record(seq, 4, ring.header(gn::FrameKind::ring, round, step, 16, session, round == 2),
               std::vector<std::byte>(16, std::byte{1}));
    }
    const gn::test::Forger stranger{nullptr, 1, 0, session, &topo()};
    record(seq, 0, stranger.header(gn::FrameKind::exchange, 0, 0, body.size(), session), body);
    write_seed(dir, "seed-" + std::to_string(window), seq);
  }
  // Peer loss and rejoin (byte 0: continue, rejoining): hellos, a state of one chunk from rank 1
  // (no departures, then the caller's bytes), rank 3's rejoin hello, a join and a leave notice.
  std::vector<std::byte> seq{std::byte{8 | 16}};
  for (int from : {1, 3}) {
    const gn::test::Forger f{nullptr, from, 0, session, &topo()};
    const auto hello = f.hello_body(kRunHash, 0);
    record(seq, from + 1, f.header(gn::FrameKind::hello, 0, 0, hello.size(), 0), hello);
  }
  const gn::test::Forger one{nullptr, 1, 0, session, &topo()};
  std::vector<std::byte> state(12 + 4 + body.size(), std::byte{0});
  state[0] = std::byte{1};                                      // one chunk
  state[4] = static_cast<std::byte>(4 + body.size());           // total bytes
  std::copy(body.begin(), body.end(), state.begin() + 12 + 4);  // after 0 departures
  record(seq, 2, one.header(gn::FrameKind::state, 7, 0, state.size(), session), state);
  const gn::test::Forger three{nullptr, 3, 0, session, &topo()};
  const auto hello = three.hello_body(kRunHash, 0);
  record(seq, 4, three.header(gn::FrameKind::hello, 0, gn::kRejoin, hello.size(), 0), hello);
  for (const auto type : {gn::ControlType::join, gn::ControlType::leave}) {
    const auto c = gn::encode_control({type, 2, 9, 0, 0xF0F0'0000'0000ull + 2});
    record(seq, 2, one.header(gn::FrameKind::control, 0, 0, c.size(), session),
           std::vector<std::byte>(c.begin(), c.end()));
  }
  write_seed(dir, "seed-rejoin", seq);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  gn::TransportOptions options;
  options.run_hash = kRunHash;
  options.receive_window = data[0] % 3;
  options.max_payload_bytes = (data[0] & 4) ? 1024 : 0;
  if (data[0] & 8) {
    options.on_peer_loss = gn::PeerLoss::continue_run;
    options.receive_window = 0;
    options.rejoin = (data[0] & 16) != 0;
  }
  FedTransport t(std::move(options));
  std::size_t at = 1, frames = 0;
  while (at + 3 + gn::kFrameHeaderSize <= size) {
    const int conn = data[at] & 0x7f;
    const bool reseal = data[at] & 0x80;
    const std::size_t want = data[at + 1] | static_cast<std::size_t>(data[at + 2]) << 8;
    at += 3;
    gn::HeaderBytes header;
    std::memcpy(header.data(), data + at, header.size());
    at += header.size();
    if (reseal) gn::test::reseal(header);
    const std::size_t len = std::min(want, size - at);
    auto owned = std::make_shared<std::vector<std::byte>>(gn::kFrameHeaderSize + len);
    std::memcpy(owned->data(), header.data(), header.size());
    if (len > 0) std::memcpy(owned->data() + header.size(), data + at, len);
    at += len;

    gn::Inbound in;
    in.link = conn % (kPeers + 1) - 1;
    if (in.link < 0) in.link_label = "routing id 0xfuzz";
    in.header = std::span<const std::byte>(owned->data(), header.size());
    in.payload = std::span<const std::byte>(owned->data() + header.size(), len);
    in.owner = owned;
    check_header_round_trip(in.header);
    if (const auto h = gn::decode_header(in.header);
        h.header && h.header->kind == gn::FrameKind::hello)
      check_hello_round_trip(in.payload);

    const bool must_drop = in.link == -1 || in.link == 2;
    const std::uint64_t dropped = t.drops().all.total;
    try {
      t.accept(std::move(in));
    } catch (const gn::TransportError&) {
      // Only a checked hello of a linked peer may end the transport (another run's settings).
      if (must_drop || !t.failed()) violated("TransportError not from a peer's hello");
      return 0;
    }
    ++frames;
    // A data frame kept for its call is counted when the call takes it (or it is dropped).
    if (t.counters().messages_received + t.frames_held() != frames)
      violated("frame neither counted as received nor held for a call");
    if (must_drop && t.drops().all.total != dropped + 1)
      violated("frame from a stranger or an unlinked rank not dropped exactly once");
    if (t.drops().all.total > dropped + 1) violated("one frame dropped twice");
  }
  return 0;
}
