// Algorithm state on a GPU (AlgorithmConfig::cuda_device) against the same run on the host. The
// element-wise functors round alike on both (-fmad=false) and the device codecs write the host
// codecs' bytes, so given the same gradients every state buffer of every peer must be
// bit-identical after every round, for every algorithm and a spread of codecs; the gradient
// callback works on device spans as the trainer's does; states saved on either load on either and
// go on alike. Needs a GPU: without one it says so and exits 77, which meson reports as SKIP.

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
#include "kernels/cuda/device_codec.hpp"

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
      for (std::size_t i = 0; i < host[t].size(); ++i) {
        // The same buffers on both sides, x always among them: an empty snapshot proves nothing.
        REQUIRE(host[t][i].count("x") == 1);
        CHECK(gpu[t][i].size() == host[t][i].size());
        for (const auto& [name, values] : host[t][i]) {
          const auto it = gpu[t][i].find(name);
          if (it == gpu[t][i].end() || !same_bits(values, it->second)) {
            if (++mismatches <= 5) MESSAGE("round " << t << " peer " << i << " buffer " << name);
          }
        }
      }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("the gradient callback gets device spans on a GPU and the run matches the host's") {
  require_gpu();
  // What the trainer does: step(GradientFn) with the model reading x and writing g in device
  // memory (here through host copies of its own). D-PSGD asks for overlap, which a GPU ignores.
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(topo.size(), 1500, 3);
  const std::vector<float> x0(problem.d, 0.2f);
  for (const char* name : {"dpsgd", "choco-sgd", "relaysum"}) {
    CAPTURE(name);
    const auto t = gt::make_topo(std::string(name) == "relaysum" ? "grid:4" : "ring:4");
    auto cfg = config(name, std::string(name) == "choco-sgd" ? "qsgd:s=3,scaled=true" : "fp16");
    cfg.overlap_gradient = true;
    std::vector<std::vector<float>> result[2];
    for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
      cfg.cuda_device = on_gpu ? 0 : -1;
      result[on_gpu].resize(static_cast<std::size_t>(t.size()));
      gt::InprocNetwork network(t);
      gt::run_peers(t.size(), [&](int r) {
        auto algo =
            ga::make_algorithm(cfg, *network.transports[static_cast<std::size_t>(r)], t, x0);
        CHECK(algo->on_device() == (on_gpu == 1));
        std::vector<float> hx(problem.d), hg(problem.d);
        auto grad = [&](std::span<const float> x, std::span<float> g) {
          if (!on_gpu) return problem.gradient(r, x, g);
          CHECK(gossip::kernels::cuda::is_device_memory(x.data()));
          CHECK(gossip::kernels::cuda::is_device_memory(g.data()));
          gossip::kernels::cuda::copy_to_host(hx.data(), x.data(), x.size_bytes());
          problem.gradient(r, hx, hg);
          gossip::kernels::cuda::copy_to_device(g.data(), hg.data(), g.size_bytes());
        };
        for (int round = 0; round < 10; ++round) algo->step(grad);
        result[on_gpu][static_cast<std::size_t>(r)] = algo->state("x");
      });
    }
    for (std::size_t r = 0; r < result[0].size(); ++r) CHECK(same_bits(result[0][r], result[1][r]));
  }
}

TEST_CASE("states saved on the GPU or the host load on either and continue bit for bit") {
  require_gpu();
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(topo.size(), 2048, 9);
  const std::vector<float> x0(problem.d, 0.1f);
  auto cfg = config("choco-sgd", "qsgd:s=7,scaled=true");
  cfg.momentum = 0.9f;
  const auto n = static_cast<std::size_t>(topo.size());
  // Runs `rounds` rounds on every peer (state on the GPU or the host), loading `load` first when
  // it is not empty; returns each peer's saved state after `save_after` rounds (or nothing) and
  // its final x.
  struct Out {
    std::vector<std::string> saved;
    std::vector<std::vector<float>> x;
  };
  auto go = [&](bool on_gpu, const std::vector<std::string>& load, int rounds, int save_after) {
    Out out{std::vector<std::string>(n), std::vector<std::vector<float>>(n)};
    gt::InprocNetwork network(topo);
    gt::run_peers(topo.size(), [&](int r) {
      const auto i = static_cast<std::size_t>(r);
      auto c = cfg;
      c.cuda_device = on_gpu ? 0 : -1;
      auto algo = ga::make_algorithm(c, *network.transports[i], topo, x0);
      if (!load.empty()) {
        std::istringstream in(load[i]);
        algo->load(in);
      }
      std::vector<float> x(problem.d), g(problem.d);
      for (int t = 0; t < rounds; ++t) {
        if (t == save_after) {
          std::ostringstream o;
          algo->save(o);
          out.saved[i] = o.str();
        }
        algo->copy_params(x);
        problem.gradient(r, x, g);
        algo->step(g);
      }
      out.x[i] = algo->state("x");
    });
    return out;
  };
  const Out gpu = go(true, {}, 8, 4);    // straight through on the GPU, saved at round 4
  const Out host = go(false, {}, 8, 4);  // the same on the host
  const Out gpu_to_host = go(false, gpu.saved, 4, -1);
  const Out gpu_to_gpu = go(true, gpu.saved, 4, -1);
  const Out host_to_gpu = go(true, host.saved, 4, -1);
  for (std::size_t r = 0; r < n; ++r) {
    CHECK(same_bits(gpu.x[r], host.x[r]));
    CHECK(same_bits(gpu.x[r], gpu_to_host.x[r]));
    CHECK(same_bits(gpu.x[r], gpu_to_gpu.x[r]));
    CHECK(same_bits(gpu.x[r], host_to_gpu.x[r]));
  }
}
