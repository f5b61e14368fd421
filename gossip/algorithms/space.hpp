#pragma once
// Where an algorithm keeps its model-sized vectors and runs its element-wise work and its codec:
// the host, or one CUDA GPU (run.device = "cuda"). The algorithms are written once against this
// interface (gossip/algorithms/algorithm.cpp and the files beside it); every loop of their update
// rules is a functor of elementwise.hpp.
//
// The transport stays on the host. On a GPU the codec encodes into device memory and one copy
// brings the message (compressed, not the model) to the host; each neighbour's message is copied
// to the device and decoded there. The CUDA space is built with -fmad=false and the device codecs
// write the host codecs' bytes, so given the same gradients a GPU peer's state is bit-identical to
// a CPU peer's.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "gossip/algorithms/elementwise.hpp"
#include "kernels/codec.hpp"

namespace gossip::algorithms {

// One vector of floats in a space (host or device memory), freed by the function the space gave
// it. Move-only. Its spans are views in that space: host code must not read a device buffer's.
class Buffer {
 public:
  using Free = void (*)(float*) noexcept;
  Buffer() = default;
  Buffer(float* p, std::size_t n, Free free) : p_(p), n_(n), free_(free) {}
  ~Buffer() {
    if (p_ != nullptr) free_(p_);
  }
  Buffer(Buffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), free_(o.free_) {}
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(free_, o.free_);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() { return p_; }
  const float* data() const { return p_; }
  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  operator std::span<float>() { return {p_, n_}; }
  operator std::span<const float>() const { return {p_, n_}; }

 private:
  float* p_ = nullptr;
  std::size_t n_ = 0;
  Free free_ = nullptr;
};

// One codec of an algorithm, running where the algorithm's vectors are. Messages in and out are
// host bytes (what the transport moves); vectors are in the space.
class SpaceCodec {
 public:
  virtual ~SpaceCodec() = default;
  virtual std::string spec() const = 0;
  // Encodes x keyed by `key`; the message stays available through message() until the next
  // encode.
  virtual void encode(std::span<const float> x, const kernels::RngKey& key) = 0;
  // The last message encoded, exactly as long as the codec wrote it (threshold's length varies).
  virtual std::span<const std::byte> message() const = 0;
  // y += w·C(own message); y = C(own message).
  virtual void accumulate_own(float w, std::span<float> y) = 0;
  virtual void decode_own(std::span<float> y) = 0;
  // y += w·C(q); y = C(q), for a neighbour's message q (throws kernels::WireError on a bad one,
  // leaving y untouched).
  virtual void decode_accumulate(std::span<const std::byte> message, float w,
                                 std::span<float> y) = 0;
  virtual void decode(std::span<const std::byte> message, std::span<float> y) = 0;
};

class VectorSpace {
 public:
  virtual ~VectorSpace() = default;
  virtual bool on_device() const = 0;

  // n floats, every one `fill`.
  virtual Buffer alloc(std::size_t n, float fill) = 0;
  // dst = src within the space, host to space, space to host; done when they return. The sizes
  // must match (std::invalid_argument naming the operation otherwise).
  void copy(std::span<const float> src, std::span<float> dst) { transfer(src, dst, "copy"); }
  void upload(std::span<const float> host, std::span<float> dst) { transfer(host, dst, "upload"); }
  void download(std::span<const float> src, std::span<float> host) {
    transfer(src, host, "download");
  }
  // Applies the functor to every index below n; done when this returns.
  virtual void run(const ew::Op& op, std::size_t n) = 0;
  // The codec `spec` (kernels::make_codec's syntax) for vectors of d floats with these tensor
  // boundaries. Throws std::invalid_argument for a bad spec.
  virtual std::unique_ptr<SpaceCodec> make_codec(std::string_view spec,
                                                 std::span<const std::size_t> tensor_sizes,
                                                 std::size_t d) = 0;

 protected:
  // n floats from src to dst, each in host memory or this space's; done when it returns.
  virtual void copy_floats(const float* src, float* dst, std::size_t n) = 0;

 private:
  void transfer(std::span<const float> src, std::span<float> dst, const char* what);
};

// The host: std::allocator memory, plain loops, kernels::make_codec.
std::unique_ptr<VectorSpace> make_host_space();

// True when this build has the CUDA space (nvcc found at configure time).
bool cuda_space_built();
// GPUs the CUDA space can use: 0 (never an exception) without the CUDA build, a driver or a GPU.
int cuda_space_devices();
// GPU `device` (an index among the visible GPUs; made current on this thread). Throws
// std::runtime_error naming the reason when the build has no CUDA space or the GPU is unusable.
std::unique_ptr<VectorSpace> make_cuda_space(int device);

}  // namespace gossip::algorithms
