// One peer of a multi-process transport test: joins a generated topology over ipc:// or tcp://,
// exchanges `rounds` rounds and checks every neighbour's bytes. With --die-after it kills itself
// (SIGKILL: no goodbye, no socket close) after that round, as a crashed peer would. With
// --on-peer-loss continue a lost neighbour is mixed out (its view comes back empty) instead.
// Exit status: 0 all rounds done, 3 TransportError (message on stderr), 4 wrong bytes, 2 usage.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "gossip/zmq_transport.hpp"
#include "tests/gossip/transport_test_util.hpp"

int main(int argc, char** argv) {
  using namespace gossip::net;
  std::string spec = "ring:4";
  std::string endpoint;
  int rank = -1;
  int rounds = 10;
  int die_after = -1;
  long timeout_ms = 1000;
  std::size_t len = 1000;
  bool keep_going = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--spec")
      spec = v;
    else if (k == "--endpoint")
      endpoint = v;
    else if (k == "--rank")
      rank = std::atoi(v);
    else if (k == "--rounds")
      rounds = std::atoi(v);
    else if (k == "--die-after")
      die_after = std::atoi(v);
    else if (k == "--timeout-ms")
      timeout_ms = std::atol(v);
    else if (k == "--on-peer-loss")
      keep_going = std::string_view(v) == "continue";
    else if (k == "--bytes")
      len = static_cast<std::size_t>(std::atoll(v));
    else {
      fmt::print(stderr, "transport_peer: unknown option {}\n", k);
      return 2;
    }
  }
  if (rank < 0 || endpoint.empty()) {
    fmt::print(stderr, "usage: transport_peer --endpoint E --rank R [--spec ring:4] ...\n");
    return 2;
  }
  try {
    const auto topo = test::make_topo(spec, endpoint);
    TransportOptions o;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    o.connect_timeout = std::chrono::seconds(20);
    o.linger = std::chrono::milliseconds(200);
    if (keep_going) o.on_peer_loss = PeerLoss::continue_run;
    ZmqTransport t(topo, rank, o);
    for (int round = 0; round < rounds; ++round) {
      const auto mine = test::pattern(rank, static_cast<std::uint64_t>(round), len);
      const auto list = t.receive_from(static_cast<std::uint64_t>(round));
      const std::vector<int> from(list.begin(), list.end());
      const auto& got = t.exchange(static_cast<std::uint64_t>(round), mine);
      for (std::size_t k = 0; k < got.size(); ++k) {
        if (keep_going && got[k].empty()) continue;  // gone (Transport::departures)
        if (!test::same(got[k], test::pattern(from[k], static_cast<std::uint64_t>(round), len))) {
          fmt::print(stderr, "rank {}: round {}: wrong bytes from rank {}\n", rank, round, from[k]);
          return 4;
        }
      }
      if (round == die_after) std::raise(SIGKILL);
    }
    for (const Departure& d : t.departures())
      fmt::print(stderr, "departed {} from round {}\n", d.rank, d.round);
    fmt::print("ok rank {} rounds {}\n", rank, rounds);
    return 0;
  } catch (const TransportError& e) {
    fmt::print(stderr, "transport_peer rank {}: {}\n", rank, e.what());
    return 3;
  }
}
