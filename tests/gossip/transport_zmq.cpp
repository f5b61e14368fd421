// ZeroMQ transport, all ranks as threads of this process over ipc:// (a fresh temp dir per
// group) and tcp://127.0.0.1 (free ports asked from the kernel), so concurrent tests never meet.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "gossip/zmq_transport.hpp"
#include "tests/gossip/transport_cases.hpp"

namespace gossip::net::test {
namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gossip-zmq-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Keeps the temp dir alive as long as any transport factory of the group.
Group ipc_group(const std::string& spec) {
  auto dir = std::make_shared<TempDir>();
  Group g{make_topo(spec, "ipc://" + (dir->path / "p{rank}").string()), {}};
  g.make = [dir, topo = g.topo](int rank,
                                const TransportOptions& o) -> std::unique_ptr<FramedTransport> {
    // Each peer constructs with the handshake deferred: the threads start in any order.
    return std::make_unique<ZmqTransport>(topo, rank, o, false);
  };
  return g;
}

Group tcp_group_on(const std::string& spec, const std::string& host) {
  Group g{make_topo(spec, "tcp://127.0.0.1:29500"), {}};
  for (auto& p : g.topo.peers) p.endpoint = fmt::format("tcp://{}:{}", host, free_tcp_port());
  g.make = [topo = g.topo](int rank,
                           const TransportOptions& o) -> std::unique_ptr<FramedTransport> {
    return std::make_unique<ZmqTransport>(topo, rank, o, false);
  };
  return g;
}
Group tcp_group(const std::string& spec) {
  return tcp_group_on(spec, "127.0.0.1");
}
// Whether this host can bind ::1 (a container may run without IPv6).
bool ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}
Group tcp6_group(const std::string& spec) {
  return tcp_group_on(spec, "[::1]");
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

TEST_CASE("zmq: exchange on ring, torus and complete graphs of 1, 2, 3 and 8 peers") {
  for (const char* spec :
       {"ring:1", "ring:2", "ring:3", "ring:8", "torus:3x3", "complete:3", "complete:8"}) {
    // 1 MiB takes the zero-copy path, the others are copied into the message.
    for (std::size_t len : {0u, 1000u, 1u << 20}) check_exchange(ipc_group, spec, len, 3);
  }
}

TEST_CASE("zmq: exchange_each, eager and paced by a receive window") {
  for (const char* spec : {"ring:3", "complete:8"}) {
    check_exchange(ipc_group, spec, 1u << 20, 3, 0, true);
    check_exchange(ipc_group, spec, 1u << 20, 3, 1, true);
    check_exchange(ipc_group, spec, 1000, 3, 2, false);
  }
}

TEST_CASE("zmq: one-peer exponential: one message each way per round") {
  for (const char* spec :
       {"one-peer-exponential:2", "one-peer-exponential:6", "one-peer-exponential:8"}) {
    check_exchange(ipc_group, spec, 1000, 9);
    check_exchange(ipc_group, spec, 1u << 20, 4, 0, true);
    check_exchange(ipc_group, spec, 1000, 6, 1, true);
  }
}

TEST_CASE("zmq: exchange over tcp on loopback, IPv4 and IPv6") {
  check_exchange(tcp_group, "ring:3", 1u << 20, 3);
  check_exchange(tcp_group, "complete:4", 100, 3);
  if (ipv6_loopback()) {
    check_exchange(tcp6_group, "ring:3", 1u << 20, 3);
  } else {
    MESSAGE("no IPv6 loopback here (::1 cannot be bound): the IPv6 case is skipped");
  }
}

TEST_CASE("zmq: a ring all-reduce by hand with ring_step") {
  for (const char* spec : {"ring:1", "ring:2", "ring:3", "ring:8", "complete:4"}) {
    for (std::size_t d : {7u, 1000u, 100000u}) check_ring_allreduce(ipc_group, spec, d);
  }
}

TEST_CASE("zmq: a zero-copy send buffer may be overwritten as soon as exchange returns") {
  Group g = ipc_group("ring:3");
  constexpr std::size_t kLen = 4u << 20;
  std::vector<std::string> bad(3);
  auto errors = run_ranks(3, [&](int r) {
    auto t = g.make(r, quick_options());
    std::vector<std::byte> buf(kLen);
    for (std::uint64_t round = 0; round < 6; ++round) {
      const auto p = pattern(r, round, kLen);
      std::copy(p.begin(), p.end(), buf.begin());
      const auto& got = t->exchange(round, buf);
      std::fill(buf.begin(), buf.end(), std::byte{0xee});  // would corrupt an unsent message
      for (std::size_t k = 0; k < got.size(); ++k) {
        if (!same(got[k], pattern(t->neighbors()[k], round, kLen))) {
          bad[static_cast<std::size_t>(r)] = fmt::format("round {} from {}", round, k);
        }
      }
    }
  });
  for (int r = 0; r < 3; ++r) {
    CHECK(errors[static_cast<std::size_t>(r)] == "");
    CHECK(bad[static_cast<std::size_t>(r)] == "");
  }
}

TEST_CASE("zmq: run settings mismatch is refused by both sides") {
  check_run_hash_mismatch(ipc_group);
}

TEST_CASE("zmq: a peer of another launch of the same run is refused by name") {
  check_nonce_mismatch(ipc_group);
}

TEST_CASE("zmq: topology mismatch is refused naming both hashes") {
  Group g = ipc_group("ring:2");
  auto other = g.topo;
  other.W[0][0].weight += 0.125;  // same peers and endpoints, different mixing matrix
  REQUIRE(other.hash() != g.topo.hash());
  auto errors =
      run_ranks(2, [&](int r) { ZmqTransport t(r == 0 ? g.topo : other, r, quick_options()); });
  CAPTURE(errors[0]);
  CAPTURE(errors[1]);
  CHECK(errors[0].find(fmt::format("peer 1 ({}) has topology hash {:016x}, ours is {:016x}",
                                   g.topo.peers[1].endpoint, other.hash(), g.topo.hash())) !=
        std::string::npos);
  CHECK(errors[1].find(fmt::format("peer 0 ({}) has topology hash {:016x}, ours is {:016x}",
                                   g.topo.peers[0].endpoint, g.topo.hash(), other.hash())) !=
        std::string::npos);
}

TEST_CASE("zmq: a silent neighbour times out naming peer, endpoint and round") {
  check_silent_neighbor(ipc_group);
}

TEST_CASE("zmq: nobody at the other end: the handshake times out naming the peer") {
  Group g = ipc_group("ring:2");
  auto o = quick_options();
  o.connect_timeout = std::chrono::milliseconds(300);
  const auto e = error_of([&] { ZmqTransport t(g.topo, 0, o); });
  CHECK(e.find("handshake: no hello within 300 ms from peer 1 (" + g.topo.peers[1].endpoint +
               ")") != std::string::npos);
}

TEST_CASE("zmq: link emulation adds latency and limits bandwidth") {
  check_latency(ipc_group);
  check_bandwidth(ipc_group);
}

TEST_CASE("zmq: a peer's links share its NIC: k frames through an uplink take k * b * 8 / B") {
  check_nic_shared_by_links(ipc_group);
}

TEST_CASE("zmq: garbage from raw sockets is dropped and counted, and the handshake goes on") {
  Group g = ipc_group("ring:2");
  zmq::context_t ctx;
  auto raw = [&](const std::string& id) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    if (!id.empty()) s.set(zmq::sockopt::routing_id, zmq::buffer(id));
    s.connect(g.topo.peers[0].endpoint);
    return s;
  };
  auto send = [](zmq::socket_t& s, std::vector<std::vector<std::byte>> parts) {
    for (std::size_t i = 0; i < parts.size(); ++i) {
      zmq::message_t m(parts[i].data(), parts[i].size());
      s.send(m, i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  };
  // Rank 1 played by a raw socket with rank 1's routing id: its real hello after the garbage
  // completes rank 0's handshake (one connection: frames arrive in order).
  const Forger r1{nullptr, 1, 0, session_hash(g.topo.hash(), 0), &g.topo};
  auto bytes = [](const HeaderBytes& h) { return std::vector<std::byte>(h.begin(), h.end()); };
  const auto hello_body = r1.hello_body();
  const auto hello = bytes(r1.header(FrameKind::hello, 0, 0, hello_body.size(), 0));
  auto o = quick_options();
  o.connect_timeout = std::chrono::milliseconds(5000);
  ZmqTransport t(g.topo, 0, o, false);
  auto s = raw("r1");
  DropReason why = DropReason::not_a_peer;
  SUBCASE("a garbage header on the link of rank 1") {
    auto garbage = pattern(5, 5, kFrameHeaderSize);
    garbage[0] = std::byte{0};
    send(s, {garbage, pattern(5, 5, 100)});
    why = DropReason::bad_magic;
  }
  SUBCASE("a single-part message") {
    send(s, {pattern(5, 5, 3)});
    why = DropReason::bad_parts;
  }
  SUBCASE("three parts") {
    send(s, {hello, hello_body, hello_body});
    why = DropReason::bad_parts;
  }
  SUBCASE("a 7-byte header") {
    send(s, {pattern(5, 5, 7), pattern(5, 5, 1)});
    why = DropReason::header_size;
  }
  SUBCASE("a well-formed hello whose header names another sender") {
    const Forger r0{nullptr, 0, 0, 0, &g.topo};
    send(s, {bytes(r0.header(FrameKind::hello, 0, 0, hello_body.size(), 0)), hello_body});
    why = DropReason::wrong_sender;
  }
  send(s, {hello, hello_body});
  t.handshake();
  CHECK(t.handshake_done());
  CHECK(t.drops().all.total == 1);
  CHECK(t.drops().all[why] == 1);
  CHECK(t.drops().by_peer[1][why] == 1);
  // And the transport works: rank 1's frame of round 0 is delivered.
  const auto body = pattern(1, 0, 16);
  send(s, {bytes(r1.header(FrameKind::exchange, 0, 0, body.size(), r1.session)), body});
  CHECK(same(t.exchange(0, pattern(0, 0, 8)).at(0), body));
}

TEST_CASE("zmq: a connection that is not a peer's is counted under its routing id") {
  Group g = ipc_group("ring:2");
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::routing_id, zmq::buffer(std::string("intruder")));
  s.connect(g.topo.peers[0].endpoint);
  const Forger r1{nullptr, 1, 0, session_hash(g.topo.hash(), 0), &g.topo};
  const auto body = r1.hello_body();
  const auto h = r1.header(FrameKind::hello, 0, 0, body.size(), 0);
  for (int i = 0; i < 3; ++i) {
    zmq::message_t head(h.data(), h.size()), part(body.data(), body.size());
    s.send(head, zmq::send_flags::sndmore);
    s.send(part, zmq::send_flags::none);
  }
  ZmqTransport t(g.topo, 0, quick_options(), false);
  const auto t0 = std::chrono::steady_clock::now();
  while (t.drops().all.total < 3 && seconds_since(t0) < 10)
    t.poll_for(std::chrono::milliseconds(10));
  CHECK(t.drops().all[DropReason::not_a_peer] == 3);
  REQUIRE(t.drops().by_stranger.contains("routing id 0x696e747275646572"));
  CHECK(t.drops().by_stranger.find("routing id 0x696e747275646572")->second.total == 3);
  CHECK(!t.handshake_done());  // a stranger's hello counts for nobody
}

TEST_CASE("zmq: a neighbour that sends only bad frames times out naming it and its drops") {
  Group g = ipc_group("ring:2");
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::routing_id, zmq::buffer(std::string("r1")));
  s.connect(g.topo.peers[0].endpoint);
  const Forger r1{nullptr, 1, 0, session_hash(g.topo.hash(), 0), &g.topo};
  auto send = [&](const HeaderBytes& h, const std::vector<std::byte>& body) {
    zmq::message_t head(h.data(), h.size()), part(body.data(), body.size());
    s.send(head, zmq::send_flags::sndmore);
    s.send(part, zmq::send_flags::none);
  };
  send(r1.header(FrameKind::hello, 0, 0, r1.hello_body().size(), 0), r1.hello_body());
  const auto body = pattern(1, 17, 16);
  for (int i = 0; i < 35; ++i) {
    auto h = r1.header(FrameKind::exchange, 17, 0, body.size(), r1.session);
    h[20] ^= std::byte{1};
    send(h, body);
  }
  auto o = quick_options();
  o.timeout = std::chrono::milliseconds(500);
  ZmqTransport t(g.topo, 0, o, false);
  const auto e = error_of([&] { t.exchange(17, pattern(0, 17, 8)); });
  CAPTURE(e);
  CHECK(e.find("round 17: no message from peer 1 (" + g.topo.peers[1].endpoint +
               ") within 500 ms") != std::string::npos);
  CHECK(e.find("35 of its frames were dropped: 35 bad checksum") != std::string::npos);
}

