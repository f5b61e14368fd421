// CPU and CUDA encodings are byte-identical, and each side decodes the other's messages to the
// same floats. Needs a GPU: without one it says so and exits 77, which meson reports as SKIP.

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
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

}  // namespace

TEST_CASE("CUDA encodings equal the host's byte for byte") {
  if (cuda::device_count() == 0) {
    MESSAGE("no CUDA device on this machine: CPU/GPU byte identity not checked");
    std::exit(77);  // meson's exit code for a skipped test: reported as SKIP, never as a pass
  }
  const char* specs[] = {"identity",
                         "fp16",
                         "bf16",
                         "qsgd:s=3,bucket=512",
                         "qsgd:s=15,scaled=true",
                         "qsgd:s=255,bucket=4096",
                         "qsgd:s=7,bucket=100",
                         "quantize:bits=2",
                         "quantize:bits=8,rounding=nearest,bucket=33",
                         "terngrad:bucket=64",
                         "sign:bucket=512",
                         "sign"};
  for (const char* spec : specs) {
    for (std::size_t d : {0u, 1u, 33u, 1000u, 70001u, 1u << 20}) {
      CAPTURE(spec);
      CAPTURE(d);
      const auto x = r::gaussian(d, static_cast<std::uint32_t>(d + 1));
      const RngKey key{77, 3, 12345};
      const auto host = make_codec(spec);
      const cuda::DeviceCodec dev(spec);
      REQUIRE(dev.wire_size(d) == host->wire_size(d));
      std::vector<std::byte> hw(host->wire_size(d));
      hw.resize(host->encode(x, key, hw));

      DeviceVec<float> dx(d), dy(d);
      DeviceVec<std::byte> dw(hw.size());
      cudaMemcpy(dx.p, x.data(), 4 * d, cudaMemcpyHostToDevice);
      const std::size_t n = dev.encode(dx.p, d, key, dw.p);
      REQUIRE(n == hw.size());
      std::vector<std::byte> gw(n);
      cudaMemcpy(gw.data(), dw.p, n, cudaMemcpyDeviceToHost);
      CHECK(gw == hw);

      // decode_accumulate on the device of the host's message equals the host's result.
      const auto y0 = r::gaussian(d, 5);
      auto hy = y0;
      host->decode_accumulate(hw, 0.25f, hy);
      cudaMemcpy(dy.p, y0.data(), 4 * d, cudaMemcpyHostToDevice);
      cudaMemcpy(dw.p, hw.data(), n, cudaMemcpyHostToDevice);
      dev.decode_accumulate(dw.p, n, 0.25f, dy.p, d);
      std::vector<float> gy(d);
      cudaMemcpy(gy.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost);
      CHECK(r::same_bits(gy, hy));

      // A corrupted message is rejected on the device too, leaving y as it was.
      if (n > kHeaderSize) {
        auto bad = hw;
        bad.back() ^= std::byte{1};
        cudaMemcpy(dw.p, bad.data(), n, cudaMemcpyHostToDevice);
        CHECK_THROWS_AS(dev.decode_accumulate(dw.p, n, 0.25f, dy.p, d), WireError);
        cudaMemcpy(gy.data(), dy.p, 4 * d, cudaMemcpyDeviceToHost);
        CHECK(r::same_bits(gy, hy));
      }
    }
  }
}
