// A run that survives strangers: four peers train D-PSGD over ZeroMQ (tcp on loopback) while a
// stranger floods every peer with about 10^4 bad frames of several kinds. The models must come
// out bit-identical to an undisturbed run, and each peer's drop counters must match, reason by
// reason, what the stranger sent on the connections whose frames reach it deterministically.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include "algorithm_harness.hpp"
#include "gossip/zmq_transport.hpp"
#include "tests/gossip/transport_test_util.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;
namespace gn = gossip::net;
using namespace std::chrono_literals;

namespace {

// Plain TCP: connects, writes `bytes`, closes. libzmq refuses what is not ZMTP, or reads it as
// frames of an anonymous connection; either way it must not disturb the run.
void tcp_garbage(int port, const std::vector<std::byte>& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  ::close(fd);
}

std::vector<std::byte> bytes_of(const gn::HeaderBytes& h) {
  return {h.begin(), h.end()};
}

}  // namespace

TEST_CASE("D-PSGD over ZeroMQ with a stranger flooding every peer: same models, exact drops") {
  constexpr int kN = 4;
  constexpr std::uint64_t kRounds = 150;
  constexpr int kEach = 230;  // frames of each kind per peer: 11 kinds x 4 peers ~ 10^4 frames
  constexpr std::uint64_t kMaxPayload = 4096;  // D-PSGD fp16 of d = 777: about 1.6 kB
  auto spec = gossip::topology::parse_spec("ring:4");
  spec.endpoint = "tcp://127.0.0.1:29500";
  auto topo = gossip::topology::make_topology(spec);
  std::vector<int> ports;
  for (auto& p : topo.peers) {
    ports.push_back(gn::test::free_tcp_port());
    p.endpoint = fmt::format("tcp://127.0.0.1:{}", ports.back());
  }
  const gt::DiagonalQuadratic problem(kN, 777, 31, 0.3f);
  const std::vector<float> x0(problem.d, 0.1f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  ga::AlgorithmConfig cfg;
  cfg.name = "dpsgd";
  cfg.codec = "fp16";
  cfg.lr = 0.05f;
  cfg.seed = 5;
  const auto undisturbed = gt::run_algorithm(cfg, topo, x0, kRounds, grad);

  gn::TransportOptions options;
  options.timeout = 20s;
  options.connect_timeout = 20s;
  options.linger = 2000ms;
  options.max_payload_bytes = kMaxPayload;
  const std::uint64_t session = gn::session_hash(topo.hash(), options.run_hash);

  // The stranger. Per peer p: a DEALER with routing id "x-stranger" (no peer's), and one with
  // "r<p+2>": a real rank, but not one that connects to p on ring:4, so ZeroMQ lets it in.
  std::atomic<bool> half_sent{false}, all_sent{false};
  std::string stranger_error;
  std::thread stranger([&] {
    try {
      zmq::context_t ctx;
      std::vector<zmq::socket_t> xs, rs, big;
      for (int p = 0; p < kN; ++p) {
        for (auto* group : {&xs, &rs, &big}) {
          auto& s = group->emplace_back(ctx, zmq::socket_type::dealer);
          s.set(zmq::sockopt::linger, 0);
          s.set(zmq::sockopt::sndtimeo, 20000);  // bounded: a send never blocks for ever
          if (group == &xs) s.set(zmq::sockopt::routing_id, zmq::buffer(std::string("x-stranger")));
          if (group == &rs) {
            s.set(zmq::sockopt::routing_id, zmq::buffer(fmt::format("r{}", (p + 2) % kN)));
          }
          s.connect(topo.peers[static_cast<std::size_t>(p)].endpoint);
        }
      }
      auto send = [](zmq::socket_t& s, const std::vector<std::vector<std::byte>>& parts) {
        for (std::size_t i = 0; i < parts.size(); ++i) {
          zmq::message_t m(parts[i].data(), parts[i].size());
          if (!s.send(m, i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none))
            throw std::runtime_error("stranger: send timed out");
        }
      };
      auto flood = [&](int from_i, int to_i) {
        for (int i = from_i; i < to_i; ++i) {
          for (int p = 0; p < kN; ++p) {
            const int nb = (p + 1) % kN, far = (p + 2) % kN;
            const auto u = static_cast<std::uint64_t>(i);
            auto& x = xs[static_cast<std::size_t>(p)];
            auto& r = rs[static_cast<std::size_t>(p)];
            const gn::test::Forger as_nb{nullptr, nb, p, session, &topo};
            const gn::test::Forger as_far{nullptr, far, p, session, &topo};
            const auto body = gn::test::pattern(nb, 0, 1600);
            // On the stranger's own connection:
            send(x, {gn::test::pattern(p, u, 50)});  // one part: bad_parts
            auto garbage = gn::test::pattern(p, u, gn::kFrameHeaderSize);
            garbage[0] = std::byte{0};
            send(x, {garbage, body});                      // bad_magic
            send(x, {gn::test::pattern(p, u, 20), body});  // header_size
            send(x,
                 {bytes_of(as_nb.header(gn::FrameKind::exchange, u, 0, body.size(), session ^ 1)),
                  body});  // wrong_session
            send(x, {bytes_of(as_far.header(gn::FrameKind::exchange, u, 0, body.size(), session)),
                     body});  // not_a_peer: a sender that is not this connection's
            send(x, {bytes_of(as_nb.header(gn::FrameKind::exchange, 0, 0, body.size(), session)),
                     body});  // not_a_peer: a replay of round 0 of a real neighbour
            send(x, {bytes_of(as_nb.header(gn::FrameKind::exchange, u, 0, 1ull << 40, session)),
                     gn::test::pattern(p, u, 16)});  // bad_length
            const auto long_body = gn::test::pattern(p, u, kMaxPayload + 1000);
            send(x,
                 {bytes_of(as_nb.header(gn::FrameKind::exchange, u, 0, long_body.size(), session)),
                  long_body});  // too_long
            // On the connection with rank p+2's routing id:
            send(r, {bytes_of(as_far.header(gn::FrameKind::exchange, u, 0, body.size(), session)),
                     body});  // not_linked
            send(r, {bytes_of(as_nb.header(gn::FrameKind::exchange, u, 0, body.size(), session)),
                     body});  // wrong_sender
            send(r, {bytes_of(as_far.header(gn::FrameKind::exchange, 0, 0, body.size(), session)),
                     body});  // not_linked: a replay of round 0
          }
        }
      };
      flood(0, kEach / 2);
      half_sent = true;
      for (int p = 0; p < kN; ++p) {
        // Over ZMQ_MAXMSGSIZE: libzmq drops the connection before the transport sees it.
        zmq::message_t huge(std::size_t{200} << 10);
        std::memset(huge.data(), 0x5a, huge.size());
        [[maybe_unused]] auto sent =
            big[static_cast<std::size_t>(p)].send(huge, zmq::send_flags::dontwait);
        tcp_garbage(ports[static_cast<std::size_t>(p)], gn::test::pattern(p, 99, 4096));
      }
      flood(kEach / 2, kEach);
      all_sent = true;
      std::this_thread::sleep_for(200ms);  // DEALERs close with linger 0: let the last frames go
    } catch (const std::exception& e) {
      stranger_error = e.what();
    }
    half_sent = true;
    all_sent = true;
  });

  std::vector<std::vector<float>> disturbed(static_cast<std::size_t>(kN));
  std::vector<gn::DropCounters> drops(static_cast<std::size_t>(kN));
  const std::string x_label = "routing id 0x782d737472616e676572";  // "x-stranger"
  const auto t0 = std::chrono::steady_clock::now();
  std::string run_error;
  try {
    gt::run_peers(kN, [&](int r) {
      gn::ZmqTransport transport(topo, r, options);  // the flood may already be arriving
      // Start training once the flood is under way; keep reading it meanwhile (a peer that does
      // not read would block the stranger's sends on a full queue).
      while (!half_sent && gn::test::seconds_since(t0) < 30) transport.poll_for(5ms);
      auto algo = ga::make_algorithm(cfg, transport, topo, x0);
      auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
      for (std::uint64_t t = 0; t < kRounds; ++t) algo->step(g);
      const auto p = algo->params();
      disturbed[static_cast<std::size_t>(r)].assign(p.begin(), p.end());
      // Frames still queued when the last round ended: read them before counting.
      const auto far = static_cast<std::size_t>((r + 2) % kN);
      auto counted = [&] {
        const auto& d = transport.drops();
        const auto it = d.by_stranger.find(x_label);
        return it != d.by_stranger.end() && it->second.total == 8u * kEach &&
               d.by_peer[far].total == 3u * kEach;
      };
      while (!(all_sent && counted()) && gn::test::seconds_since(t0) < 60) transport.poll_for(5ms);
      drops[static_cast<std::size_t>(r)] = transport.drops();
    });
  } catch (const std::exception& e) {
    run_error = e.what();  // checked below, once the stranger has stopped
  }
  stranger.join();
  REQUIRE(run_error == "");
  CHECK(stranger_error == "");
  MESSAGE("flood run took " << gn::test::seconds_since(t0) << " s");

  for (int r = 0; r < kN; ++r) {
    CAPTURE(r);
    const auto i = static_cast<std::size_t>(r);
    CHECK(std::memcmp(disturbed[i].data(), undisturbed[i].data(),
                      undisturbed[i].size() * sizeof(float)) == 0);
    const auto& d = drops[i];
    using R = gn::DropReason;
    REQUIRE(d.by_stranger.contains(x_label));
    const auto& x = d.by_stranger.find(x_label)->second;
    CHECK(x.total == 8u * kEach);
    for (R why : {R::bad_parts, R::bad_magic, R::header_size, R::wrong_session, R::bad_length,
                  R::too_long}) {
      CAPTURE(gn::drop_reason_name(why));
      CHECK(x[why] == kEach);
    }
    CHECK(x[R::not_a_peer] == 2u * kEach);
    const auto& far = d.by_peer[static_cast<std::size_t>((r + 2) % kN)];
    CHECK(far.total == 3u * kEach);
    CHECK(far[R::not_linked] == 2u * kEach);
    CHECK(far[R::wrong_sender] == kEach);
    // Nothing was dropped from the real neighbours, and anything else counted came from the
    // anonymous connections of the plain-TCP garbage (if libzmq made frames of it at all).
    CHECK(d.by_peer[static_cast<std::size_t>((r + 1) % kN)].total == 0);
    CHECK(d.by_peer[static_cast<std::size_t>((r + 3) % kN)].total == 0);
    std::uint64_t others = 0;
    for (const auto& [label, t] : d.by_stranger) {
      if (label != x_label) others += t.total;
    }
    CHECK(d.all.total == 11u * kEach + others);
  }
}
