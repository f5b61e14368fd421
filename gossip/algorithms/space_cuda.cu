// The CUDA space: an algorithm's vectors in device memory, each element-wise functor of
// elementwise.hpp one grid-stride kernel, the codecs those of kernels/cuda (DeviceCodec). Built
// with -fmad=false, so every functor rounds as the host loop does. Each space has its own
// non-blocking stream (peers sharing a GPU in `gossip simulate` do not wait for each other's
// work), and every call waits for its work on that stream before returning, so the model's stream
// (which reads the parameters and writes the gradient) never sees a half-done update or copy.
// Every call first makes the space's GPU current: one thread may make a peer's objects and
// another run its rounds.

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <variant>

#include "gossip/algorithms/space.hpp"
#include "kernels/cuda/device_codec.hpp"
#include "kernels/cuda/runtime.hpp"

namespace gossip::algorithms {
namespace {

#define GOSSIP_SPACE_CUDA(call) GOSSIP_CUDA_CALL("CUDA space", call)

template <class F>
__global__ void for_each_index(F f, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(blockDim.x) * gridDim.x;
  for (std::size_t k = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += stride)
    f(k);
}

struct Fill {
  float value;
  float* y;
  __device__ void operator()(std::size_t k) const { y[k] = value; }
};

// The GPU and stream a space and its codec work on (the space owns the stream).
struct Gpu {
  int device = 0;
  cudaStream_t stream = nullptr;

  // Makes the device current on the calling thread (cheap when it already is).
  void use() const { GOSSIP_SPACE_CUDA(cudaSetDevice(device)); }
  void sync() const { GOSSIP_SPACE_CUDA(cudaStreamSynchronize(stream)); }
  void* stream_handle() const { return static_cast<void*>(stream); }

  template <class F>
  void launch(const F& f, std::size_t n) const {
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 1u << 16);
    for_each_index<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(f, n);
    GOSSIP_SPACE_CUDA(cudaGetLastError());
    sync();
  }
  // Any direction (unified addressing tells host and device pointers apart); done on return.
  void copy(void* dst, const void* src, std::size_t bytes) const {
    if (bytes == 0) return;
    GOSSIP_SPACE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
    sync();
  }
};

class CudaCodec final : public SpaceCodec {
 public:
  CudaCodec(Gpu gpu, std::string_view spec, std::span<const std::size_t> tensor_sizes,
            std::size_t d)
      : gpu_(gpu),
        codec_(spec, tensor_sizes),
        d_(d),
        own_(codec_.wire_size(d)),
        staging_(codec_.wire_size(d)),
        host_(codec_.wire_size(d)) {}

  std::string spec() const override { return codec_.spec(); }
  void encode(std::span<const float> x, const kernels::RngKey& key) override {
    gpu_.use();
    bytes_ = codec_.encode(x.data(), x.size(), key, own_.get(), own_.size(), gpu_.stream_handle());
    gpu_.copy(host_.get(), own_.get(), bytes_);
  }
  std::span<const std::byte> message() const override { return {host_.get(), bytes_}; }
  void accumulate_own(float w, std::span<float> y) override {
    gpu_.use();
    codec_.decode_accumulate(own_.get(), bytes_, w, y.data(), y.size(), gpu_.stream_handle());
    gpu_.sync();
  }
  void decode_own(std::span<float> y) override {
    gpu_.use();
    codec_.decode(own_.get(), bytes_, y.data(), y.size(), gpu_.stream_handle());
    gpu_.sync();
  }
  void decode_accumulate(std::span<const std::byte> message, float w, std::span<float> y) override {
    gpu_.use();
    codec_.decode_accumulate(stage(message), message.size(), w, y.data(), y.size(),
                             gpu_.stream_handle());
    gpu_.sync();
  }
  void decode(std::span<const std::byte> message, std::span<float> y) override {
    gpu_.use();
    codec_.decode(stage(message), message.size(), y.data(), y.size(), gpu_.stream_handle());
    gpu_.sync();
  }

 private:
  // A neighbour's message copied to the device. No valid message is longer than wire_size(d).
  const std::byte* stage(std::span<const std::byte> message) {
    if (message.size() > staging_.size())
      throw kernels::WireError("oversized message: " + std::to_string(message.size()) + " bytes, " +
                               codec_.spec() + " sends at most " + std::to_string(staging_.size()) +
                               " for " + std::to_string(d_) + " elements");
    gpu_.copy(staging_.get(), message.data(), message.size());
    return staging_.get();
  }

  Gpu gpu_;
  kernels::cuda::DeviceCodec codec_;
  std::size_t d_;
  kernels::cuda::DeviceBuffer<std::byte> own_;      // this peer's message
  kernels::cuda::DeviceBuffer<std::byte> staging_;  // a neighbour's message
  kernels::cuda::PinnedBuffer<std::byte> host_;  // this peer's message (what the transport sends)
  std::size_t bytes_ = 0;
};

class CudaSpace final : public VectorSpace {
 public:
  explicit CudaSpace(int device) {
    const int visible = kernels::cuda::device_count();
    if (device < 0 || device >= visible)
      throw std::runtime_error("CUDA space: GPU " + std::to_string(device) + " is not visible (" +
                               std::to_string(visible) + " visible)");
    gpu_.device = device;
    gpu_.use();
    GOSSIP_SPACE_CUDA(cudaStreamCreateWithFlags(&gpu_.stream, cudaStreamNonBlocking));
  }
  // The algorithm frees its codec and buffers before its space (declaration order).
  ~CudaSpace() override {
    (void)cudaSetDevice(gpu_.device);
    (void)cudaStreamDestroy(gpu_.stream);
  }
  CudaSpace(const CudaSpace&) = delete;
  CudaSpace& operator=(const CudaSpace&) = delete;

  bool on_device() const override { return true; }

  Buffer alloc(std::size_t n, float fill) override {
    if (n == 0) return {};
    gpu_.use();
    float* p = nullptr;
    GOSSIP_SPACE_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)));
    Buffer b(p, n, [](float* q) noexcept { (void)cudaFree(q); });
    gpu_.launch(Fill{fill, p}, n);
    return b;
  }
  void run(const ew::Op& op, std::size_t n) override {
    gpu_.use();
    std::visit([&](const auto& f) { gpu_.launch(f, n); }, op);
  }
  std::unique_ptr<SpaceCodec> make_codec(std::string_view spec,
                                         std::span<const std::size_t> tensor_sizes,
                                         std::size_t d) override {
    gpu_.use();
    return std::make_unique<CudaCodec>(gpu_, spec, tensor_sizes, d);
  }

 protected:
  void copy_floats(const float* src, float* dst, std::size_t n) override {
    gpu_.use();
    gpu_.copy(dst, src, n * sizeof(float));
  }

 private:
  Gpu gpu_;
};

}  // namespace

bool cuda_space_built() {
  return true;
}

int cuda_space_devices() {
  return kernels::cuda::device_count();
}

std::unique_ptr<VectorSpace> make_cuda_space(int device) {
  return std::make_unique<CudaSpace>(device);
}

}  // namespace gossip::algorithms