TEST_CASE("zmq: bind failure names the endpoint") {
  Group g = ipc_group("ring:2");
  auto topo = g.topo;
  topo.peers[0].endpoint = "ipc:///nonexistent-dir-gossip/p0";
  // Both hashes change together, so this is only about the bind.
  const auto e = error_of([&] { ZmqTransport t(topo, 0, quick_options(), false); });
  CHECK(e.find("cannot bind ipc:///nonexistent-dir-gossip/p0") != std::string::npos);
}

TEST_CASE("zmq: a bind failure on an address of this host is an error, not a wildcard bind") {
  Group g = tcp_group("ring:2");
  const std::string port = g.topo.peers[0].endpoint.substr(g.topo.peers[0].endpoint.rfind(':'));
  // A port in use on the loopback address: the error, with errno's text, naming the endpoint.
  Group h = tcp_group("ring:2");
  ZmqTransport holder(h.topo, 0, quick_options(), false);
  auto busy = g.topo;
  busy.peers[0].endpoint = h.topo.peers[0].endpoint;
  auto e = error_of([&] { ZmqTransport t(busy, 0, quick_options(), false); });
  CHECK_MESSAGE(e.find("cannot bind " + h.topo.peers[0].endpoint + ": Address already in use") !=
                    std::string::npos,
                e);
  // A host name that is not an interface of this host: the intended fallback, on every interface.
  auto named = g.topo;
  named.peers[0].endpoint = "tcp://gossip-peer-0.invalid" + port;
  ZmqTransport t(named, 0, quick_options(), false);
  CHECK(t.bound_endpoint() == "tcp://*" + port);
}

}  // namespace gossip::net::test
