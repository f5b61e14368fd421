// In-process transport: the shared transport cases, plus the round rules checked with forged
// frames posted straight into a peer's mailbox.

#include <doctest/doctest.h>

#include <cmath>
#include <set>

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

// One real transport of rank `rank`; every other rank forged by the test (Forger).
struct Bench {
  std::shared_ptr<InprocHub> hub;
  std::unique_ptr<InprocTransport> t;
  int rank = 0;
  std::uint64_t session = 0;
  std::uint32_t window = 0;

  Forger as(int from) const { return {hub, from, rank, session}; }
  void hellos() const {
    for (int j : t->links()) as(j).hello(0, window);
  }
  // Each neighbour's frame of `round` (and its credit when paced), except those of `skip` (the
  // test posted them); the exchange must hand over exactly these payloads.
  void round(std::uint64_t r, const std::vector<int>& skip = {}) const {
    const auto nb = t->neighbors();
    for (int j : nb) {
      if (window > 0) as(j).post(FrameKind::credit, r, 0, {}, session);
      if (std::find(skip.begin(), skip.end(), j) == skip.end()) as(j).data(r, pattern(j, r, 16));
    }
    const auto& got = t->exchange(r, pattern(rank, r, 8));
    REQUIRE(got.size() == nb.size());
    for (std::size_t k = 0; k < nb.size(); ++k) CHECK(same(got[k], pattern(nb[k], r, 16)));
  }
};

Bench bench(const std::string& spec = "ring:4", int rank = 0,
            TransportOptions o = quick_options()) {
  auto topo = make_topo(spec, "tcp://127.0.0.1:29500");
  auto hub = std::make_shared<InprocHub>(topo);
  auto t = std::make_unique<InprocTransport>(hub, rank, o);
  return {hub, std::move(t), rank, session_hash(topo.hash(), o.run_hash),
          static_cast<std::uint32_t>(o.receive_window)};
}

// One bad frame (or a few frames of which one is bad), then a good round: the round delivers the
// good payloads, and exactly one drop is counted, under `why` and the connection it came on.
struct DropCase {
  const char* name;
  DropReason why;
  int source;  // rank of the connection; -1: a stranger ("in-process sender -1")
  std::function<void(Bench&)> forge;
  std::uint64_t round = 0;
  std::vector<int> skip = {};  // neighbours whose frame of `round` the forge posted
  bool own_hellos = false;     // the forge posts the hellos itself
  const char* spec = "ring:4";
  int rank = 0;
  int window = 0;
  std::uint64_t max_payload = 0;
  std::vector<int> next_skip = {};  // neighbours whose frame of round + 1 the forge posted
};

void check_drop(const DropCase& c) {
  const std::string name = c.name;
  CAPTURE(name);
  auto o = quick_options();
  o.receive_window = c.window;
  o.max_payload_bytes = c.max_payload;
  Bench b = bench(c.spec, c.rank, o);
  if (!c.own_hellos) b.hellos();
  c.forge(b);
  b.round(c.round, c.skip);
  const DropCounters& d = b.t->drops();
  CHECK(d.all.total == 1);
  CHECK(d.all[c.why] == 1);
  if (c.source >= 0) {
    CHECK(d.by_peer.at(static_cast<std::size_t>(c.source))[c.why] == 1);
    CHECK(d.by_stranger.empty());
  } else {
    REQUIRE(d.by_stranger.contains("in-process sender -1"));
    CHECK(d.by_stranger.find("in-process sender -1")->second[c.why] == 1);
  }
  // And the run goes on.
  b.round(c.round + 1, c.next_skip);
  CHECK(b.t->drops().all.total == 1);
}

}  // namespace

