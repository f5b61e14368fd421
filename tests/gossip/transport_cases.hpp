#pragma once
// Test bodies shared by both transports: each backend's test file calls them with its GroupMaker.

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "tests/gossip/transport_test_util.hpp"

namespace gossip::net::test {

using namespace std::chrono_literals;

inline TransportOptions quick_options() {
  TransportOptions o;
  o.timeout = 20s;  // generous: only a broken transport waits this long
  o.connect_timeout = 20s;
  o.linger = 2000ms;  // failure paths flush for at most this long (slack for a loaded machine)
  return o;
}

// Every rank exchanges `rounds` rounds of `len` bytes; checks contents, order and the exact
// byte counters (hello frames, and credit frames when paced, included). `each`: through
// exchange_each(), every sender delivered exactly once. On a time-varying topology each round
// sends to send_to(round) and takes from receive_from(round) only (one-peer exponential: one
// message each way, wire + 64 bytes).
inline void check_exchange(const GroupMaker& mk, const std::string& spec, std::size_t len,
                           int rounds, int window = 0, bool each = false) {
  CAPTURE(spec);
  CAPTURE(len);
  CAPTURE(window);
  CAPTURE(each);
  Group g = mk(spec);
  const int n = g.topo.size();
  std::vector<std::string> bad(static_cast<std::size_t>(n));
  std::vector<TrafficCounters> counters(static_cast<std::size_t>(n));
  std::vector<std::vector<int>> links(static_cast<std::size_t>(n));
  auto errors = run_ranks(n, [&](int r) {
    auto o = quick_options();
    o.receive_window = window;
    auto t = g.make(r, o);
    const auto nb = t->neighbors();
    if (std::vector<int>(nb.begin(), nb.end()) != g.topo.graph.neighbors(r)) {
      bad[static_cast<std::size_t>(r)] = "neighbors() differs from the topology";
    }
    for (int round = 0; round < rounds; ++round) {
      const auto t_round = static_cast<std::uint64_t>(round);
      const auto from = t->receive_from(t_round);
      if (std::vector<int>(from.begin(), from.end()) != g.topo.receive_from(r, t_round) ||
          !std::ranges::equal(t->send_to(t_round), g.topo.send_to(r, t_round))) {
        bad[static_cast<std::size_t>(r)] =
            fmt::format("round {}: send_to()/receive_from() differ from the topology", round);
      }
      const auto mine = pattern(r, t_round, len);
      if (each) {
        std::vector<int> calls(from.size());
        std::size_t next = 0;  // the documented order: receive_from() order, whatever arrives
        t->exchange_each(t_round, mine, [&](std::size_t k, std::span<const std::byte> got) {
          if (k != next++) {
            bad[static_cast<std::size_t>(r)] =
                fmt::format("round {}: neighbour {} delivered out of order", round, k);
          }
          calls.at(k) += 1;
          if (!same(got, pattern(from[k], t_round, len))) {
            bad[static_cast<std::size_t>(r)] =
                fmt::format("round {}: wrong bytes from rank {}", round, from[k]);
          }
        });
        if (std::count(calls.begin(), calls.end(), 1) != static_cast<long>(from.size())) {
          bad[static_cast<std::size_t>(r)] =
              fmt::format("round {}: callbacks {}", round, fmt::join(calls, ","));
        }
        continue;
      }
      const auto& got = t->exchange(t_round, mine);
      if (got.size() != from.size()) {
        bad[static_cast<std::size_t>(r)] =
            fmt::format("{} views for {} senders", got.size(), from.size());
        return;
      }
      for (std::size_t k = 0; k < from.size(); ++k) {
        if (!same(got[k], pattern(from[k], t_round, len))) {
          bad[static_cast<std::size_t>(r)] =
              fmt::format("round {}: wrong bytes from rank {}", round, from[k]);
        }
      }
    }
    counters[static_cast<std::size_t>(r)] = t->counters();
    links[static_cast<std::size_t>(r)].assign(t->links().begin(), t->links().end());
  });
  for (int r = 0; r < n; ++r) {
    const auto i = static_cast<std::size_t>(r);
    CAPTURE(r);
    CHECK(errors[i] == "");
    CHECK(bad[i] == "");
    // Messages out and in over the rounds, from the topology (not the transport).
    std::uint64_t out = 0, in = 0;
    for (int round = 0; round < rounds; ++round) {
      out += g.topo.send_to(r, static_cast<std::uint64_t>(round)).size();
      in += g.topo.receive_from(r, static_cast<std::uint64_t>(round)).size();
    }
    // Credits go to the senders, come from the receivers.
    const std::uint64_t credits_out = window > 0 ? in : 0, credits_in = window > 0 ? out : 0;
    std::uint64_t hello_out = 0;
    std::uint64_t hello_in = 0;
    for (int j : links[i]) {
      hello_out += kFrameHeaderSize + 48 + g.topo.peers[i].endpoint.size();
      hello_in += kFrameHeaderSize + 48 + g.topo.peers[static_cast<std::size_t>(j)].endpoint.size();
    }
    CHECK(counters[i].bytes_sent ==
          hello_out + out * (kFrameHeaderSize + len) + credits_out * kFrameHeaderSize);
    CHECK(counters[i].bytes_received ==
          hello_in + in * (kFrameHeaderSize + len) + credits_in * kFrameHeaderSize);
    CHECK(counters[i].messages_sent == links[i].size() + out + credits_out);
    CHECK(counters[i].messages_received == links[i].size() + in + credits_in);
    if (g.topo.time_varying() && n > 1) {
      // One peer: exactly one message of wire + 64 bytes each way per round.
      CHECK(out == static_cast<std::uint64_t>(rounds));
      CHECK(in == static_cast<std::uint64_t>(rounds));
    }
  }
}

// A sum all-reduce done by hand with ring_step (reduce-scatter, then all-gather), chunks of
// unequal size, on any topology (ring links are added by the transport).
inline void check_ring_allreduce(const GroupMaker& mk, const std::string& spec, std::size_t d) {
  CAPTURE(spec);
  CAPTURE(d);
  Group g = mk(spec);
  const int n = g.topo.size();
  std::vector<std::vector<float>> result(static_cast<std::size_t>(n));
  auto errors = run_ranks(n, [&](int r) {
    auto t = g.make(r, quick_options());
    std::vector<float> x(d);
    for (std::size_t k = 0; k < d; ++k) x[k] = static_cast<float>(r * 1000 + static_cast<int>(k));
    auto lo = [&](int c) { return d * static_cast<std::size_t>(c) / static_cast<std::size_t>(n); };
    auto chunk = [&](int c) {
      c = ((c % n) + n) % n;
      return std::span<float>(x).subspan(lo(c), lo(c + 1) - lo(c));
    };
    std::vector<float> tmp(d / static_cast<std::size_t>(n) + 1);
    std::uint32_t step = 0;
    for (int s = 0; s < n - 1; ++s, ++step) {
      auto out = chunk(r - s);
      auto in = chunk(r - s - 1);
      std::span<float> buf(tmp.data(), in.size());
      t->ring_step(5, step, std::as_bytes(out), std::as_writable_bytes(buf));
      for (std::size_t k = 0; k < in.size(); ++k) in[k] += buf[k];
    }
    for (int s = 0; s < n - 1; ++s, ++step) {
      auto out = chunk(r - s + 1);
      auto in = chunk(r - s);
      t->ring_step(5, step, std::as_bytes(out), std::as_writable_bytes(in));
    }
    result[static_cast<std::size_t>(r)] = x;
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(errors[static_cast<std::size_t>(r)] == "");
    const auto& x = result[static_cast<std::size_t>(r)];
    REQUIRE(x.size() == d);
    int wrong = 0;
    for (std::size_t k = 0; k < d; ++k) {
      const float want = static_cast<float>(1000 * n * (n - 1) / 2 + n * static_cast<int>(k));
      if (x[k] != want) ++wrong;
    }
    CHECK(wrong == 0);
  }
}

// Two peers with different run settings: both refuse, naming the other and the difference.
inline void check_run_hash_mismatch(const GroupMaker& mk) {
  Group g = mk("ring:2");
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.run_hash = r == 0 ? 0x1111 : 0x2222;
    auto t = g.make(r, o);
    t->handshake();
  });
  for (int r = 0; r < 2; ++r) {
    CAPTURE(errors[static_cast<std::size_t>(r)]);
    const int other = 1 - r;
    CHECK(errors[static_cast<std::size_t>(r)].find("run-settings hash") != std::string::npos);
    CHECK(errors[static_cast<std::size_t>(r)].find(fmt::format(
              "peer {} ({})", other, g.topo.peers[static_cast<std::size_t>(other)].endpoint)) !=
          std::string::npos);
  }
  CHECK(errors[0].find("0000000000002222, ours is 0000000000001111") != std::string::npos);
}

