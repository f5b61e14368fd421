#pragma once
// The CUDA backend of the codecs: the same functors (kernels/ops.hpp) compiled by nvcc and run by
// Thrust's CUDA backend on device buffers, with the same plan (kernels/plan.hpp), so a message
// encoded on the GPU is byte-identical to the host's. Plain C++ header: callers need no CUDA
// headers (streams travel as void*).
//
// Covered on the device: identity, fp16, bf16, qsgd, quantize, terngrad, sign. The sparse codecs
// (topk, randomk, threshold) are host-only for now: constructing a DeviceCodec for them throws.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kernels/codec.hpp"

namespace gossip::kernels::cuda {

// Number of usable CUDA devices; 0 (never an exception) without a driver or a GPU.
int device_count();

class DeviceCodec {
 public:
  explicit DeviceCodec(std::string_view spec, std::span<const std::size_t> tensor_sizes = {});
  ~DeviceCodec();
  DeviceCodec(const DeviceCodec&) = delete;
  DeviceCodec& operator=(const DeviceCodec&) = delete;

  std::string spec() const;
  std::size_t wire_size(std::size_t d) const;

  // x (d floats) and wire (wire_size(d) bytes) are device memory. Synchronises `stream` (a
  // cudaStream_t, null for the default stream) before returning, because the header needs the
  // payload's checksum. Returns the bytes written.
  std::size_t encode(const float* x, std::size_t d, const RngKey& key, std::byte* wire,
                     void* stream = nullptr) const;

  // y (d floats, device) += w * C(x) from a device message of `bytes` bytes; validates the
  // header and checksum first and throws WireError without touching y.
  void decode_accumulate(const std::byte* wire, std::size_t bytes, float w, float* y, std::size_t d,
                         void* stream = nullptr) const;
  void decode(const std::byte* wire, std::size_t bytes, float* y, std::size_t d,
              void* stream = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gossip::kernels::cuda