TEST_CASE("inproc: every kind of bad frame is dropped and counted once, and the run goes on") {
  const auto body = pattern(1, 0, 16);
  const std::uint64_t big = 1ull << 60;
  const std::vector<DropCase> cases = {
      {"a stranger", DropReason::not_a_peer, -1,
       [&](Bench& b) {
         const auto hb = b.as(1).header(FrameKind::exchange, 0, 0, body.size(), b.session);
         b.hub->post_raw(0, -1, {hb.begin(), hb.end()}, body);
       }},
      {"a truncated header", DropReason::header_size, 1,
       [&](Bench& b) { b.hub->post_raw(0, 1, std::vector<std::byte>(10), {}); }},
      {"a garbage header", DropReason::bad_magic, 1,
       [&](Bench& b) {
         auto garbage = pattern(9, 9, kFrameHeaderSize);
         garbage[0] = std::byte{0};  // never "G"
         b.hub->post_raw(0, 1, garbage, body);
       }},
      {"another frame version", DropReason::bad_version, 1,
       [&](Bench& b) {
         auto hb = b.as(1).header(FrameKind::exchange, 0, 0, body.size(), b.session);
         hb[4] = std::byte{kFrameVersion + 1};
         b.as(1).post_header(hb, body);
       }},
      {"one flipped bit", DropReason::bad_checksum, 1,
       [&](Bench& b) {
         auto hb = b.as(1).header(FrameKind::exchange, 0, 0, body.size(), b.session);
         hb[17] ^= std::byte{1};
         b.as(1).post_header(hb, body);
       }},
      {"an unknown kind", DropReason::bad_kind, 1,
       [&](Bench& b) {
         auto hb = b.as(1).header(FrameKind::exchange, 0, 0, body.size(), b.session);
         hb[6] = std::byte{9};
         reseal(hb);
         b.as(1).post_header(hb, body);
       }},
      {"a control frame while a peer loss stops the run", DropReason::bad_control, 1,
       [&](Bench& b) { b.as(1).post(FrameKind::control, 0, 0, pattern(1, 0, 16), b.session); }},
      {"length in the header is not what arrived", DropReason::bad_length, 1,
       [&](Bench& b) {
         b.as(1).post_header(b.as(1).header(FrameKind::exchange, 0, 0, 1000, b.session), body);
       }},
      {"payload over the limit",
       DropReason::too_long,
       1,
       [&](Bench& b) { b.as(1).data(0, pattern(1, 0, 101)); },
       0,
       {},
       false,
       "ring:4",
       0,
       0,
       100},
      {"another session", DropReason::wrong_session, 1,
       [&](Bench& b) { b.as(1).post(FrameKind::exchange, 0, 0, body, b.session ^ 1); }},
      {"a sender that is not the connection's peer", DropReason::wrong_sender, 1,
       [&](Bench& b) {
         b.as(1).post_header(b.as(3).header(FrameKind::exchange, 0, 0, body.size(), b.session),
                             body);
       }},
      {"a peer we have no link with", DropReason::not_linked, 2,
       [&](Bench& b) { b.as(2).data(0, body); }},
      {"addressed to another rank", DropReason::wrong_receiver, 1,
       [&](Bench& b) {
         const Forger to2{b.hub, 1, 2, b.session};
         b.as(1).post_header(to2.header(FrameKind::exchange, 0, 0, body.size(), b.session), body);
       }},
      {"a hello record that does not parse",
       DropReason::bad_hello,
       1,
       [&](Bench& b) {
         b.as(1).post(FrameKind::hello, 0, 0, pattern(1, 0, 10), 0);
         b.hellos();
       },
       0,
       {},
       true},
      {"a hello on rank 1's link that says rank 3",
       DropReason::bad_hello,
       1,
       [&](Bench& b) {
         b.as(1).post(FrameKind::hello, 0, 0, b.as(3).hello_body(), 0);
         b.hellos();
       },
       0,
       {},
       true},
      {"a second hello", DropReason::duplicate, 1, [&](Bench& b) { b.as(1).hello(); }},
      {"data before the hello",
       DropReason::before_hello,
       1,
       [&](Bench& b) {
         b.as(1).data(0, body);
         b.hellos();
       },
       0,
       {},
       true},
      {"a stale round", DropReason::stale, 1,
       [&](Bench& b) {
         b.round(0);
         b.round(1);
         b.as(1).data(0, body);
       },
       2},
      {"a round before our first call, arriving during it", DropReason::stale, 1,
       [&](Bench& b) { b.as(1).data(3, body); }, 5},
      {"a round before our first call, kept during the handshake",
       DropReason::stale,
       1,
       [&](Bench& b) {
         b.as(1).hello();
         b.as(1).data(3, body);
         b.as(3).hello();
       },
       5,
       {},
       true},
      {"a duplicate of a future round",
       DropReason::duplicate,
       1,
       [&](Bench& b) {
         b.as(1).data(1, pattern(1, 1, 16));
         b.as(1).data(1, pattern(1, 1, 16));
       },
       0,
       {},
       false,
       "ring:4",
       0,
       0,
       0,
       {1}},
      {"an exchange frame two rounds ahead", DropReason::too_far_ahead, 1,
       [&](Bench& b) { b.as(1).data(2, body); }},
      {"an exchange frame of round 2^60, kept during the handshake",
       DropReason::too_far_ahead,
       1,
       [&](Bench& b) {
         b.as(1).hello();
         b.as(1).data(big, body);
         b.as(3).hello();
       },
       3,
       {},
       true},
      {"more early frames than a neighbour can send",
       DropReason::too_far_ahead,
       1,
       [&](Bench& b) {
         b.as(1).hello();
         for (std::uint64_t r : {5, 6, 7}) b.as(1).data(r, pattern(1, r, 16));
         b.as(3).hello();
         // Dropped as it arrives, before any round is known: what a flood can make us keep
         // before the first call is bounded.
         b.t->handshake();
         CHECK(b.t->drops().all[DropReason::too_far_ahead] == 1);
       },
       5,
       {1},
       true,
       "ring:4",
       0,
       0,
       0,
       {1}},
      {"a ring frame far ahead", DropReason::too_far_ahead, 3,
       [&](Bench& b) { b.as(3).post(FrameKind::ring, 1000, 0, body, b.session); }},
      {"a credit far ahead",
       DropReason::too_far_ahead,
       1,
       [&](Bench& b) { b.as(1).post(FrameKind::credit, 1ull << 40, 0, {}, b.session); },
       0,
       {},
       false,
       "ring:4",
       0,
       1},
      {"a duplicate credit",
       DropReason::duplicate,
       1,
       [&](Bench& b) { b.as(1).post(FrameKind::credit, 0, 0, {}, b.session); },
       0,
       {},
       false,
       "ring:4",
       0,
       1},
      {"an exchange frame from a link that is not a neighbour",
       DropReason::not_neighbor,
       1,
       [&](Bench& b) { b.as(1).data(0, body); },
       0,
       {},
       false,
       "star:4",
       2},
      {"a ring frame from rank + 1", DropReason::wrong_ring_sender, 1,
       [&](Bench& b) { b.as(1).post(FrameKind::ring, 0, 0, body, b.session); }},
      {"a credit while exchanges are not paced", DropReason::bad_credit, 1,
       [&](Bench& b) { b.as(1).post(FrameKind::credit, 0, 0, {}, b.session); }},
      {"round + stop_in past 2^64", DropReason::bad_stop, 1,
       [&](Bench& b) { b.as(1).post(FrameKind::exchange, UINT64_MAX - 1, 0, body, b.session, 4); }},
  };
  for (const auto& c : cases) check_drop(c);
  // Every reason but bad message parts and the CURVE ones (ZeroMQ only: zmq and curve tests) has
  // a case above.
  std::vector<int> covered(kDropReasonCount);
  for (const auto& c : cases) covered[static_cast<std::size_t>(c.why)] = 1;
  for (auto zmq_only : {DropReason::bad_parts, DropReason::handshake_failed})
    covered[static_cast<std::size_t>(zmq_only)] = 1;
  CHECK(std::count(covered.begin(), covered.end(), 1) == static_cast<long>(kDropReasonCount));
}

