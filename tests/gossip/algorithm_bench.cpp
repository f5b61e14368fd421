// Time per round of every algorithm over the in-process transport (peers as threads):
// ring of 8, d floats, a trivial gradient, so what is timed is the algorithm, codec and transport.
// Usage: test_algorithm_bench [d] [rounds] [cpu|cuda]
// With cuda every peer keeps its state on GPU 0 and the gradient is computed on host copies (so
// compute is not timed; encode, decode and update are the device's, wait includes no copy of the
// model, only of the messages).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "algorithm_harness.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

int main(int argc, char** argv) {
  const std::size_t d = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const std::uint64_t rounds = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20;
  const bool cuda = argc > 3 && std::strcmp(argv[3], "cuda") == 0;
  if (argc > 3 && !cuda && std::strcmp(argv[3], "cpu") != 0) {
    std::fprintf(stderr, "test_algorithm_bench: the third argument is cpu or cuda, not '%s'\n",
                 argv[3]);
    return 2;
  }
  if (cuda && ga::cuda_space_devices() == 0) {
    std::fprintf(stderr, "test_algorithm_bench: no CUDA device (or a build without CUDA)\n");
    return 2;
  }
  const auto topo = gt::make_topo("ring:8");
  const std::vector<float> x0(d, 0.5f);
  const gt::PeerGradient grad = [](int r, std::span<const float> x, std::span<float> g) {
    const float c = static_cast<float>(r);
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = x[k] - c;
  };
  struct Case {
    const char* name;
    const char* codec;
  };
  const Case cases[] = {{"dpsgd", "identity"},
                        {"dpsgd", "fp16"},
                        {"dcd-psgd", "identity"},
                        {"dcd-psgd", "qsgd:s=15"},
                        {"deepsqueeze", "qsgd:s=3,scaled=true"},
                        {"choco-sgd", "qsgd:s=3,scaled=true"},
                        {"choco-sgd", "topk:k=10000"},
                        {"allreduce", "identity"}};
  std::printf(
      "ring of 8 peers (threads), d = %zu, %llu rounds, state on %s; per round, rank 0, "
      "ms\n",
      d, static_cast<unsigned long long>(rounds), cuda ? "GPU 0" : "the host");
  std::printf("%-12s %-22s %8s %8s %8s %8s %8s %8s %10s\n", "algorithm", "codec", "total",
              "compute", "encode", "wait", "decode", "update", "KB sent");
  for (const Case& c : cases) {
    ga::AlgorithmConfig cfg;
    cfg.name = c.name;
    cfg.codec = c.codec;
    cfg.lr = 0.01f;
    cfg.consensus_step = 0.1f;
    cfg.cuda_device = cuda ? 0 : -1;
    ga::RoundStats st;
    gt::run_algorithm(cfg, topo, x0, rounds, grad, [&](int r, std::uint64_t t, ga::Algorithm& a) {
      if (r != 0) return;
      if (t == 1)
        st = ga::RoundStats{};  // the first round includes the handshake
      else
        st += a.last_round();
    });
    const double n = static_cast<double>(st.rounds);
    const double total = st.compute_s + st.encode_s + st.wait_s + st.decode_s + st.update_s;
    std::printf("%-12s %-22s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %10.1f\n", c.name, c.codec,
                1e3 * total / n, 1e3 * st.compute_s / n, 1e3 * st.encode_s / n, 1e3 * st.wait_s / n,
                1e3 * st.decode_s / n, 1e3 * st.update_s / n,
                static_cast<double>(st.bytes_sent) / n / 1024.0);
  }
  return 0;
}
