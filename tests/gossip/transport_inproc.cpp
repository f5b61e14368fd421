// In-process transport: the shared transport cases, plus the round rules checked with forged
// frames posted straight into a peer's mailbox.

#include <doctest/doctest.h>

#include "gossip/inproc_transport.hpp"
#include "tests/gossip/transport_cases.hpp"

namespace gossip::net::test {
namespace {

Group inproc_group(const std::string& spec) {
  Group g{make_topo(spec, "tcp://127.0.0.1:29500"), {}};
  auto hub = std::make_shared<InprocHub>(g.topo);
  g.make = [hub](int rank, const TransportOptions& o) -> std::unique_ptr<FramedTransport> {
    return std::make_unique<InprocTransport>(hub, rank, o);
  };
  return g;
}

struct Lone {
  std::shared_ptr<InprocHub> hub;
  std::unique_ptr<InprocTransport> t;
  Forger peer;
};

// Rank 0 of ring:2 as a real transport; rank 1 forged by the test.
Lone lone(TransportOptions o = quick_options()) {
  auto topo = make_topo("ring:2", "tcp://127.0.0.1:29500");
  auto hub = std::make_shared<InprocHub>(topo);
  auto t = std::make_unique<InprocTransport>(hub, 0, o);
  Forger f{hub, 1, 0, session_hash(topo.hash(), o.run_hash)};
  return {hub, std::move(t), f};
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const TransportError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("inproc: exchange on ring, torus and complete graphs of 1, 2, 3 and 8 peers") {
  for (const char* spec : {"ring:1", "ring:2", "ring:3", "ring:8", "torus:2x4", "torus:3x3",
                           "complete:1", "complete:2", "complete:3", "complete:8"}) {
    for (std::size_t len : {0u, 4u, 1000u, 100000u}) check_exchange(inproc_group, spec, len, 3);
  }
}

TEST_CASE("inproc: exchange_each, eager and paced by a receive window") {
  for (const char* spec : {"ring:1", "ring:2", "ring:8", "complete:8", "torus:3x3"}) {
    check_exchange(inproc_group, spec, 1000, 4, 0, true);
    for (int window : {1, 2, 8}) {
      check_exchange(inproc_group, spec, 1000, 4, window, true);
      check_exchange(inproc_group, spec, 1000, 4, window, false);
    }
  }
}

TEST_CASE("inproc: peers that pace differently refuse each other") {
  Group g = inproc_group("ring:2");
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.receive_window = r;
    g.make(r, o)->handshake();
  });
  CHECK(errors[0].find("peer 1 (tcp://127.0.0.1:29501) paces exchanges with receive window 1, "
                       "ours is 0") != std::string::npos);
  CHECK(errors[1].find("receive window 0, ours is 1") != std::string::npos);
}

TEST_CASE("inproc: a paced peer whose neighbour never asks names it") {
  auto o = quick_options();
  o.receive_window = 1;
  o.timeout = std::chrono::milliseconds(300);
  auto topo = make_topo("ring:2", "tcp://127.0.0.1:29500");
  auto hub = std::make_shared<InprocHub>(topo);
  InprocTransport t(hub, 0, o);
  Forger f{hub, 1, 0, session_hash(topo.hash(), 0)};
  // Hello with window 1, then its payload without ever sending a credit.
  auto body = encode_hello({topo.hash(), 0, 2, 1, 1, topo.peers[1].endpoint});
  f.post(FrameKind::hello, 0, 0, body, 0);
  const auto mine = pattern(0, 0, 8);
  // Peer 1 "sends" before being asked: kept; then round 0 cannot finish: we never got a credit.
  f.data(0, pattern(1, 0, 8));
  CHECK(error_of([&] {
          t.exchange(0, mine);
        }).find("round 0: peer 1 (tcp://127.0.0.1:29501) never asked for our message") !=
        std::string::npos);
}

TEST_CASE("inproc: a ring all-reduce by hand with ring_step") {
  for (const char* spec : {"ring:1", "ring:2", "ring:3", "ring:8", "complete:4", "torus:3x3"}) {
    for (std::size_t d : {1u, 7u, 100u, 10000u}) check_ring_allreduce(inproc_group, spec, d);
  }
}

TEST_CASE("inproc: 256 peers in one process") {
  check_exchange(inproc_group, "torus:16x16", 64, 4);
}

TEST_CASE("inproc: run settings mismatch is refused by both sides") {
  check_run_hash_mismatch(inproc_group);
}

TEST_CASE("inproc: a silent neighbour times out naming peer, endpoint and round") {
  check_silent_neighbor(inproc_group);
}

TEST_CASE("inproc: link emulation adds latency and limits bandwidth") {
  check_latency(inproc_group);
  check_bandwidth(inproc_group);
}

TEST_CASE("inproc: early messages are kept for their round") {
  auto l = lone();
  const auto r0 = pattern(1, 0, 16);
  const auto r1 = pattern(1, 1, 16);
  const auto r2 = pattern(1, 2, 16);
  const auto r3 = pattern(1, 3, 16);
  l.peer.hello();
  l.peer.data(1, r1);  // one round early: the most a neighbour can be ahead
  l.peer.data(0, r0);
  const auto mine = pattern(0, 0, 8);
  CHECK(same(l.t->exchange(0, mine).at(0), r0));
  l.peer.data(2, r2);  // one round past our latest call, before we enter round 1
  CHECK(same(l.t->exchange(1, mine).at(0), r1));
  l.peer.data(3, r3);
  CHECK(same(l.t->exchange(2, mine).at(0), r2));
  CHECK(same(l.t->exchange(3, mine).at(0), r3));
}

TEST_CASE("inproc: frames too far ahead are refused, naming the peer") {
  const auto mine = pattern(0, 0, 8);
  const auto body = pattern(1, 0, 16);
  SUBCASE("an exchange frame of round 2^60") {
    auto l = lone();
    l.peer.hello();
    l.peer.data(1ull << 60, body);
    l.peer.data(3, body);
    const auto e = error_of([&] { l.t->exchange(3, mine); });
    CAPTURE(e);
    CHECK(e.find("rank 0: round 1152921504606846976 frame from peer 1 (tcp://127.0.0.1:29501) "
                 "is 1152921504606846973 rounds ahead of our round 3 (at most 1 for exchange "
                 "frames)") != std::string::npos);
    CHECK(error_of([&] { l.t->exchange(4, mine); }).find("unusable") != std::string::npos);
  }
  SUBCASE("an exchange frame two rounds ahead") {
    auto l = lone();
    l.peer.hello();
    l.peer.data(2, body);
    l.peer.data(0, body);
    CHECK(error_of([&] { l.t->exchange(0, mine); })
              .find("round 2 frame from peer 1 (tcp://127.0.0.1:29501) is 2 rounds ahead of our "
                    "round 0") != std::string::npos);
  }
  SUBCASE("kept during the handshake, before any round was known") {
    auto topo = make_topo("ring:3", "tcp://127.0.0.1:29500");
    auto hub = std::make_shared<InprocHub>(topo);
    InprocTransport t(hub, 0, quick_options());
    const auto session = session_hash(topo.hash(), 0);
    Forger f1{hub, 1, 0, session}, f2{hub, 2, 0, session};
    f1.hello();
    f1.data(1ull << 60, body);  // arrives while rank 0 still waits for rank 2's hello
    f2.hello();
    const auto e = error_of([&] { t.exchange(5, mine); });
    CAPTURE(e);
    CHECK(e.find("round 1152921504606846976 frame from peer 1 (tcp://127.0.0.1:29501) is") !=
          std::string::npos);
  }
  SUBCASE("a ring frame far ahead") {
    auto l = lone();
    l.peer.hello();
    l.peer.post(FrameKind::ring, 1000, 0, body, l.peer.session);
    std::vector<std::byte> recv(16);
    const auto e = error_of([&] { l.t->ring_step(0, 0, mine, recv); });
    CAPTURE(e);
    CHECK(e.find("round 1000 ring step 0 frame from peer 1 (tcp://127.0.0.1:29501) is 1000 "
                 "rounds ahead of our round 0 (at most 4 for ring frames)") != std::string::npos);
  }
  SUBCASE("a credit far ahead") {
    auto o = quick_options();
    o.receive_window = 1;
    auto l = lone(o);
    const auto& topo = l.hub->topology();
    l.peer.post(FrameKind::hello, 0, 0,
                encode_hello({topo.hash(), 0, 2, 1, 1, topo.peers[1].endpoint}), 0);
    l.peer.post(FrameKind::credit, 1ull << 40, 0, {}, l.peer.session);
    const auto e = error_of([&] { l.t->exchange(0, mine); });
    CAPTURE(e);
    CHECK(e.find("round 1099511627776 frame from peer 1 (tcp://127.0.0.1:29501) is "
                 "1099511627776 rounds ahead of our round 0 (at most 1 for credit frames)") !=
          std::string::npos);
  }
}

TEST_CASE("inproc: stop agreement: a stop round is adopted, a wrapped one is refused") {
  const auto mine = pattern(0, 0, 8);
  const auto body = pattern(1, 0, 16);
  SUBCASE("a stop request is adopted") {
    auto l = lone();
    l.peer.hello();
    l.peer.post(FrameKind::exchange, 3, 0, body, l.peer.session, 4);
    l.t->exchange(3, mine);
    REQUIRE(l.t->stop_round());
    CHECK(*l.t->stop_round() == 7);
  }
  SUBCASE("round + stop_in past 2^64 does not wrap to an early stop") {
    auto l = lone();
    l.peer.hello();
    const std::uint64_t round = UINT64_MAX - 1;  // 2^64 - 2: + 4 would wrap to 2
    l.peer.post(FrameKind::exchange, round, 0, body, l.peer.session, 4);
    const auto e = error_of([&] { l.t->exchange(round, mine); });
    CAPTURE(e);
    CHECK(e.find("rank 0: round 18446744073709551614 frame from peer 1 (tcp://127.0.0.1:29501): "
                 "stop_in 4 overflows the round") != std::string::npos);
    CHECK(!l.t->stop_round());
  }
}

TEST_CASE("inproc: duplicate and stale frames are rejected") {
  const auto body = pattern(1, 0, 16);
  const auto mine = pattern(0, 0, 8);
  SUBCASE("duplicate of a future round") {
    auto l = lone();
    l.peer.hello();
    l.peer.data(1, body);
    l.peer.data(1, body);
    l.peer.data(0, body);
    const auto e = error_of([&] { l.t->exchange(0, mine); });
    CHECK(e.find("duplicate round 1 frame from peer 1 (tcp://127.0.0.1:29501)") !=
          std::string::npos);
    // After an error the transport stays failed instead of running on in a broken state.
    CHECK(error_of([&] { l.t->exchange(1, mine); }).find("unusable") != std::string::npos);
  }
  SUBCASE("stale round") {
    auto l = lone();
    l.peer.hello();
    l.peer.data(0, body);
    CHECK(same(l.t->exchange(0, mine).at(0), body));
    l.peer.data(0, body);  // round 0 is over
    l.peer.data(1, body);
    const auto e = error_of([&] { l.t->exchange(1, mine); });
    CHECK(e.find("stale exchange frame of round 0 from peer 1") != std::string::npos);
  }
  SUBCASE("rounds must grow on our side too") {
    auto l = lone();
    l.peer.hello();
    l.peer.data(3, body);
    l.t->exchange(3, mine);
    CHECK(error_of([&] { l.t->exchange(3, mine); }).find("rounds must grow") != std::string::npos);
  }
  SUBCASE("duplicate hello") {
    auto l = lone();
    l.peer.hello();
    l.peer.hello();
    l.peer.data(0, body);
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("duplicate hello from peer 1") !=
          std::string::npos);
  }
}