// Two peers of the same run and settings from different launches (a leftover process of an
// earlier launch): both refuse, naming the other as another launch's; the same nonce, or none on
// either side, runs.
inline void check_nonce_mismatch(const GroupMaker& mk) {
  Group g = mk("ring:2");
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.run_nonce = r == 0 ? 0xaaaa : 0xbbbb;
    auto t = g.make(r, o);
    t->handshake();
  });
  for (int r = 0; r < 2; ++r) {
    CAPTURE(errors[static_cast<std::size_t>(r)]);
    const int other = 1 - r;
    CHECK(errors[static_cast<std::size_t>(r)].find(fmt::format(
              "peer {} ({}) belongs to another launch of this run (a leftover process?)", other,
              g.topo.peers[static_cast<std::size_t>(other)].endpoint)) != std::string::npos);
  }
  CHECK(errors[0].find("launch nonce 000000000000bbbb, ours is 000000000000aaaa") !=
        std::string::npos);
  // A launched peer and one started by hand (nonce 0) refuse each other too.
  Group h = mk("ring:2");
  errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.run_nonce = r == 0 ? 0xaaaa : 0;
    h.make(r, o)->handshake();
  });
  CHECK(errors[0].find("started without `gossip launch`") != std::string::npos);
  Group same = mk("ring:2");
  errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.run_nonce = 0xaaaa;
    auto t = same.make(r, o);
    const auto payload = pattern(r, 0, 8);
    t->exchange(0, payload);
  });
  CHECK(errors == std::vector<std::string>{"", ""});
}