TEST_CASE("inproc: a stop round is adopted; one that would wrap is dropped, not adopted") {
  const auto body = pattern(1, 0, 16);
  Bench b = bench();
  b.hellos();
  b.as(1).post(FrameKind::exchange, UINT64_MAX - 1, 0, body, b.session, 4);  // + 4 wraps to 2
  b.as(3).post(FrameKind::exchange, 0, 0, pattern(3, 0, 16), b.session, 4);
  b.round(0, {3});
  REQUIRE(b.t->stop_round());
  CHECK(*b.t->stop_round() == 4);
  CHECK(b.t->drops().all[DropReason::bad_stop] == 1);
}

TEST_CASE("inproc: a duplicate that arrives after its round's frame was delivered is dropped") {
  Bench b = bench();
  b.hellos();
  // Rank 1's frame is delivered first (neighbours() order); its copy arrives while round 0 still
  // waits for rank 3. Before, that copy was kept in pending_ for ever and counted nowhere.
  b.as(1).data(0, pattern(1, 0, 16));
  b.as(1).data(0, pattern(1, 0, 16));
  b.as(3).data(0, pattern(3, 0, 16));
  std::vector<int> order;
  b.t->exchange_each(0, pattern(0, 0, 8), [&](std::size_t k, std::span<const std::byte> got) {
    CHECK(same(got, pattern(b.t->neighbors()[k], 0, 16)));
    order.push_back(static_cast<int>(k));
  });
  CHECK(order == std::vector<int>{0, 1});
  CHECK(b.t->drops().all[DropReason::duplicate] == 1);
  CHECK(b.t->drops().by_peer[1][DropReason::duplicate] == 1);
  // After the call, too.
  b.as(3).data(0, pattern(3, 0, 16));
  b.round(1);
  CHECK(b.t->drops().all[DropReason::duplicate] == 2);
  CHECK(b.t->drops().by_peer[3][DropReason::duplicate] == 1);
  CHECK(b.t->drops().all.total == 2);
}

TEST_CASE("inproc: a neighbour that sends only bad frames times out naming it and its drops") {
  auto o = quick_options();
  o.timeout = std::chrono::milliseconds(300);
  Bench b = bench("ring:2", 0, o);
  b.hellos();
  for (int i = 0; i < 35; ++i) {
    auto hb = b.as(1).header(FrameKind::exchange, 17, 0, 16, b.session);
    hb[20] ^= std::byte{1};
    b.as(1).post_header(hb, pattern(1, 17, 16));
  }
  const auto e = error_of([&] { b.t->exchange(17, pattern(0, 17, 8)); });
  CAPTURE(e);
  CHECK(e.find("rank 0: round 17: no message from peer 1 (tcp://127.0.0.1:29501) within 300 ms") !=
        std::string::npos);
  CHECK(e.find("; 35 of its frames were dropped: 35 bad checksum (the first: bad frame from peer "
               "1 (tcp://127.0.0.1:29501): header checksum mismatch)") != std::string::npos);
  CHECK(b.t->drops().by_peer[1][DropReason::bad_checksum] == 35);
}

TEST_CASE("inproc: strangers and garbage during the handshake are dropped, not fatal") {
  Bench b = bench("ring:3");
  const auto hello = b.as(1).header(FrameKind::hello, 0, 0, b.as(1).hello_body().size(), 0);
  b.hub->post_raw(0, -1, {hello.begin(), hello.end()}, b.as(1).hello_body());  // a stranger
  b.hub->post_raw(0, 7, pattern(7, 7, 3), {});  // an in-process sender that is no rank at all
  b.hub->post_raw(0, 1, pattern(1, 1, kFrameHeaderSize), {});     // garbage on rank 1's link
  b.as(2).post(FrameKind::hello, 0, 0, b.as(1).hello_body(), 0);  // says it is rank 1
  b.hellos();
  b.t->handshake();
  CHECK(b.t->handshake_done());
  const auto& d = b.t->drops();
  CHECK(d.all.total == 4);
  CHECK(d.by_stranger.at("in-process sender -1")[DropReason::not_a_peer] == 1);
  CHECK(d.by_stranger.at("in-process sender -1").total == 1);
  CHECK(d.by_stranger.at("in-process sender 7")[DropReason::header_size] == 1);
  CHECK(d.by_peer[1].total == 1);
  CHECK(d.by_peer[2][DropReason::bad_hello] == 1);
  b.round(0);
}

TEST_CASE("inproc: drop counters name at most 32 strangers; the rest share one entry") {
  Bench b = bench("ring:2");
  b.hellos();
  for (int s = 1; s <= 40; ++s) b.hub->post_raw(0, -s, pattern(9, 9, 3), {});
  b.round(0);
  const auto& d = b.t->drops();
  CHECK(d.all[DropReason::header_size] == 40);
  CHECK(d.by_stranger.size() == DropCounters::kMaxStrangers + 1);
  CHECK(d.by_stranger.at(std::string(DropCounters::kOtherStrangers)).total == 8);
  CHECK(d.by_stranger.at("in-process sender -32").total == 1);
}

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

TEST_CASE("inproc: one-peer exponential: one message each way per round, eager and paced") {
  // Powers of two and not; 9 rounds cover three periods of 8 peers (period 3).
  for (const char* spec : {"one-peer-exponential:2", "one-peer-exponential:3",
                           "one-peer-exponential:6", "one-peer-exponential:8"}) {
    for (std::size_t len : {0u, 1000u}) check_exchange(inproc_group, spec, len, 9);
    check_exchange(inproc_group, spec, 1000, 9, 0, true);
    check_exchange(inproc_group, spec, 1000, 9, 1, true);
    check_exchange(inproc_group, spec, 1000, 9, 2, false);
  }
  check_exchange(inproc_group, "one-peer-exponential:100", 64, 15);
}

