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

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

Group tcp_group(const std::string& spec) {
  Group g{make_topo(spec, "tcp://127.0.0.1:29500"), {}};
  for (auto& p : g.topo.peers) p.endpoint = fmt::format("tcp://127.0.0.1:{}", free_tcp_port());
  g.make = [topo = g.topo](int rank,
                           const TransportOptions& o) -> std::unique_ptr<FramedTransport> {
    return std::make_unique<ZmqTransport>(topo, rank, o, false);
  };
  return g;
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

TEST_CASE("zmq: exchange over tcp on loopback") {
  check_exchange(tcp_group, "ring:3", 1u << 20, 3);
  check_exchange(tcp_group, "complete:4", 100, 3);
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

TEST_CASE("zmq: garbage from a raw socket is rejected without a crash") {
  Group g = ipc_group("ring:2");
  const auto mine = pattern(0, 0, 8);
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
  auto o = quick_options();
  o.connect_timeout = std::chrono::milliseconds(5000);
  SUBCASE("garbage header on the link of rank 1") {
    ZmqTransport t(g.topo, 0, o, false);
    auto s = raw("r1");
    send(s, {pattern(5, 5, kFrameHeaderSize), pattern(5, 5, 100)});
    const auto e = error_of([&] { t.handshake(); });
    CHECK(e.find("bad frame from peer 1 (" + g.topo.peers[1].endpoint + "): bad magic") !=
          std::string::npos);
  }
  SUBCASE("a single-part message") {
    ZmqTransport t(g.topo, 0, o, false);
    auto s = raw("r1");
    send(s, {pattern(5, 5, 3)});
    CHECK(error_of([&] { t.handshake(); }).find("1 message parts, expected 2") !=
          std::string::npos);
  }
  SUBCASE("a connection that is not a peer") {
    ZmqTransport t(g.topo, 0, o, false);
    auto s = raw("intruder");
    send(s, {pattern(5, 5, kFrameHeaderSize), {}});
    CHECK(error_of([&] {
            t.handshake();
          }).find("a connection that is not a peer (routing id 0x696e747275646572)") !=
          std::string::npos);
  }
  SUBCASE("a well-formed frame whose header names another sender") {
    ZmqTransport t(g.topo, 0, o, false);
    auto s = raw("r1");
    FrameHeader h;
    h.kind = FrameKind::hello;
    h.sender = 0;  // we are rank 0; rank 1's link cannot carry rank 0's frames
    const auto hb = encode_header(h);
    send(s, {{hb.begin(), hb.end()}, {}});
    CHECK(error_of([&] { t.handshake(); }).find("claims sender 0") != std::string::npos);
  }
  SUBCASE("the transport keeps working for no one after an error") {
    ZmqTransport t(g.topo, 0, o, false);
    auto s = raw("r1");
    send(s, {pattern(5, 5, 7), pattern(5, 5, 1)});
    CHECK(error_of([&] { t.handshake(); }).find("frame header is 7 bytes") != std::string::npos);
    CHECK(error_of([&] { t.exchange(0, mine); }).find("unusable") != std::string::npos);
  }
}

TEST_CASE("zmq: bind failure names the endpoint") {
  Group g = ipc_group("ring:2");
  auto topo = g.topo;
  topo.peers[0].endpoint = "ipc:///nonexistent-dir-gossip/p0";
  // Both hashes change together, so this is only about the bind.
  const auto e = error_of([&] { ZmqTransport t(topo, 0, quick_options(), false); });
  CHECK(e.find("cannot bind ipc:///nonexistent-dir-gossip/p0") != std::string::npos);
}

}  // namespace gossip::net::test