// A neighbour that says hello and then goes silent: the other side fails after the timeout with
// the silent peer's rank, endpoint and the round in the message.
inline void check_silent_neighbor(const GroupMaker& mk) {
  Group g = mk("ring:2");
  std::atomic<bool> done{false};
  double waited = 0;
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.timeout = 500ms;
    auto t = g.make(r, o);
    t->handshake();
    if (r == 1) {
      const auto t0 = std::chrono::steady_clock::now();
      while (!done && seconds_since(t0) < 20) std::this_thread::sleep_for(5ms);
      return;
    }
    const auto payload = pattern(0, 7, 100);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      t->exchange(7, payload);
    } catch (...) {
      waited = seconds_since(t0);
      done = true;
      throw;
    }
    done = true;
  });
  CAPTURE(errors[0]);
  CHECK(errors[1] == "");
  CHECK(errors[0].find("peer 1 (" + g.topo.peers[1].endpoint + ")") != std::string::npos);
  CHECK(errors[0].find("round 7") != std::string::npos);
  CHECK(waited >= 0.45);
}

// Added latency: over K rounds between two peers each round costs at least one latency (a
// round's message can leave only after the previous round's arrived).
inline void check_latency(const GroupMaker& mk) {
  Group g = mk("ring:2");
  constexpr int kRounds = 5;
  constexpr double kLatency = 0.05;
  std::vector<double> elapsed(2);
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.link.all.latency = std::chrono::milliseconds(50);
    auto t = g.make(r, o);
    t->handshake();
    const auto payload = pattern(r, 0, 10);
    const auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < kRounds; ++round) {
      const auto& got = t->exchange(static_cast<std::uint64_t>(round), payload);
      if (!same(got.at(0), pattern(1 - r, 0, 10))) throw std::runtime_error("wrong bytes");
    }
    elapsed[static_cast<std::size_t>(r)] = seconds_since(t0);
  });
  for (int r = 0; r < 2; ++r) {
    CHECK(errors[static_cast<std::size_t>(r)] == "");
    CHECK(elapsed[static_cast<std::size_t>(r)] >= (kRounds - 1) * kLatency * 0.99);
  }
}

