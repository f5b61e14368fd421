// CPU and CUDA encodings are byte-identical, and each side decodes the other's messages to the
// same floats, for every codec, whole-vector and per-tensor. Needs a GPU: without one it says so
// and exits 77, which meson reports as SKIP.

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device_codec.hpp"
#include "kernels/wire.hpp"
#include "tests/kernels/reference.hpp"

using namespace gossip::kernels;
namespace r = gossip::kernels::ref;

namespace {

template <class T>
struct DeviceVec {
  T* p = nullptr;
  explicit DeviceVec(std::size_t n) {
    if (n && cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) throw std::runtime_error("cudaMalloc");
  }
  ~DeviceVec() { cudaFree(p); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
};

void require_cuda(cudaError_t e) {
  if (e != cudaSuccess) throw std::runtime_error(cudaGetErrorString(e));
}

const std::vector<std::size_t> kLayout = {5, 0, 1000, 33, 4096, 1, 9000, 70001};

// One spec at one size (layout empty: whole vector), wire at `shift` bytes into its buffer. With
// `ties`, x is rounded to quarters: long runs of equal magnitudes across topk's 16384-element
// chunks.
void check_spec(const char* spec, std::size_t d, const std::vector<std::size_t>& layout,
                std::size_t shift, bool ties = false) {
  CAPTURE(spec);
  CAPTURE(d);
  CAPTURE(layout.size());
  CAPTURE(shift);
  CAPTURE(ties);
  auto x = r::gaussian(d, static_cast<std::uint32_t>(d + 1));
  if (ties)
    for (float& v : x) v = std::nearbyint(v * 4.0f) / 4.0f;
  if (d > 100) {  // ties for topk, a zero and signed zero for sign/quantize, subnormals
    x[10] = x[20];
    x[30] = -x[20];
    x[40] = 0.0f;
    x[41] = -0.0f;
    x[50] = 1e-40f;
    x[51] = -3e-42f;
  }
  const RngKey key{77, 3, (std::uint64_t{1} << 33) + 5};  // the round's high counter bits too
  const auto host = make_codec(spec, layout);
  const cuda::DeviceCodec dev(spec, layout);
  REQUIRE(dev.wire_size(d) == host->wire_size(d));
  std::vector<std::byte> hw(host->wire_size(d));
  hw.resize(host->encode(x, key, hw));

  DeviceVec<float> dx(d), dy(d);
  DeviceVec<std::byte> buf(dev.wire_size(d) + shift);
  std::byte* dw = buf.p + shift;
  // Not zeros: a byte the device fails to write must not pass for the host's zero.
  require_cuda(cudaMemset(buf.p, 0xA5, dev.wire_size(d) + shift));
  require_cuda(cudaMemcpy(dx.p, x.data(), 4 * d, cudaMemcpyHostToDevice));
  CHECK_THROWS_AS(dev.encode(dx.p, d, key, dw, dev.wire_size(d) - 1), std::invalid_argument);
  {  // refused before a byte is written
    std::vector<unsigned char> untouched(dev.wire_size(d) + shift);
    require_cuda(cudaMemcpy(untouched.data(), buf.p, untouched.size(), cudaMemcpyDeviceToHost));
    CHECK(
        std::all_of(untouched.begin(), untouched.end(), [](unsigned char b) { return b == 0xA5; }));
  }
  const std::size_t n = dev.encode(dx.p, d, key, dw, dev.wire_size(d));
  REQUIRE(n == hw.size());
  std::vector<std::byte> gw(n);
  require_cuda(cudaMemcpy(gw.data(), dw, n, cudaMemcpyDeviceToHost));
  CHECK(gw == hw);

  // decode_accumulate on the device of the host's message equals the host's result.
  const auto y0 = r::gaussian(d, 5);
  auto hy = y0;
  host->decode_accumulate(hw, 0.25f, hy);
  require_cuda(cudaMemcpy(dy.p, y0.data(), 4 * d, cudaMemcpyHostToDevice));
  require_cuda(cudaMemcpy(dw, hw.data(), n, cudaMemcpyHostToDevice));
  dev.decode_accumulate(dw, n, 0.25f, dy.p, d);
  std::vector<float> gy(d);
  require_cuda(cudaMemcpy(gy.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost));
  CHECK(r::same_bits(gy, hy));

  // decode (y = C(x)) too.
  auto hd = y0;
  host->decode(hw, hd);
  dev.decode(dw, n, dy.p, d);
  require_cuda(cudaMemcpy(gy.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost));
  CHECK(r::same_bits(gy, hd));

  // A corrupted message is rejected on the device too, leaving y as it was.
  if (n > kHeaderSize) {
    auto bad = hw;
    bad.back() ^= std::byte{1};
    require_cuda(cudaMemcpy(dw, bad.data(), n, cudaMemcpyHostToDevice));
    CHECK_THROWS_AS(dev.decode_accumulate(dw, n, 0.25f, dy.p, d), WireError);
    require_cuda(cudaMemcpy(gy.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost));
    CHECK(r::same_bits(gy, hd));
  }
}

}  // namespace

TEST_CASE("CUDA encodings equal the host's byte for byte") {
  if (cuda::device_count() == 0) {
    MESSAGE("no CUDA device on this machine: CPU/GPU byte identity not checked");
    std::exit(77);  // meson's exit code for a skipped test: reported as SKIP, never as a pass
  }
  std::vector<const char*> specs = {"identity", "fp16", "bf16"};
  specs.insert(specs.end(), std::begin(r::kPackedSpecs), std::end(r::kPackedSpecs));
  // randomk at ratios 0.5 and 1: Floyd's draws collide, so the sort and the chains are exercised.
  for (const char* sparse :
       {"topk:ratio=0.01", "topk:k=7", "topk:ratio=0.5", "randomk:ratio=0.01,unbiased=true",
        "randomk:k=7,unbiased=false", "randomk:ratio=0.5", "randomk:ratio=1,unbiased=true",
        "threshold:tau=1.5"})
    specs.push_back(sparse);
  std::size_t total = 0;
  for (std::size_t n : kLayout) total += n;
  // GOSSIP_CUDA_TEST_QUICK (the compute-sanitizer runs of scripts/gpu-check.sh): no 2^20-element
  // vectors and no tie repeats, which under racecheck would take most of a lent GPU's time.
  const bool quick = std::getenv("GOSSIP_CUDA_TEST_QUICK") != nullptr;
  for (const char* spec : specs) {
    for (std::size_t d : {0u, 1u, 31u, 33u, 1000u, 70001u, 1u << 20})
      if (!quick || d < (1u << 20)) check_spec(spec, d, {}, 0);
    check_spec(spec, total, kLayout, 0);  // layer-wise: each tensor on its own
    check_spec(spec, 70001, {}, 1);       // a wire buffer that is not 4-byte aligned
    if (quick) continue;
    check_spec(spec, 70001, {}, 0, true);
    check_spec(spec, total, kLayout, 0, true);
  }
}

TEST_CASE("the device rejects forged sparse indices under a valid checksum, leaving y alone") {
  if (cuda::device_count() == 0) {
    MESSAGE("no CUDA device on this machine: the device's index check not run");
    std::exit(77);
  }
  const std::size_t d = 100;
  for (const char* spec : {"topk:k=4", "threshold:tau=0.5"}) {
    CAPTURE(spec);
    const auto host = make_codec(spec);
    const cuda::DeviceCodec dev(spec);
    std::vector<std::byte> wire(host->wire_size(d));
    wire.resize(host->encode(r::gaussian(d, 4), {}, wire));
    REQUIRE(wire.size() >= kHeaderSize + 3 * 8);  // at least three entries to forge two of
    DeviceVec<std::byte> dw(wire.size());
    DeviceVec<float> dy(d);
    const auto y0 = r::gaussian(d, 5);
    auto forged = [&](std::uint32_t first, std::uint32_t second) {
      auto w = wire;
      std::memcpy(w.data() + kHeaderSize, &first, 4);
      std::memcpy(w.data() + kHeaderSize + 4, &second, 4);
      seal_message(w);  // a valid checksum over the forged indices
      require_cuda(cudaMemcpy(dw.p, w.data(), w.size(), cudaMemcpyHostToDevice));
      require_cuda(cudaMemcpy(dy.p, y0.data(), 4 * d, cudaMemcpyHostToDevice));
      std::string why = "(accepted)";
      try {
        dev.decode_accumulate(dw.p, w.size(), 1.0f, dy.p, d);
      } catch (const WireError& e) {
        why = e.what();
        std::vector<float> y(d);
        require_cuda(cudaMemcpy(y.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost));
        CHECK(r::same_bits(y, y0));
      }
      return why;
    };
    CHECK(forged(1000, 1001).find("out of range") != std::string::npos);
    CHECK(forged(5, 5).find("strictly increasing") != std::string::npos);
  }
}
