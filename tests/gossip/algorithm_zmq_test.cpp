// The algorithms give bit-identical models over ZeroMQ (ipc:// sockets, peers as threads) and
// over the in-process transport: the transport moves bytes, nothing else.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "algorithm_harness.hpp"
#include "gossip/zmq_transport.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

ga::AlgorithmConfig config_for(const std::string& name) {
  ga::AlgorithmConfig c;
  c.name = name;
  c.lr = 0.05f;
  c.consensus_step = 0.3f;
  c.momentum = 0.5f;
  c.seed = 5;
  if (name == "dpsgd") c.codec = "fp16";
  if (name == "dcd-psgd") c.codec = "qsgd:s=15";
  if (name == "deepsqueeze" || name == "choco-sgd" || name == "relaysum")
    c.codec = "qsgd:s=3,scaled=true";
  if (name == "dga") c.delay = 3;
  if (name == "doublesqueeze") c.codec = "sign";
  return c;
}

}  // namespace

TEST_CASE("ZeroMQ and in-process transports give bit-identical models after 50 rounds") {
  const char* specs[] = {"ring:1",
                         "ring:2",
                         "ring:3",
                         "ring:8",
                         "torus:2x4",
                         "torus:1x3",
                         "erdos-renyi:8,p=0.5,seed=3",
                         "erdos-renyi:3,p=0.9,seed=1",
                         "grid:5",
                         "star:4"};
  int case_id = 0;
  for (const char* text : specs) {
    auto spec = gossip::topology::parse_spec(text);
    for (std::string name : {"dpsgd", "dcd-psgd", "deepsqueeze", "choco-sgd", "relaysum",
                             "allreduce", "dga", "doublesqueeze"}) {
      CAPTURE(text);
      CAPTURE(name);
      if (name == "relaysum" && !gossip::topology::generate_graph(spec).is_tree()) continue;
      // Fresh socket paths per case: a lingering socket of the previous case must not answer.
      spec.endpoint =
          fmt::format("ipc:///tmp/gossip-algo-zmq-{}-{}-{{rank}}", ::getpid(), case_id++);
      const auto topo = gossip::topology::make_topology(spec);
      const gt::DiagonalQuadratic problem(topo.size(), 777, 31, 0.3f);
      const std::vector<float> x0(problem.d, 0.1f);
      const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
        problem.gradient(r, x, g);
      };
      const auto cfg = config_for(name);
      const auto inproc = gt::run_algorithm(cfg, topo, x0, 50, grad);

      gossip::net::TransportOptions options;
      ga::fit_transport_options(cfg, options);
      options.timeout = std::chrono::milliseconds(20000);
      options.connect_timeout = std::chrono::milliseconds(20000);
      // Each peer binds, connects and shakes hands on its own thread, as separate processes do.
      std::vector<std::vector<float>> over_zmq(inproc.size());
      gt::run_peers(topo.size(), [&](int r) {
        gossip::net::ZmqTransport transport(topo, r, options);
        auto algo = ga::make_algorithm(cfg, transport, topo, x0);
        auto g = [&](std::span<const float> x, std::span<float> gr) { grad(r, x, gr); };
        for (int t = 0; t < 50; ++t) algo->step(g);
        const auto p = algo->params();
        over_zmq[static_cast<std::size_t>(r)].assign(p.begin(), p.end());
      });
      // libzmq leaves the socket files of bound ipc endpoints behind.
      for (int r = 0; r < topo.size(); ++r) {
        std::error_code ignored;
        std::filesystem::remove(
            fmt::format("/tmp/gossip-algo-zmq-{}-{}-{}", ::getpid(), case_id - 1, r), ignored);
      }
      bool identical = true;
      for (std::size_t i = 0; i < inproc.size(); ++i)
        identical = identical && std::memcmp(inproc[i].data(), over_zmq[i].data(),
                                             inproc[i].size() * sizeof(float)) == 0;
      CHECK(identical);
      CHECK(std::memcmp(inproc[0].data(), x0.data(), x0.size() * sizeof(float)) != 0);
    }
  }
}