TEST_CASE("inproc: corrupted and forged frames are rejected without a crash") {
  const auto mine = pattern(0, 0, 8);
  auto garbage = pattern(9, 9, kFrameHeaderSize);
  SUBCASE("garbage header") {
    auto l = lone();
    l.peer.hello();
    l.hub->post_raw(0, 1, garbage, pattern(1, 0, 100));
    const auto e = error_of([&] { l.t->exchange(0, mine); });
    CHECK(e.find("bad frame from peer 1 (tcp://127.0.0.1:29501): bad magic") != std::string::npos);
  }
  SUBCASE("truncated header") {
    auto l = lone();
    l.peer.hello();
    l.hub->post_raw(0, 1, std::vector<std::byte>(10), {});
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("frame header is 10 bytes") !=
          std::string::npos);
  }
  SUBCASE("one flipped bit fails the checksum") {
    auto l = lone();
    l.peer.hello();
    FrameHeader h;
    h.sender = 1;
    h.payload_length = 4;
    h.session = l.peer.session;
    auto hb = encode_header(h);
    hb[17] ^= std::byte{1};
    l.hub->post_raw(0, 1, {hb.begin(), hb.end()}, pattern(1, 0, 4));
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("checksum") != std::string::npos);
  }
  SUBCASE("length in header differs from the payload") {
    auto l = lone();
    l.peer.hello();
    FrameHeader h;
    h.sender = 1;
    h.payload_length = 1000;
    h.session = l.peer.session;
    const auto hb = encode_header(h);
    l.hub->post_raw(0, 1, {hb.begin(), hb.end()}, pattern(1, 0, 4));
    CHECK(error_of([&] {
            l.t->exchange(0, mine);
          }).find("header says 1000 payload bytes, 4 arrived") != std::string::npos);
  }
  SUBCASE("a frame claiming another sender") {
    auto topo = make_topo("ring:3", "tcp://127.0.0.1:29500");
    auto hub = std::make_shared<InprocHub>(topo);
    InprocTransport t(hub, 0, quick_options());
    Forger f1{hub, 1, 0, session_hash(topo.hash(), 0)};
    f1.hello();
    FrameHeader h;
    h.sender = 2;
    h.payload_length = 0;
    h.session = f1.session;
    const auto hb = encode_header(h);
    hub->post_raw(0, 1, {hb.begin(), hb.end()}, {});  // on rank 1's link, says rank 2
    CHECK(error_of([&] {
            t.exchange(0, mine);
          }).find("frame on the link of peer 1 (tcp://127.0.0.1:29501) claims sender 2") !=
          std::string::npos);
  }
  SUBCASE("a stranger") {
    auto l = lone();
    l.hub->post_raw(0, -1, garbage, {});
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("not a peer") != std::string::npos);
  }
  SUBCASE("payload over the limit") {
    auto o = quick_options();
    o.max_payload_bytes = 100;
    auto l = lone(o);
    l.peer.hello();
    l.peer.data(0, pattern(1, 0, 101));
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("carries 101 bytes, the limit is 100") !=
          std::string::npos);
  }
  SUBCASE("frame of another session") {
    auto l = lone();
    l.peer.hello();
    l.peer.post(FrameKind::exchange, 0, 0, pattern(1, 0, 4), l.peer.session ^ 1);
    CHECK(error_of([&] { l.t->exchange(0, mine); }).find("belongs to session") !=
          std::string::npos);
  }
}