// Bandwidth: 1 MB per message at 10 MB/s takes at least 0.1 s per round (same argument).
inline void check_bandwidth(const GroupMaker& mk) {
  Group g = mk("ring:2");
  constexpr int kRounds = 3;
  constexpr std::size_t kBytes = 1'000'000;
  std::vector<double> elapsed(2);
  auto errors = run_ranks(2, [&](int r) {
    auto o = quick_options();
    o.link.all.bandwidth_bytes_per_s = 10e6;
    auto t = g.make(r, o);
    t->handshake();
    const auto payload = pattern(r, 0, kBytes);
    const auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < kRounds; ++round) {
      t->exchange(static_cast<std::uint64_t>(round), payload);
    }
    elapsed[static_cast<std::size_t>(r)] = seconds_since(t0);
  });
  for (int r = 0; r < 2; ++r) {
    CHECK(errors[static_cast<std::size_t>(r)] == "");
    CHECK(elapsed[static_cast<std::size_t>(r)] >= (kRounds - 1) * 0.1 * 0.99);
  }
}

// The per-peer NIC (docs/transport.md, "Network model") on a star: the centre, rank 0, has an
// uplink and a downlink of kNicRate; the k = 3 leaves have neither. One exchange of frames of
// kFrameBytes (kNicFrame seconds each through the NIC) and kNicLatency per link:
// - the centre's uplink carries its k copies at once, each at 1/k of the rate: every leaf has its
//   copy no sooner than the centre's send + k * kNicFrame + latency (k * b * 8 / B + latency);
// - the centre's downlink takes the k leaves' frames one after the other: it has them all no
//   sooner than the first leaf's send + k * kNicFrame + latency.
// So the centre's k links share one NIC: more neighbours, not more bandwidth. Real time checks
// lower bounds tightly (the model's times are the earliest possible) and upper bounds loosely
// (kNicSlack: a loaded machine may run late); virtual time is exact (transport_inproc.cpp).
inline constexpr int kNicLeaves = 3;
inline constexpr double kNicRate = 1e6;                 // bytes per second: 8 Mbit/s
inline constexpr std::size_t kNicFrameBytes = 100'000;  // header included: 0.1 s at kNicRate
inline constexpr double kNicFrame = kNicFrameBytes / kNicRate;
inline constexpr auto kNicLatency = std::chrono::milliseconds(10);

inline TransportOptions nic_options(int rank) {
  auto o = quick_options();
  o.link.all.latency = kNicLatency;
  if (rank == 0) {
    o.link.uplink_bytes_per_s = kNicRate;
    o.link.downlink_bytes_per_s = kNicRate;
  }
  return o;
}

inline void check_nic_shared_by_links(const GroupMaker& mk) {
  constexpr double kNicSlack = 0.25;  // seconds a loaded machine may add
  const double latency = std::chrono::duration<double>(kNicLatency).count();
  Group g = mk(fmt::format("star:{}", kNicLeaves + 1));
  const int n = kNicLeaves + 1;
  std::vector<std::uint64_t> sent(static_cast<std::size_t>(n)), done(static_cast<std::size_t>(n));
  std::atomic<int> ready{0};
  auto errors = run_ranks(n, [&](int r) {
    auto t = g.make(r, nic_options(r));
    t->handshake();
    // Everyone in place before anyone sends, so the sends start together.
    ready.fetch_add(1);
    const auto t0 = std::chrono::steady_clock::now();
    while (ready.load() < n && seconds_since(t0) < 20) std::this_thread::yield();
    const auto payload = pattern(r, 0, kNicFrameBytes - kFrameHeaderSize);
    sent[static_cast<std::size_t>(r)] = monotonic_ns();
    const auto& got = t->exchange(0, payload);
    done[static_cast<std::size_t>(r)] = monotonic_ns();
    for (std::size_t k = 0; k < got.size(); ++k)
      if (!same(got[k], pattern(t->neighbors()[k], 0, payload.size())))
        throw std::runtime_error("wrong bytes");
  });
  for (const auto& e : errors) CHECK(e == "");
  const auto seconds = [](std::uint64_t a, std::uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) * 1e-9;
  };
  for (int j = 1; j <= kNicLeaves; ++j) {
    CAPTURE(j);
    const double took = seconds(done[static_cast<std::size_t>(j)], sent[0]);
    CHECK(took >= kNicLeaves * kNicFrame + latency - 1e-4);
    CHECK(took <= kNicLeaves * kNicFrame + latency + kNicSlack);
  }
  const std::uint64_t first_leaf = *std::min_element(sent.begin() + 1, sent.end());
  const double centre = seconds(done[0], first_leaf);
  CHECK(centre >= kNicLeaves * kNicFrame + latency - 1e-4);
  CHECK(centre <= kNicLeaves * kNicFrame + latency + kNicSlack);
}

}  // namespace gossip::net::test
