// The reference the Python package is checked against: the same algorithm, settings and problem
// run in one process by the algorithm tests' harness (peers as threads, in-process transport).
//
//   python_reference CONFIG ROUNDS D SEED OUTDIR
//
// Writes the problem for the Python peers (x0.bin, a-R.bin, c-R.bin: float32) and each peer's
// model after ROUNDS rounds (ref-R.bin). The problem is the harness's DiagonalQuadratic,
// F_i(x) = ½ Σ_k a_ik (x_k − c_ik)², whose gradient a ⊙ (x − c) numpy computes with the same
// float32 roundings.

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "src/runtime/config.hpp"
#include "src/runtime/session.hpp"
#include "tests/gossip/algorithm_harness.hpp"
#include "topology/topology_file.hpp"

namespace {
void write(const std::string& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (!out) throw std::runtime_error(path + ": cannot write");
}
}  // namespace

int main(int argc, char** argv) try {
  using namespace gossip;
  if (argc != 6) {
    std::fprintf(stderr, "usage: python_reference CONFIG ROUNDS D SEED OUTDIR\n");
    return 2;
  }
  const auto config = runtime::load_run_config(argv[1]);
  const auto topo = topology::load_topology_or_spec(config.topology);
  const auto rounds = std::stoull(argv[2]);
  const auto d = std::stoull(argv[3]);
  const auto seed = std::stoull(argv[4]);
  const std::string out = argv[5];
  const algorithms::testing::DiagonalQuadratic problem(topo.size(), d, seed);
  std::vector<float> x0(d);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x0) v = normal(rng);
  write(out + "/x0.bin", x0);
  for (int r = 0; r < topo.size(); ++r) {
    write(out + "/a-" + std::to_string(r) + ".bin", problem.a[static_cast<std::size_t>(r)]);
    write(out + "/c-" + std::to_string(r) + ".bin", problem.c[static_cast<std::size_t>(r)]);
  }
  const auto models =
      algorithms::testing::run_algorithm(runtime::algorithm_config(config, {}), topo, x0, rounds,
                                         [&](int rank, std::span<const float> x,
                                             std::span<float> g) { problem.gradient(rank, x, g); });
  for (int r = 0; r < topo.size(); ++r)
    write(out + "/ref-" + std::to_string(r) + ".bin", models[static_cast<std::size_t>(r)]);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "python_reference: %s\n", e.what());
  return 1;
}