TEST_CASE("inproc: ring_step size mismatch names the sender") {
  auto l = lone();
  l.peer.hello();
  l.peer.post(FrameKind::ring, 0, 0, pattern(1, 0, 12), l.peer.session);
  std::vector<std::byte> recv(8);
  const auto send = pattern(0, 0, 8);
  CHECK(error_of([&] {
          l.t->ring_step(0, 0, send, recv);
        }).find("peer 1 (tcp://127.0.0.1:29501) sent 12 bytes, expected 8") != std::string::npos);
}

TEST_CASE("link emulator: token bucket and latency, exact times") {
  LinkEmulation cfg;
  cfg.all.bandwidth_bytes_per_s = 1e6;  // 1 byte per microsecond
  cfg.all.latency = std::chrono::milliseconds(3);
  cfg.per_peer[2].latency = std::chrono::milliseconds(0);
  cfg.per_peer[2].bandwidth_bytes_per_s = 0;
  LinkEmulator em(cfg, 3);
  const std::uint64_t t0 = 1'000'000'000;
  // 1000 bytes: 1 ms on the wire, then 3 ms of latency.
  CHECK(em.ready_at(1, 1000, t0, t0) == t0 + 1'000'000 + 3'000'000);
  // Sent at the same instant: queues behind the first.
  CHECK(em.ready_at(1, 1000, t0, t0) == t0 + 2'000'000 + 3'000'000);
  // Much later: the link is idle again (no burst allowance: depth 0).
  CHECK(em.ready_at(1, 500, t0 + 10'000'000, t0 + 10'000'000) == t0 + 10'500'000 + 3'000'000);
  // Peer 2's link is not emulated.
  CHECK(em.ready_at(2, 1'000'000, t0, t0 + 5) == t0);
  // A send time from the future is not trusted: our clock is used.
  CHECK(em.ready_at(0, 0, t0 + 99, t0) == t0 + 3'000'000);
}

