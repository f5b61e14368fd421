// The CUDA model agrees with the CPU model: on random batches the loss and every gradient entry
// within float tolerance, and on a test set the same accuracy (to one sample) and loss, for softmax
// regression and MLPs. Needs a GPU: without one it says so and exits 77, which meson reports as
// SKIP, never as a pass. With parameters and gradient in device memory (as the trainer passes them
// when the algorithm's state is on the GPU) the bits equal those of host spans.
//
// Tolerances (both backends compute in fp32 with fp64 softmax; only the order of the sgemm sums
// differs):
//   loss:            |gpu − cpu| ≤ 1e-5 · max(1, |cpu|)
//   gradient entry:  |gpu_k − cpu_k| ≤ 5e-5 · max(1e-2, max_j |cpu_j|) + 1e-3 · |cpu_k|
//   gradient norm:   ‖gpu − cpu‖₂ ≤ 1e-4 · ‖cpu‖₂
//   evaluation:      correct predictions differ by at most 1, loss as above.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device_codec.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/data.hpp"
#include "src/runtime/model.hpp"
#include "src/runtime/trainer.hpp"

using namespace gossip::runtime;

namespace {

void require_gpu() {
  std::string why;
  if (cuda_device_count(&why) == 0) {
    MESSAGE("no CUDA device on this machine (" << why << "): CPU/CUDA model agreement not checked");
    std::exit(77);  // meson's exit code for a skipped test: reported as SKIP, never as a pass
  }
}

struct Case {
  std::size_t inputs;
  std::vector<std::size_t> hidden;
  std::size_t classes;
  std::size_t max_batch;
  std::vector<std::size_t> batch_sizes;
};

void compare_gradients(const std::vector<float>& cpu, const std::vector<float>& gpu) {
  REQUIRE(cpu.size() == gpu.size());
  float scale = 1e-2f;
  for (float v : cpu) scale = std::max(scale, std::abs(v));
  double diff2 = 0.0, norm2 = 0.0, worst = 0.0;
  std::size_t bad = 0, worst_k = 0;
  for (std::size_t k = 0; k < cpu.size(); ++k) {
    const double d = std::abs(static_cast<double>(gpu[k]) - cpu[k]);
    diff2 += d * d;
    norm2 += static_cast<double>(cpu[k]) * cpu[k];
    const double tol = 5e-5 * scale + 1e-3 * std::abs(cpu[k]);
    if (d > tol) ++bad;
    if (d / tol > worst) {
      worst = d / tol;
      worst_k = k;
    }
  }
  CAPTURE(worst_k);
  CAPTURE(cpu[worst_k]);
  CAPTURE(gpu[worst_k]);
  CAPTURE(worst);
  CHECK(bad == 0);
  CHECK(std::sqrt(diff2) <= 1e-4 * std::sqrt(norm2));
}

}  // namespace

TEST_CASE("CUDA and CPU models agree on loss, gradient and evaluation") {
  require_gpu();
  const std::vector<Case> cases{
      {20, {}, 4, 64, {1, 17, 64, 33}},            // softmax regression
      {40, {32}, 7, 64, {5, 64, 40}},              // one hidden layer
      {30, {24, 16}, 5, 128, {128, 3, 77}},        // two hidden layers
      {784, {256, 128}, 10, 256, {256, 32, 200}},  // the Fashion-MNIST MLP's shape
      {784, {}, 10, 256, {256, 1}},                // Fashion-MNIST softmax regression
  };
  for (const auto& cs : cases) {
    CAPTURE(cs.inputs);
    CAPTURE(cs.hidden.size());
    // 2500 test rows: more than one evaluation chunk of the CUDA model (2048 rows).
    const auto tt = synthetic_blobs(cs.inputs, static_cast<int>(cs.classes), 1000, 2500,
                                    cs.inputs * 31 + cs.hidden.size());
    Mlp cpu(cs.inputs, cs.hidden, cs.classes, cs.max_batch);
    auto gpu = make_cuda_mlp(cs.inputs, cs.hidden, cs.classes, cs.max_batch, 0);
    CHECK(gpu->device().starts_with("cuda:0"));
    REQUIRE(gpu->tensor_sizes() == cpu.tensor_sizes());
    std::vector<float> x(cpu.size()), x_gpu(cpu.size());
    cpu.init(x, 11);
    gpu->init(x_gpu, 11);
    CHECK(x == x_gpu);  // one init for both backends
    // Non-zero biases and a shifted point, so ReLUs are exercised away from the init.
    std::mt19937_64 rng(5);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    for (auto& v : x) v += noise(rng);

    for (std::size_t rows : cs.batch_sizes) {
      CAPTURE(rows);
      std::vector<std::size_t> batch(rows);
      std::uniform_int_distribution<std::size_t> pick(0, tt.train.size() - 1);
      for (auto& b : batch) b = pick(rng);  // random rows, repeats allowed
      std::vector<float> g_cpu(cpu.size()), g_gpu(cpu.size(), -1.0f), g_again(cpu.size());
      const double l_cpu = cpu.loss_grad(x, tt.train, batch, g_cpu);
      const double l_gpu = gpu->loss_grad(x, tt.train, batch, g_gpu);
      CHECK(std::abs(l_gpu - l_cpu) <= 1e-5 * std::max(1.0, std::abs(l_cpu)));
      compare_gradients(g_cpu, g_gpu);
      // The same call again gives the same bits (no atomics in the sums, buffers reused).
      const double l_again = gpu->loss_grad(x, tt.train, batch, g_again);
      CHECK(l_again == l_gpu);
      CHECK(g_again == g_gpu);
    }

    const auto e_cpu = cpu.evaluate(x, tt.test);
    const auto e_gpu = gpu->evaluate(x, tt.test);
    CHECK(e_gpu.samples == e_cpu.samples);
    const double n = static_cast<double>(e_cpu.samples);
    CHECK(std::abs(e_gpu.accuracy - e_cpu.accuracy) * n <= 1.0 + 1e-9);
    CHECK(std::abs(e_gpu.loss - e_cpu.loss) <= 1e-5 * std::max(1.0, std::abs(e_cpu.loss)));
    // A data set smaller than a batch, and an empty one.
    const std::vector<std::size_t> few{0, 1, 2};
    const auto small = tt.test.subset(few);
    const auto s_cpu = cpu.evaluate(x, small), s_gpu = gpu->evaluate(x, small);
    CHECK(std::abs(s_gpu.accuracy - s_cpu.accuracy) * 3.0 <= 1.0 + 1e-9);
    CHECK(gpu->evaluate(x, Dataset{cs.inputs, static_cast<int>(cs.classes), {}, {}, {}}).samples ==
          0);
  }
}

