#pragma once
// The CUDA runtime helpers of the host code: GOSSIP_CUDA_CALL(who, call), through which every
// CUDA runtime call reports failure (std::runtime_error "who: call failed: message
// (cudaErrorName)", `who` naming the component: "CUDA codec", "CUDA model", "CUDA space"), and
// CudaBuffer, the one owning buffer of device or pinned host memory. Include with the CUDA
// runtime.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace gossip::kernels::cuda {

[[noreturn]] inline void throw_cuda_error(const char* who, const char* call, cudaError_t err) {
  throw std::runtime_error(std::string(who) + ": " + call + " failed: " + cudaGetErrorString(err) +
                           " (" + cudaGetErrorName(err) + ")");
}

}  // namespace gossip::kernels::cuda

#define GOSSIP_CUDA_CALL(who, call)                                            \
  do {                                                                         \
    const cudaError_t gossip_cuda_err_ = (call);                               \
    if (gossip_cuda_err_ != cudaSuccess)                                       \
      ::gossip::kernels::cuda::throw_cuda_error(who, #call, gossip_cuda_err_); \
  } while (0)

namespace gossip::kernels::cuda {

// n elements of device (or, with Pinned, page-locked host) memory, freed on destruction; errors on
// freeing are ignored, as destructors do not throw. Page-locked staging makes copies true DMA.
template <class T, bool Pinned = false>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  explicit CudaBuffer(std::size_t n) : n_(n) {
    if (n == 0) return;
    if (n > SIZE_MAX / sizeof(T))
      throw std::length_error("CUDA memory: " + std::to_string(n) + " elements do not fit in size_t");
    if constexpr (Pinned)
      GOSSIP_CUDA_CALL("CUDA memory", cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    else
      GOSSIP_CUDA_CALL("CUDA memory", cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
  }
  ~CudaBuffer() {
    if (p_ == nullptr) return;
    if constexpr (Pinned)
      (void)cudaFreeHost(p_);
    else
      (void)cudaFree(p_);
  }
  CudaBuffer(CudaBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};
template <class T>
using DeviceBuffer = CudaBuffer<T, false>;
template <class T>
using PinnedBuffer = CudaBuffer<T, true>;

}  // namespace gossip::kernels::cuda