TEST_CASE("frame header round-trips and names its faults") {
  FrameHeader h;
  h.kind = FrameKind::ring;
  h.sender = 3;
  h.receiver = 4;
  h.round = 0x0102030405060708ull;
  h.step = 9;
  h.payload_length = 12345;
  h.session = 0xdeadbeefcafef00dull;
  h.sent_at_ns = 42;
  h.stop_in = 7;
  const auto b = encode_header(h);
  CHECK(static_cast<unsigned char>(b[0]) == 'G');
  CHECK(static_cast<unsigned char>(b[3]) == 'F');
  const auto p = decode_header(b);
  REQUIRE(p.header);
  CHECK(p.header->kind == FrameKind::ring);
  CHECK(p.header->sender == 3);
  CHECK(p.header->receiver == 4);
  CHECK(p.header->round == h.round);
  CHECK(p.header->step == 9);
  CHECK(p.header->payload_length == 12345);
  CHECK(p.header->session == h.session);
  CHECK(p.header->sent_at_ns == 42);
  CHECK(p.header->stop_in == 7);
  auto bad = b;
  bad[4] = std::byte{2};
  CHECK(decode_header(bad).error.find("version 2") != std::string::npos);
  const Hello hello{1, 2, 3, 4, 5, "ipc:///tmp/x"};
  const auto hb = encode_hello(hello);
  CHECK(hb.size() == 32 + 12);
  const auto back = decode_hello(hb);
  CHECK(back.window == 5);
  CHECK(back.endpoint == "ipc:///tmp/x");
  CHECK(back.rank == 4);
  CHECK_THROWS_AS(decode_hello(std::span(hb).first(30)), std::invalid_argument);
}

}  // namespace gossip::net::test