TEST_CASE("CUDA model: argument errors, and plain SGD learns on the GPU") {
  require_gpu();
  const auto tt = synthetic_blobs(20, 4, 2000, 500, 3);
  auto m = make_cuda_mlp(20, {32}, 4, 64, 0);
  std::vector<float> x(m->size()), g(m->size());
  m->init(x, 1);
  const std::vector<std::size_t> too_many(65, 0);
  CHECK_THROWS_AS(m->loss_grad(x, tt.train, too_many, g), std::invalid_argument);
  CHECK_THROWS_AS(m->loss_grad(x, tt.train, {}, g), std::invalid_argument);
  std::vector<float> short_grad(m->size() - 1);
  const std::vector<std::size_t> one{0};
  CHECK_THROWS_AS(m->loss_grad(x, tt.train, one, short_grad), std::invalid_argument);
  CHECK_THROWS_AS(make_cuda_mlp(20, {}, 4, 64, cuda_device_count()), std::invalid_argument);

  const double before = m->evaluate(x, tt.test).loss;
  std::vector<std::size_t> idx(tt.train.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  for (int epoch = 0; epoch < 3; ++epoch)
    for (std::size_t s = 0; s + 32 <= idx.size(); s += 32) {
      m->loss_grad(x, tt.train, std::span(idx).subspan(s, 32), g);
      for (std::size_t k = 0; k < x.size(); ++k) x[k] -= 0.05f * g[k];
    }
  const auto e = m->evaluate(x, tt.test);
  CHECK(e.loss < before);
  CHECK(e.accuracy > 0.95);
}

TEST_CASE("make_model with run.device = cuda gives the CUDA backend") {
  require_gpu();
  auto c = parse_run_config(
      "[topology]\nfile = \"ring:2\"\n[run]\ndevice = \"cuda\"\n[model]\nhidden = [8]\n", "t.toml");
  const auto tt = synthetic_blobs(6, 3, 40, 10, 5);
  CHECK_NOTHROW(check_device(c));
  const auto m = make_model(c, tt.train, 0);
  CHECK(m->device().starts_with("cuda:0"));
  CHECK(m->describe() == "mlp 6-8-3");
}

TEST_CASE("CUDA model: parameters and gradient in device memory give the host spans' bits") {
  // What the trainer passes when the algorithm's state lives on the same GPU.
  require_gpu();
  namespace kc = gossip::kernels::cuda;
  const auto tt = synthetic_blobs(20, 4, 500, 200, 7);
  auto m = make_cuda_mlp(20, {16, 8}, 4, 64, 0);
  const std::size_t n = m->size();
  std::vector<float> x(n), g_host(n), g_back(n);
  m->init(x, 3);
  auto dx = kc::device_alloc(n * sizeof(float));
  auto dg = kc::device_alloc(n * sizeof(float));
  kc::copy_to_device(dx.get(), x.data(), n * sizeof(float));
  // NaN where the gradient goes: an element the in-place write misses cannot compare equal.
  const std::vector<float> nans(n, std::numeric_limits<float>::quiet_NaN());
  kc::copy_to_device(dg.get(), nans.data(), n * sizeof(float));
  const std::span<const float> x_dev(static_cast<const float*>(dx.get()), n);
  const std::span<float> g_dev(static_cast<float*>(dg.get()), n);
  std::vector<std::size_t> batch(48);
  std::iota(batch.begin(), batch.end(), std::size_t{100});
  const double loss_host = m->loss_grad(x, tt.train, batch, g_host);
  const double loss_dev = m->loss_grad(x_dev, tt.train, batch, g_dev);
  kc::copy_to_host(g_back.data(), dg.get(), n * sizeof(float));
  CHECK(loss_dev == loss_host);
  CHECK(std::equal(g_host.begin(), g_host.end(), g_back.begin()));
  const auto e_host = m->evaluate(x, tt.test);
  const auto e_dev = m->evaluate(x_dev, tt.test);
  CHECK(e_dev.loss == e_host.loss);
  CHECK(e_dev.accuracy == e_host.accuracy);
}