TEST_CASE("inproc: one-peer exponential: peers a period ahead of a slow one lose nothing") {
  // Rank 0 sleeps before each round, so the others run ahead of it as far as the schedule lets
  // them (up to its period, 4 rounds for 16 peers): their early frames must all be kept.
  Group g = inproc_group("one-peer-exponential:16");
  const int n = g.topo.size(), rounds = 12;
  std::vector<std::string> bad(static_cast<std::size_t>(n));
  std::vector<std::uint64_t> dropped(static_cast<std::size_t>(n));
  auto errors = run_ranks(n, [&](int r) {
    auto t = g.make(r, quick_options());
    for (int round = 0; round < rounds; ++round) {
      if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(15));
      const auto tr = static_cast<std::uint64_t>(round);
      const auto& got = t->exchange(tr, pattern(r, tr, 32));
      const int from = t->receive_from(tr)[0];
      if (got.size() != 1 || !same(got[0], pattern(from, tr, 32)))
        bad[static_cast<std::size_t>(r)] = fmt::format("round {}: wrong message", round);
    }
    dropped[static_cast<std::size_t>(r)] = t->drops().all.total;
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(errors[static_cast<std::size_t>(r)] == "");
    CHECK(bad[static_cast<std::size_t>(r)] == "");
    CHECK(dropped[static_cast<std::size_t>(r)] == 0);
  }
}

