// Algorithm state on a GPU (AlgorithmConfig::cuda_device) against the same run on the host. The
// element-wise functors round alike on both (-fmad=false) and the device codecs write the host
// codecs' bytes, so given the same gradients every state buffer of every peer must be
// bit-identical after every round, for every algorithm and a spread of codecs; a state saved on
// the GPU loads into a host object and goes on alike. Needs a GPU: without one it says so and
// exits 77, which meson reports as SKIP.

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "algorithm_harness.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

void require_gpu() {
  if (ga::cuda_space_devices() == 0) {
    MESSAGE("no CUDA device here (or a build without CUDA): GPU algorithm state not checked");
    std::exit(77);  // meson's exit code for a skipped test: reported as SKIP, never as a pass
  }
}

// Every state buffer of every peer after every round: [round][rank] -> name -> values.
using Snapshots = std::vector<std::vector<std::map<std::string, std::vector<float>>>>;

Snapshots run(ga::AlgorithmConfig config, int cuda_device, const gt::DiagonalQuadratic& problem,
              const gossip::topology::Topology& topo, std::span<const float> x0,
              std::uint64_t rounds) {
  config.cuda_device = cuda_device;
  Snapshots snaps(rounds + 1, std::vector<std::map<std::string, std::vector<float>>>(
                                  static_cast<std::size_t>(topo.size())));
  std::mutex m;
  gt::run_algorithm(
      config, topo, x0, rounds,
      [&](int r, std::span<const float> x, std::span<float> g) { problem.gradient(r, x, g); },
      [&](int rank, std::uint64_t t, ga::Algorithm& a) {
        CHECK(a.on_device() == (cuda_device >= 0));
        std::map<std::string, std::vector<float>> state;
        for (const auto& b : a.state_buffers()) state[std::string(b.name)] = a.state(b.name);
        std::lock_guard lock(m);
        snaps[t][static_cast<std::size_t>(rank)] = std::move(state);
      });
  return snaps;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

ga::AlgorithmConfig config(std::string name, std::string codec) {
  ga::AlgorithmConfig c;
  c.name = std::move(name);
  c.lr = 0.05f;
  c.consensus_step = 0.4f;
  c.codec = std::move(codec);
  c.seed = 29;
  return c;
}

}  // namespace

TEST_CASE("every algorithm's state on the GPU is bit-identical to the host's, round by round") {
  require_gpu();
  struct Case {
    const char* name;
    const char* topology;
    const char* codec;
    float momentum;
    bool quasi_global;
    bool layered;
  };
  const Case cases[] = {
      {"dpsgd", "ring:6", "identity", 0.9f, false, false},
      {"dpsgd", "ring:6", "fp16", 0.0f, false, false},
      {"dcd-psgd", "ring:6", "qsgd:s=15,scaled=true", 0.0f, false, false},
      {"deepsqueeze", "ring:6", "qsgd:s=3,scaled=true,bucket=64", 0.9f, false, true},
      {"choco-sgd", "torus:2x3", "topk:ratio=0.1", 0.9f, true, false},
      {"choco-sgd", "ring:6", "sign", 0.0f, false, true},
      {"choco-sgd", "ring:6", "threshold:tau=0.3", 0.0f, false, false},
      {"choco-sgd", "ring:6", "randomk:ratio=0.2,unbiased=true", 0.0f, false, false},
      {"d2", "ring:6", "identity", 0.0f, false, false},
      {"relaysum", "grid:6", "identity", 0.9f, false, false},
      {"relaysum", "grid:6", "qsgd:s=15,scaled=true,bucket=32", 0.0f, false, false},
      {"allreduce", "ring:6", "identity", 0.9f, false, false},
  };
  const std::uint64_t rounds = 12;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CAPTURE(c.codec);
    const auto topo = gt::make_topo(c.topology);
    const gt::DiagonalQuadratic problem(topo.size(), 3001, 5);
    std::vector<float> x0(problem.d);
    for (std::size_t k = 0; k < x0.size(); ++k) x0[k] = 0.01f * static_cast<float>(k % 97) - 0.4f;
    auto cfg = config(c.name, c.codec);
    cfg.momentum = c.momentum;
    cfg.quasi_global = c.quasi_global;
    cfg.weight_decay = c.momentum > 0.0f ? 1e-3f : 0.0f;
    if (c.layered) cfg.tensor_sizes = {1000, 1, 2000};
    const Snapshots host = run(cfg, -1, problem, topo, x0, rounds);
    const Snapshots gpu = run(cfg, 0, problem, topo, x0, rounds);
    int mismatches = 0;
    for (std::uint64_t t = 1; t <= rounds; ++t)
      for (std::size_t i = 0; i < host[t].size(); ++i)
        for (const auto& [name, values] : host[t][i]) {
          const auto it = gpu[t][i].find(name);
          if (it == gpu[t][i].end() || !same_bits(values, it->second)) {
            if (++mismatches <= 5) MESSAGE("round " << t << " peer " << i << " buffer " << name);
          }
        }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("a state saved on the GPU loads on the host and continues bit for bit") {
  require_gpu();
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(topo.size(), 2048, 9);
  const std::vector<float> x0(problem.d, 0.1f);
  auto cfg = config("choco-sgd", "qsgd:s=7,scaled=true");
  cfg.momentum = 0.9f;
  // Four rounds on the GPU, save; then four more on the GPU (a), or load into the host (b).
  std::vector<std::string> saved(4);
  std::vector<std::vector<float>> a(4), b(4);
  for (int phase = 0; phase < 2; ++phase) {
    gt::InprocNetwork network(topo);
    gt::run_peers(topo.size(), [&](int r) {
      auto c = cfg;
      c.cuda_device = phase == 0 ? 0 : -1;
      auto algo = ga::make_algorithm(c, *network.transports[static_cast<std::size_t>(r)], topo, x0);
      std::vector<float> x(problem.d), g(problem.d);
      auto step = [&] {
        algo->copy_params(x);
        problem.gradient(r, x, g);
        algo->step(g);
      };
      if (phase == 0) {
        for (int t = 0; t < 4; ++t) step();
        std::ostringstream out;
        algo->save(out);
        saved[static_cast<std::size_t>(r)] = out.str();
        for (int t = 0; t < 4; ++t) step();
        a[static_cast<std::size_t>(r)] = algo->state("x");
      } else {
        std::istringstream in(saved[static_cast<std::size_t>(r)]);
        algo->load(in);
        for (int t = 0; t < 4; ++t) step();
        b[static_cast<std::size_t>(r)] = algo->state("x");
      }
    });
  }
  for (std::size_t r = 0; r < a.size(); ++r) CHECK(same_bits(a[r], b[r]));
}
