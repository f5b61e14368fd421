// The CUDA space: an algorithm's vectors in device memory, each element-wise functor of
// elementwise.hpp one grid-stride kernel, the codecs those of kernels/cuda (DeviceCodec). Built
// with -fmad=false, so every functor rounds as the host loop does. Everything runs on the legacy
// default stream and each call waits for its work before returning, so the model's stream (which
// reads the parameters and writes the gradient) never sees a half-done update. Every call first
// makes the space's GPU current: in `gossip simulate` one thread may make a peer's objects and
// another run its rounds.

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <variant>

#include "gossip/algorithms/space.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/device_codec.hpp"

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

template <class F>
void launch(const F& f, std::size_t n) {
  if (n == 0) return;
  constexpr unsigned kThreads = 256;
  const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 1u << 16);
  for_each_index<<<static_cast<unsigned>(blocks), kThreads>>>(f, n);
  GOSSIP_SPACE_CUDA(cudaGetLastError());
  GOSSIP_SPACE_CUDA(cudaStreamSynchronize(nullptr));
}

// Makes `device` current on the calling thread (cheap when it already is).
void use(int device) {
  GOSSIP_SPACE_CUDA(cudaSetDevice(device));
}

void check_sizes(std::size_t src, std::size_t dst, const char* what) {
  if (src != dst)
    throw std::invalid_argument(std::string("CUDA space ") + what + ": source has " +
                                std::to_string(src) + " floats, destination " +
                                std::to_string(dst));
}

void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return;
  GOSSIP_SPACE_CUDA(cudaMemcpy(dst, src, bytes, kind));
}

// Device or pinned host bytes, freed on destruction.
template <bool Pinned>
class Bytes {
 public:
  explicit Bytes(std::size_t n) : n_(n) {
    if (n == 0) return;
    if constexpr (Pinned)
      GOSSIP_SPACE_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p_), n));
    else
      GOSSIP_SPACE_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n));
  }
  ~Bytes() {
    if (p_ == nullptr) return;
    if constexpr (Pinned)
      (void)cudaFreeHost(p_);
    else
      (void)cudaFree(p_);
  }
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  std::byte* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  std::byte* p_ = nullptr;
  std::size_t n_ = 0;
};

class CudaCodec final : public SpaceCodec {
 public:
  CudaCodec(int device, std::string_view spec, std::span<const std::size_t> tensor_sizes,
            std::size_t d)
      : device_(device),
        codec_(spec, tensor_sizes),
        d_(d),
        own_(codec_.wire_size(d)),
        staging_(codec_.wire_size(d)),
        host_(codec_.wire_size(d)) {}

  std::string spec() const override { return codec_.spec(); }
  void encode(std::span<const float> x, const kernels::RngKey& key) override {
    use(device_);
    bytes_ = codec_.encode(x.data(), x.size(), key, own_.get());
    copy_bytes(host_.get(), own_.get(), bytes_, cudaMemcpyDeviceToHost);
  }
  std::span<const std::byte> message() const override { return {host_.get(), bytes_}; }
  void accumulate_own(float w, std::span<float> y) override {
    use(device_);
    codec_.decode_accumulate(own_.get(), bytes_, w, y.data(), y.size());
    GOSSIP_SPACE_CUDA(cudaStreamSynchronize(nullptr));
  }
  void decode_own(std::span<float> y) override {
    use(device_);
    codec_.decode(own_.get(), bytes_, y.data(), y.size());
    GOSSIP_SPACE_CUDA(cudaStreamSynchronize(nullptr));
  }
  void decode_accumulate(std::span<const std::byte> message, float w, std::span<float> y) override {
    use(device_);
    codec_.decode_accumulate(stage(message), message.size(), w, y.data(), y.size());
    GOSSIP_SPACE_CUDA(cudaStreamSynchronize(nullptr));
  }
  void decode(std::span<const std::byte> message, std::span<float> y) override {
    use(device_);
    codec_.decode(stage(message), message.size(), y.data(), y.size());
    GOSSIP_SPACE_CUDA(cudaStreamSynchronize(nullptr));
  }

 private:
  // A neighbour's message copied to the device. No valid message is longer than wire_size(d).
  const std::byte* stage(std::span<const std::byte> message) {
    if (message.size() > staging_.size())
      throw kernels::WireError("oversized message: " + std::to_string(message.size()) + " bytes, " +
                               codec_.spec() + " sends at most " + std::to_string(staging_.size()) +
                               " for " + std::to_string(d_) + " elements");
    copy_bytes(staging_.get(), message.data(), message.size(), cudaMemcpyHostToDevice);
    return staging_.get();
  }

  int device_;
  kernels::cuda::DeviceCodec codec_;
  std::size_t d_;
  Bytes<false> own_;      // this peer's message, device
  Bytes<false> staging_;  // a neighbour's message, device
  Bytes<true> host_;      // this peer's message, pinned host (what the transport sends)
  std::size_t bytes_ = 0;
};

class CudaSpace final : public VectorSpace {
 public:
  explicit CudaSpace(int device) : device_(device) {
    const int visible = kernels::cuda::device_count();
    if (device < 0 || device >= visible)
      throw std::runtime_error("CUDA space: GPU " + std::to_string(device) + " is not visible (" +
                               std::to_string(visible) + " visible)");
    use(device);
    cudaDeviceProp prop{};
    GOSSIP_SPACE_CUDA(cudaGetDeviceProperties(&prop, device));
    name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
  }

  std::string name() const override { return name_; }
  bool on_device() const override { return true; }

  Buffer alloc(std::size_t n, float fill) override {
    if (n == 0) return {};
    use(device_);
    float* p = nullptr;
    GOSSIP_SPACE_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)));
    Buffer b(p, n, [](float* q) noexcept { (void)cudaFree(q); });
    launch(Fill{fill, p}, n);
    return b;
  }
  void copy(std::span<const float> src, std::span<float> dst) override {
    check_sizes(src.size(), dst.size(), "copy");
    use(device_);
    copy_bytes(dst.data(), src.data(), src.size_bytes(), cudaMemcpyDeviceToDevice);
  }
  void upload(std::span<const float> host, std::span<float> dst) override {
    check_sizes(host.size(), dst.size(), "upload");
    use(device_);
    copy_bytes(dst.data(), host.data(), host.size_bytes(), cudaMemcpyHostToDevice);
  }
  void download(std::span<const float> src, std::span<float> host) override {
    check_sizes(src.size(), host.size(), "download");
    use(device_);
    copy_bytes(host.data(), src.data(), src.size_bytes(), cudaMemcpyDeviceToHost);
  }
  void run(const ew::Op& op, std::size_t n) override {
    use(device_);
    std::visit([n](const auto& f) { launch(f, n); }, op);
  }
  std::unique_ptr<SpaceCodec> make_codec(std::string_view spec,
                                         std::span<const std::size_t> tensor_sizes,
                                         std::size_t d) override {
    use(device_);
    return std::make_unique<CudaCodec>(device_, spec, tensor_sizes, d);
  }

 private:
  int device_;
  std::string name_;
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