TEST_CASE(
    "inproc: one-peer exponential: a schedule peer's frame of another round is kept, one "
    "for a round it does not send in dropped") {
  // Rank 0 of 4 peers (period 2): round t takes from 3 (t even) or 2 (t odd), sends to 1 or 2.
  auto o = quick_options();
  auto topo = make_topo("one-peer-exponential:4", "tcp://127.0.0.1:29500");
  auto hub = std::make_shared<InprocHub>(topo);
  InprocTransport t(hub, 0, o);
  const std::uint64_t session = session_hash(topo.hash(), 0);
  const auto as = [&](int from) { return Forger{hub, from, 0, session}; };
  for (int j : t.links()) as(j).hello();
  REQUIRE(std::vector<int>(t.links().begin(), t.links().end()) == std::vector<int>{1, 2, 3});
  as(2).data(1, pattern(2, 1, 16));  // round 1's sender, one round early: kept
  as(3).data(2, pattern(3, 2, 16));  // round 2's sender, a whole period early: kept
  as(1).data(0, pattern(1, 0, 16));  // a link, but 1 never sends to 0: dropped
  as(2).data(0, pattern(2, 0, 16));  // 2 sends to 0 in odd rounds only: dropped
  as(2).data(3, pattern(2, 3, 16));  // 3 rounds past round 0, more than a period: dropped
  as(3).data(0, pattern(3, 0, 16));
  const auto mine = pattern(0, 0, 8);
  CHECK(same(t.exchange(0, mine).at(0), pattern(3, 0, 16)));
  CHECK(t.drops().all[DropReason::not_neighbor] == 2);
  CHECK(t.drops().by_peer.at(1)[DropReason::not_neighbor] == 1);
  CHECK(t.drops().by_peer.at(2)[DropReason::not_neighbor] == 1);
  CHECK(t.drops().all[DropReason::too_far_ahead] == 1);
  CHECK(same(t.exchange(1, mine).at(0), pattern(2, 1, 16)));
  CHECK(same(t.exchange(2, mine).at(0), pattern(3, 2, 16)));
  as(2).data(3, pattern(2, 3, 16));
  CHECK(same(t.exchange(3, mine).at(0), pattern(2, 3, 16)));
  CHECK(t.drops().all.total == 3);
  // What rank 0 sent: round t to rank 0 + 2^(t mod 2), nothing else.
  CHECK(t.counters().messages_sent == 3 + 4);
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
  auto body = encode_hello({topo.hash(), 0, 2, 1, 1, topo.peers[1].endpoint, 0, 7});
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

TEST_CASE("inproc: a peer of another launch of the same run is refused by name") {
  check_nonce_mismatch(inproc_group);
}

TEST_CASE("inproc: a silent neighbour times out naming peer, endpoint and round") {
  check_silent_neighbor(inproc_group);
}

TEST_CASE("inproc: link emulation adds latency and limits bandwidth") {
  check_latency(inproc_group);
  check_bandwidth(inproc_group);
}

TEST_CASE("inproc: a peer's links share its NIC: k frames through an uplink take k * b * 8 / B") {
  check_nic_shared_by_links(inproc_group);
}

TEST_CASE("inproc, virtual time: the NIC model's times exactly, and nobody waits for them") {
  // The star of check_nic_shared_by_links, on virtual clocks that only the network moves.
  Group g = inproc_group(fmt::format("star:{}", kNicLeaves + 1));
  const int n = kNicLeaves + 1;
  std::vector<std::uint64_t> clock(static_cast<std::size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  auto errors = run_ranks(n, [&](int r) {
    auto o = nic_options(r);
    o.virtual_time = true;
    o.virtual_cpu = false;
    auto t = g.make(r, o);
    REQUIRE(t->virtual_clock() != nullptr);
    t->exchange(0, pattern(r, 0, kNicFrameBytes - kFrameHeaderSize));
    clock[static_cast<std::size_t>(r)] = t->virtual_clock()->now_ns();
  });
  for (const auto& e : errors) CHECK(e == "");
  // 0.3 s of modelled network: nobody slept through it.
  CHECK(seconds_since(t0) < 0.25);
  const std::uint64_t frame_ns = 100'000'000, latency_ns = 10'000'000;
  for (int r = 0; r <= kNicLeaves; ++r)
    CHECK(clock[static_cast<std::size_t>(r)] == kNicLeaves * frame_ns + latency_ns);
}

TEST_CASE("inproc, virtual time: a ring step is a message; paused clocks send untimed frames") {
  Group g = inproc_group("ring:3");
  std::vector<std::uint64_t> after_step(3), after_pause(3);
  auto errors = run_ranks(3, [&](int r) {
    auto o = quick_options();
    o.link.all.latency = std::chrono::milliseconds(5);
    o.link.uplink_bytes_per_s = 1e6;
    o.virtual_time = true;
    o.virtual_cpu = false;
    auto t = g.make(r, o);
    VirtualClock& clock = *t->virtual_clock();
    clock.advance(1'000'000 * static_cast<std::uint64_t>(r));  // rank r is r ms late
    std::vector<std::byte> recv(936);
    t->ring_step(0, 0, pattern(r, 0, 936), recv);  // 1000 bytes framed: 1 ms through the uplink
    after_step[static_cast<std::size_t>(r)] = clock.now_ns();
    clock.pause();
    t->ring_step(0, 1, pattern(r, 0, 936), recv);
    clock.resume();
    after_pause[static_cast<std::size_t>(r)] = clock.now_ns();
  });
  for (const auto& e : errors) CHECK(e == "");
  // Rank r (r ms on its clock) waits for rank r-1's frame: sent at r-1 ms, 1 ms through the
  // uplink, 5 ms of latency: r + 5 ms. Rank 0 waits for rank 2's: 2 + 1 + 5 ms.
  CHECK(after_step[0] == 8'000'000);
  CHECK(after_step[1] == 6'000'000);
  CHECK(after_step[2] == 7'000'000);
  // The step taken while paused moved no clock.
  CHECK(after_pause == after_step);
}

TEST_CASE("inproc: direct messages: each peer its own payload, in ring order, lanes lagged") {
  // ring:5 links only neighbours; all_links links every pair. Lane 0 is collected 2 rounds after
  // its post, lane 1 in its round: what rank j posted for rank r in (round, lane) arrives, in the
  // order r + 1, r + 2, …, whatever the thread timing.
  Group g = inproc_group("ring:5");
  const int n = 5;
  auto payload = [](int from, int to, std::uint64_t round, std::uint32_t lane) {
    return pattern(from * 10 + to, round * 2 + lane, 16 + static_cast<std::size_t>(to + from));
  };
  std::vector<std::string> bad(n);
  auto errors = run_ranks(n, [&](int r) {
    auto o = quick_options();
    o.all_links = true;
    o.direct_lag = 2;
    auto t = g.make(r, o);
    CHECK(t->links().size() == static_cast<std::size_t>(n - 1));
    auto check = [&](std::uint64_t round, std::uint32_t lane) {
      int expect = (r + 1) % n;
      t->collect(round, lane, [&](std::size_t j, std::span<const std::byte> bytes) {
        if (static_cast<int>(j) != expect || !same(bytes, payload(expect, r, round, lane)))
          bad[static_cast<std::size_t>(r)] = fmt::format(
              "round {} lane {}: message of rank {}, expected {}", round, lane, j, expect);
        expect = (expect + 1) % n;
      });
      if (expect != r) bad[static_cast<std::size_t>(r)] = "not every peer's message";
    };
    for (std::uint64_t round = 0; round < 6; ++round) {
      std::vector<std::vector<std::byte>> keep;
      for (std::uint32_t lane : {0u, 1u}) {
        t->post(round, lane, [&](int j) -> std::span<const std::byte> {
          keep.push_back(payload(r, j, round, lane));
          return keep.back();
        });
      }
      if (round >= 2) check(round - 2, 0);
      check(round, 1);
    }
    CHECK_THROWS_WITH_AS(t->collect(5, 1, [](std::size_t, auto) {}),
                         doctest::Contains("after round 5: rounds must grow"), TransportError);
  });
  for (const auto& e : errors) CHECK(e == "");
  for (const auto& b : bad) CHECK(b == "");
  // Without all_links a peer has no link to most ranks: post says so.
  Group h = inproc_group("ring:5");
  auto t = h.make(0, quick_options());
  CHECK_THROWS_WITH_AS(t->post(0, 0, [](int) { return std::span<const std::byte>(); }),
                       doctest::Contains("need a link to every peer (TransportOptions::all_links)"),
                       TransportError);
}

TEST_CASE("inproc: direct frames: kept for their collect; late, duplicate and far ones dropped") {
  // Rank 0 of ring:4 with all_links; ranks 1..3 forged. direct_lag 0: a sender is at most
  // 2(2 + 0) = 4 rounds past our latest call.
  auto o = quick_options();
  o.all_links = true;
  Bench b = bench("ring:4", 0, o);
  b.hellos();
  REQUIRE(b.t->links().size() == 3);
  const auto body = [](int j, std::uint64_t round) { return pattern(j, round, 12); };
  // Frames of round 1 come before round 0's collect: kept. Rank 2 sends round 0 twice.
  // (The hub's mailbox is read in order: the copy arrives before rank 3's frame of round 0.)
  for (int j = 1; j < 4; ++j) {
    b.as(j).post(FrameKind::direct, 1, 0, body(j, 1), b.session);
    b.as(j).post(FrameKind::direct, 0, 0, body(j, 0), b.session);
    if (j == 2) b.as(j).post(FrameKind::direct, 0, 0, body(j, 0), b.session);
  }
  auto collect = [&](std::uint64_t round) {
    std::vector<int> from;
    b.t->collect(round, 0, [&](std::size_t j, std::span<const std::byte> bytes) {
      CHECK(same(bytes, body(static_cast<int>(j), round)));
      from.push_back(static_cast<int>(j));
    });
    CHECK(from == std::vector<int>{1, 2, 3});
  };
  collect(0);
  CHECK(b.t->drops().all[DropReason::duplicate] == 1);  // the copy, while round 0 was kept
  // After the collect of round 0 a frame of round 0 is stale; one of round 10 is too far ahead.
  b.as(3).post(FrameKind::direct, 0, 0, body(3, 0), b.session);
  b.as(1).post(FrameKind::direct, 10, 0, body(1, 10), b.session);
  b.t->poll_for(std::chrono::milliseconds(50));  // read as they arrive, not kept for a collect
  const DropCounters& d = b.t->drops();
  CHECK(d.by_peer[3][DropReason::stale] == 1);
  collect(1);
  CHECK(d.by_peer[3][DropReason::stale] == 1);
  CHECK(d.by_peer[1][DropReason::too_far_ahead] == 1);
  CHECK(d.all.total == 3);
  // Lane 1 has its own rounds: round 0 there is not stale.
  for (int j = 1; j < 4; ++j) b.as(j).post(FrameKind::direct, 0, 1, body(j, 0), b.session);
  int got = 0;
  b.t->collect(0, 1, [&](std::size_t, std::span<const std::byte>) { ++got; });
  CHECK(got == 3);
}

TEST_CASE(
    "inproc, virtual time: a direct message posted a round before its collect is not waited for") {
  // 50 ms of latency. Round 0's message is collected after 60 ms of modelled compute: it arrived
  // at 50 ms, nobody waits. Round 1's is posted at 60 ms and collected at once: 110 ms.
  Group g = inproc_group("ring:3");
  std::vector<std::uint64_t> after_lagged(3), after_direct(3);
  auto errors = run_ranks(3, [&](int r) {
    auto o = quick_options();
    o.all_links = true;
    o.direct_lag = 1;
    o.link.all.latency = std::chrono::milliseconds(50);
    o.virtual_time = true;
    o.virtual_cpu = false;
    auto t = g.make(r, o);
    VirtualClock& clock = *t->virtual_clock();
    const auto mine = pattern(r, 0, 100);
    t->post(0, 0, [&](int) -> std::span<const std::byte> { return mine; });
    clock.advance(60'000'000);
    t->collect(0, 0, [](std::size_t, auto) {});
    after_lagged[static_cast<std::size_t>(r)] = clock.now_ns();
    t->post(1, 0, [&](int) -> std::span<const std::byte> { return mine; });
    t->collect(1, 0, [](std::size_t, auto) {});
    after_direct[static_cast<std::size_t>(r)] = clock.now_ns();
  });
  for (const auto& e : errors) CHECK(e == "");
  for (int r = 0; r < 3; ++r) {
    CHECK(after_lagged[static_cast<std::size_t>(r)] == 60'000'000);
    CHECK(after_direct[static_cast<std::size_t>(r)] == 110'000'000);
  }
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

TEST_CASE("inproc: a send time of zero or from another host's clock is replaced by ours") {
  // Trusted, an hour ahead would hold the frame for an hour; replaced, it costs the latency.
  auto o = quick_options();
  o.link.all.latency = std::chrono::milliseconds(50);
  auto l = lone(o);
  l.peer.hello();
  const auto payload = pattern(0, 0, 8);
  std::uint64_t round = 0;
  for (const std::uint64_t sent :
       {std::uint64_t{0}, monotonic_ns() + std::uint64_t{3'600'000'000'000}}) {
    CAPTURE(sent);
    FrameHeader h;
    h.kind = FrameKind::exchange;
    h.sender = 1;
    h.receiver = 0;
    h.round = round;
    h.payload_length = 8;
    h.session = l.peer.session;
    h.sent_at_ns = sent;
    l.peer.post_header(encode_header(h), pattern(1, round, 8));
    const auto t0 = std::chrono::steady_clock::now();
    l.t->exchange(round++, payload);
    CHECK(seconds_since(t0) >= 0.049);
    CHECK(seconds_since(t0) < 5);
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

// A message of `bytes` from `from` sent at `sent` (no uplink) through the receiver's model.
std::uint64_t ready_at(LinkEmulator& em, int from, std::uint64_t bytes, std::uint64_t sent) {
  return em.receive(bytes, em.arrive(from, bytes, {sent, sent}));
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
  CHECK(ready_at(em, 1, 1000, t0) == t0 + 1'000'000 + 3'000'000);
  // Sent at the same instant: queues behind the first.
  CHECK(ready_at(em, 1, 1000, t0) == t0 + 2'000'000 + 3'000'000);
  // Much later: the link is idle again (no burst allowance: depth 0).
  CHECK(ready_at(em, 1, 500, t0 + 10'000'000) == t0 + 10'500'000 + 3'000'000);
  // Peer 2's link is not emulated.
  CHECK(ready_at(em, 2, 1'000'000, t0) == t0);
}

TEST_CASE("link emulator: messages of several MiB pay bytes * 8 / bandwidth too") {
  // The largest message the other tests emulate is 1 MB: a limit skipped above 1 MiB survived.
  LinkEmulation cfg;
  cfg.all.bandwidth_bytes_per_s = 100e6 / 8;  // 100 Mbit/s
  cfg.all.latency = std::chrono::microseconds(200);
  cfg.per_peer[0].bandwidth_bytes_per_s = 100e6 / 8;
  cfg.per_peer[0].burst_bytes = 1 << 20;  // the first MiB is free, the rest pays
  LinkEmulator em(cfg, 2);
  const auto wire_ns = [](std::uint64_t bytes) { return static_cast<double>(bytes) * 8 / 0.1; };
  std::uint64_t t = 5'000'000'000;
  for (std::uint64_t bytes : {(1ULL << 20) + 1, 4ULL << 20, 64ULL << 20, 1ULL << 32}) {
    CAPTURE(bytes);
    // Sent once the link is idle again (depth 0: nothing saved up): the wire time, then latency.
    const std::uint64_t ready = ready_at(em, 1, bytes, t);
    CHECK(std::abs(static_cast<double>(ready - t) - (wire_ns(bytes) + 200'000)) <= 1.0);
    t = ready;
  }
  // 4 MiB at 100 Mbit/s: 335.54432 ms.
  CHECK(static_cast<double>(ready_at(em, 1, 4 << 20, t) - t) ==
        doctest::Approx(335'544'320 + 200'000).epsilon(1e-9));
  // With a 1 MiB burst, 4 MiB pays for 3 MiB.
  const std::uint64_t ready = ready_at(em, 0, 4 << 20, t);
  CHECK(std::abs(static_cast<double>(ready - t) - wire_ns(3 << 20)) <= 1.0);
}

TEST_CASE("network model: k messages of b bytes through an uplink of B bit/s: k*b*8/B + latency") {
  LinkEmulation cfg;
  cfg.all.latency = std::chrono::milliseconds(20);
  cfg.uplink_bytes_per_s = 5e6 / 8;  // 5 Mbit/s
  LinkEmulator sender(cfg, 2), receiver(cfg, 2);
  const std::uint64_t t0 = 7'000'000'000, b = 4321;
  const double per_message_ns = static_cast<double>(b) * 8 / 5e6 * 1e9;
  for (int k = 1; k <= 10; ++k) {
    CAPTURE(k);
    // Sends at t0, one after the other through the sender's uplink.
    const Passage up = sender.uplink().pass({t0, t0}, b);
    const std::uint64_t ready = receiver.receive(b, receiver.arrive(0, b, up));
    // Exact but for rounding each message up to a whole nanosecond.
    const double expected = k * per_message_ns + 20e6;
    CHECK(static_cast<double>(ready - t0) >= expected);
    CHECK(static_cast<double>(ready - t0) <= expected + k);
  }
  // k messages of one send (an exchange with k neighbours) share the uplink: all end together.
  LinkEmulator batch(cfg, 2);
  const Passage up = batch.uplink().pass({t0, t0}, 10 * b);
  CHECK(up.first == t0);
  CHECK(static_cast<double>(up.last - t0) == doctest::Approx(10 * per_message_ns).epsilon(1e-12));
}

TEST_CASE("network model: uplink and downlink in series cost the slower of the two, not the sum") {
  LinkEmulation fast, slow;
  fast.all.latency = slow.all.latency = std::chrono::milliseconds(1);
  fast.uplink_bytes_per_s = fast.downlink_bytes_per_s = 1e6;  // 1 byte per microsecond
  slow.downlink_bytes_per_s = 0.5e6;
  const std::uint64_t t0 = 1'000'000'000;
  {
    LinkEmulator a(fast, 2), b(fast, 2);
    const Passage up = a.uplink().pass({t0, t0}, 1000);
    CHECK(up.first == t0);
    CHECK(up.last == t0 + 1'000'000);
    // Cut-through: the downlink receives while the uplink sends; 1 ms + latency, not 2 ms.
    CHECK(b.receive(1000, b.arrive(0, 1000, up)) == t0 + 1'000'000 + 1'000'000);
  }
  {
    LinkEmulator a(fast, 2), b(slow, 2);
    const Passage up = a.uplink().pass({t0, t0}, 1000);
    // The downlink is the bottleneck: 2 ms from the first byte's arrival.
    CHECK(b.receive(1000, b.arrive(0, 1000, up)) == t0 + 1'000'000 + 2'000'000);
  }
}

TEST_CASE("network model: a downlink serves its peers' messages one after the other") {
  {
    // Two messages that trickle in at half the downlink's rate each (two senders' uplinks, each
    // shared by two sends) fill it together: both done when their last bytes arrive.
    LinkEmulation cfg;
    cfg.downlink_bytes_per_s = 1e6;
    LinkEmulator em(cfg, 3);
    const std::uint64_t t0 = 1'000'000'000;
    CHECK(em.receive(1000, {t0, t0 + 2'000'000}) == t0 + 2'000'000);
    CHECK(em.receive(1000, {t0, t0 + 2'000'000}) == t0 + 2'000'000);
    // A third one at once has to wait for the downlink's work: 1 ms more.
    CHECK(em.receive(1000, {t0, t0 + 2'000'000}) == t0 + 3'000'000);
  }
  LinkEmulation cfg;
  cfg.all.latency = std::chrono::milliseconds(1);
  cfg.downlink_bytes_per_s = 1e6;
  LinkEmulator em(cfg, 4);
  const std::uint64_t t0 = 1'000'000'000;
  // Three neighbours (no uplink limit) send 1000 bytes each at t0: 1, 2 and 3 ms after latency.
  for (int from = 1; from <= 3; ++from)
    CHECK(ready_at(em, from, 1000, t0) ==
          t0 + 1'000'000 + static_cast<std::uint64_t>(from) * 1'000'000);
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
  bad[4] = std::byte{kFrameVersion + 1};
  CHECK(decode_header(bad).error.find(fmt::format("version {}", kFrameVersion + 1)) !=
        std::string::npos);
  const Hello hello{1, 2, 3, 4, 5, "ipc:///tmp/x", 0x0102030405060708ull, 0x1112131415161718ull};
  const auto hb = encode_hello(hello);
  CHECK(hb.size() == 48 + 12);
  const auto back = decode_hello(hb);
  CHECK(back.window == 5);
  CHECK(back.nonce == 0x0102030405060708ull);
  CHECK(back.instance == 0x1112131415161718ull);
  CHECK(back.endpoint == "ipc:///tmp/x");
  CHECK(back.rank == 4);
  CHECK_THROWS_AS(decode_hello(std::span(hb).first(30)), std::invalid_argument);
}

}  // namespace gossip::net::test

namespace gossip::net::test {
namespace {

// A backend that keeps every payload it is given, as libzmq keeps a zero-copy message, until
// wait_released() (delivered) or abort() (torn down); its send to `throw_to` fails, as a libzmq
// error does, after the sends before it queued the caller's buffer.
class HoldingBackend final : public FramedTransport {
 public:
  HoldingBackend(const topology::Topology& topo, TransportOptions o, int throw_to)
      : FramedTransport(topo, 0, std::move(o), "holding"), topo_(topo), throw_to_(throw_to) {
    start();
  }
  int held = 0;  // caller buffers the backend may still read
  bool aborted = false;
  bool throwing = false;  // armed after the handshake: only data sends fail

 protected:
  bool try_send(int to, const HeaderBytes&, std::span<const std::byte>) override {
    if (throwing && to == throw_to_) throw TransportError("injected: the backend refused a send");
    ++held;
    return true;
  }
  std::optional<Inbound> wait_inbound(Clock::time_point deadline, std::span<const int>) override {
    // The peers' hellos, then silence.
    for (int from : links()) {
      if (hello_given_.contains(from)) continue;
      hello_given_.insert(from);
      FrameHeader h;
      h.kind = FrameKind::hello;
      h.sender = static_cast<std::uint32_t>(from);
      h.receiver = 0;
      auto bytes = std::make_shared<std::pair<HeaderBytes, std::vector<std::byte>>>();
      bytes->second =
          encode_hello({topo_.hash(), options().run_hash, static_cast<std::uint32_t>(topo_.size()),
                        static_cast<std::uint32_t>(from), 0,
                        topo_.peers[static_cast<std::size_t>(from)].endpoint, 0,
                        static_cast<std::uint64_t>(from) + 1});
      h.payload_length = bytes->second.size();
      bytes->first = encode_header(h);
      Inbound in;
      in.link = from;
      in.header = bytes->first;
      in.payload = bytes->second;
      in.owner = bytes;
      return in;
    }
    std::this_thread::sleep_until(std::min(deadline, Clock::now() + std::chrono::milliseconds(5)));
    return std::nullopt;
  }
  std::vector<int> wait_released(Clock::time_point) override {
    held = 0;
    return {};
  }
  void abort() noexcept override {
    aborted = true;
    held = 0;
  }

 private:
  const topology::Topology& topo_;
  int throw_to_;
  std::set<int> hello_given_;
};

}  // namespace

TEST_CASE("an exception mid-round tears the backend down before it leaves the call") {
  // Rank 0 of a complete graph of 3 sends to 1 (the backend keeps our buffer), then the send to
  // 2 throws. Unguarded, the exception left exchange() with the buffer still held: libzmq would
  // read it after the caller freed it.
  const auto topo = make_topo("complete:3", "tcp://127.0.0.1:29500");
  {
    HoldingBackend t(topo, quick_options(), 2);
    t.handshake();
    REQUIRE(t.held == 0);
    t.throwing = true;
    const auto payload = pattern(0, 0, 1 << 17);
    CHECK_THROWS_WITH(t.exchange(0, payload), doctest::Contains("injected"));
    CHECK(t.aborted);
    CHECK(t.held == 0);
    CHECK(t.failed());
    CHECK_THROWS_WITH(t.exchange(1, payload), doctest::Contains("unusable after an earlier error"));
  }
  // A poll hook that abandons a ring step after its send: the same.
  {
    auto o = quick_options();
    o.timeout = std::chrono::milliseconds(2000);
    bool armed = false;
    o.poll = [&armed] {
      if (armed) throw std::runtime_error("abandoned by the caller");
    };
    o.poll_interval = std::chrono::milliseconds(1);
    HoldingBackend t(topo, o, -1);
    t.handshake();
    armed = true;
    const auto payload = pattern(0, 0, 64);
    std::vector<std::byte> recv(64);
    CHECK_THROWS_WITH(t.ring_step(0, 0, payload, recv), doctest::Contains("abandoned"));
    CHECK(t.aborted);
    CHECK(t.held == 0);
  }
}

TEST_CASE("inproc: a rejoining peer takes the state of its own process, not one for another") {
  // The state's departures name the process each rejoin is for (Hello::instance): a restart that
  // lost to another process of the same rank must not take the state meant for the winner.
  for (const bool mine : {true, false}) {
    CAPTURE(mine);
    auto o = quick_options();
    o.on_peer_loss = PeerLoss::continue_run;
    o.rejoin = true;
    Bench b = bench("ring:4", 0, o);
    b.as(1).hello();
    std::vector<std::byte> frame;
    const auto put = [&](std::uint64_t v, int bytes) {
      for (int i = 0; i < bytes; ++i) frame.push_back(static_cast<std::byte>(v >> (8 * i)));
    };
    const std::uint64_t whole = 4 + 36 + 3;  // one departure, then the caller's 3 bytes
    put(1, 4);                               // one chunk
    put(whole, 8);
    put(1, 4);                                             // one departure:
    put(0, 4);                                             // rank 0 (this one),
    put(5, 8);                                             // gone from round 5,
    put(7, 8);                                             // back from 7,
    put(0, 8);                                             // its first departure,
    put(mine ? b.t->instance() : b.t->instance() + 1, 8);  // as this process or another
    for (char c : {'a', 'b', 'c'}) frame.push_back(static_cast<std::byte>(c));
    b.as(1).post(FrameKind::state, 7, 0, frame, b.session);
    if (mine) {
      const JoinState st = b.t->receive_state();
      CHECK(st.round == 7);
      CHECK(st.donor == 1);
      CHECK(st.bytes == std::vector<std::byte>{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}});
      REQUIRE(b.t->departures().size() == 1);
      CHECK(b.t->departures()[0].returned == b.t->instance());
    } else {
      const std::string want =
          fmt::format("it is for process {:016x} of this rank", b.t->instance() + 1);
      CHECK_THROWS_WITH_AS(b.t->receive_state(), doctest::Contains(want.c_str()), TransportError);
    }
  }
}

}  // namespace gossip::net::test
