#pragma once
// How every CUDA runtime call of the project reports failure: GOSSIP_CUDA_CALL(who, call) throws
// std::runtime_error "who: call failed: message (cudaErrorName)". `who` names the component
// ("CUDA codec", "CUDA model", "CUDA space"). Host code only; include with the CUDA runtime.

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

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
