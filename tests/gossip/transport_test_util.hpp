#pragma once
// Helpers shared by the transport tests: topologies, payload patterns, one thread per rank.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gossip/frame.hpp"
#include "gossip/framed_transport.hpp"
#include "gossip/inproc_transport.hpp"
#include "topology/generators.hpp"

namespace gossip::net::test {

// A loopback TCP port that was free a moment ago (the kernel's choice for port 0).
inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("free_tcp_port: socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("free_tcp_port: bind() failed");
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("free_tcp_port: getsockname() failed");
  ::close(fd);
  return ntohs(a.sin_port);
}

inline topology::Topology make_topo(const std::string& spec, const std::string& endpoint) {
  auto s = topology::parse_spec(spec);
  s.endpoint = endpoint;
  return topology::make_topology(s);
}

// Bytes that depend on who sent them and when, so a mixed-up message cannot pass a check.
inline std::vector<std::byte> pattern(int rank, std::uint64_t round, std::size_t len,
                                      std::uint32_t step = 0) {
  std::vector<std::byte> v(len);
  std::uint64_t x = (static_cast<std::uint64_t>(rank) + 1) * 0x9e3779b97f4a7c15ull ^
                    (round + 1) * 0xbf58476d1ce4e5b9ull ^ (step + 7ull) * 0x94d049bb133111ebull;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return v;
}

inline bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Runs fn(rank) on n threads; returns each rank's exception message ("" when it returned).
inline std::vector<std::string> run_ranks(int n, const std::function<void(int)>& fn) {
  std::vector<std::string> errors(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
        if (errors[static_cast<std::size_t>(r)].empty()) errors[static_cast<std::size_t>(r)] = "?";
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// A set of transports over one topology, made per rank by the backend under test.
struct Group {
  topology::Topology topo;
  std::function<std::unique_ptr<FramedTransport>(int rank, const TransportOptions&)> make;
};
// Builds a Group for a generator spec ("ring:8"), with endpoints that cannot collide with any
// other test running at the same time.
using GroupMaker = std::function<Group(const std::string& spec)>;

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Recomputes the checksum of a header edited by hand (FNV-1a 32 of bytes 0..59, frame.hpp), so
// that a check after the checksum sees the edit.
inline void reseal(HeaderBytes& h) {
  std::uint32_t x = 2166136261u;
  for (std::size_t i = 0; i < 60; ++i) {
    x ^= static_cast<std::uint32_t>(h[i]);
    x *= 16777619u;
  }
  for (std::size_t i = 0; i < 4; ++i) h[60 + i] = static_cast<std::byte>(x >> (8 * i));
}

// Plays rank `from` by hand against a real transport of rank `to`: posts into the hub, or, with
// hub null, only builds headers and hellos (for frames sent over real sockets; then `topo`).
struct Forger {
  std::shared_ptr<InprocHub> hub;
  int from;
  int to;
  std::uint64_t session;
  const topology::Topology* topo = nullptr;

  std::vector<std::byte> hello_body(std::uint64_t run_hash = 0, std::uint32_t window = 0) const {
    const auto& t = hub ? hub->topology() : *topo;
    return encode_hello({t.hash(), run_hash, static_cast<std::uint32_t>(t.size()),
                         static_cast<std::uint32_t>(from), window,
                         t.peers[static_cast<std::size_t>(from)].endpoint, 0,
                         0xF0F0'0000'0000ull + static_cast<std::uint64_t>(from)});
  }
  void hello(std::uint64_t run_hash = 0, std::uint32_t window = 0) const {
    post(FrameKind::hello, 0, 0, hello_body(run_hash, window), 0);
  }
  void data(std::uint64_t round, const std::vector<std::byte>& body) const {
    post(FrameKind::exchange, round, 0, body, session);
  }
  HeaderBytes header(FrameKind kind, std::uint64_t round, std::uint32_t step,
                     std::uint64_t payload_length, std::uint64_t sess,
                     std::uint32_t stop_in = 0) const {
    FrameHeader h;
    h.stop_in = stop_in;
    h.kind = kind;
    h.sender = static_cast<std::uint32_t>(from);
    h.receiver = static_cast<std::uint32_t>(to);
    h.round = round;
    h.step = step;
    h.payload_length = payload_length;
    h.session = sess;
    return encode_header(h);
  }
  void post(FrameKind kind, std::uint64_t round, std::uint32_t step,
            const std::vector<std::byte>& body, std::uint64_t sess,
            std::uint32_t stop_in = 0) const {
    const auto hb = header(kind, round, step, body.size(), sess, stop_in);
    hub->post_raw(to, from, {hb.begin(), hb.end()}, body);
  }
  // A header as given, on this forger's link.
  void post_header(const HeaderBytes& hb, const std::vector<std::byte>& body) const {
    hub->post_raw(to, from, {hb.begin(), hb.end()}, body);
  }
};

}  // namespace gossip::net::test
