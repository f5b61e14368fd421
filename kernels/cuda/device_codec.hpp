#pragma once
// The CUDA backend of the codecs, byte-identical to the host's (kernels/codec_host.cpp): the same
// plan (kernels/plan.hpp: header, sizes, checks) and the same element formulas (kernels/ops.hpp),
// run by raw CUDA kernels whose per-thread logic lives in headers shared with the host, where a
// CPU twin runs it and is tested against the host codec (tests/kernels/test_gpu_twins.cpp):
//
//  * identity: cudaMemcpy; fp16/bf16: one thread per pair of elements, one 32-bit store.
//  * qsgd, quantize, terngrad, sign (kernels/pack.hpp): bucket statistics by a warp per
//  4096-element
//    segment in the fixed summation order, then one 128-thread block per 4096-element tile that
//    stages x in shared memory, packs each group of 32 codes into F words (GroupBits<F>) and
//    writes the words coalesced. Decode mirrors it.
//  * topk (kernels/radix_select.hpp): per tensor, a three-pass radix select (11/10/10 bits of the
//    |x| key) finds the k-th key, then a block scan emits key > T plus the lowest-index ties.
//  * randomk (kernels/randomk_parallel.hpp): Floyd's draws all at once, a CUB radix sort marks the
//    first draw of each value, and each draw resolves its collision chain on its own.
//  * threshold: cub::DeviceSelect (stable) of |x| >= tau.
//  * checksum (kernels/crc_combine.hpp): one 256-thread block per 64 KiB block, 256-byte pieces
//    merged with the CRC32C shift in a fixed tree.
//
// Every codec runs on the device; qsgd needs a code width the build has (widths 2, 3, 4, 5, 8, 9:
// s = 1..15 or 64..255). A codec belongs to the device current when it is made (its CRC tables
// live there): call it with that device current. Plain C++ header: callers need no CUDA headers
// (streams travel as void*).

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kernels/codec.hpp"

namespace gossip::kernels::cuda {

// Number of usable CUDA devices; 0 (never an exception) without a driver or a GPU.
int device_count();
// Name of the current device ("" without one).
std::string device_name();

class DeviceCodec {
 public:
  explicit DeviceCodec(std::string_view spec, std::span<const std::size_t> tensor_sizes = {});
  ~DeviceCodec();
  DeviceCodec(const DeviceCodec&) = delete;
  DeviceCodec& operator=(const DeviceCodec&) = delete;

  std::string spec() const;
  // As Codec::wire_size: exact, or for threshold the largest message.
  std::size_t wire_size(std::size_t d) const;

  // x (d floats) and wire (wire_bytes >= wire_size(d) bytes, else std::invalid_argument before
  // anything is written) are device memory. Synchronises `stream` (a cudaStream_t, null for the
  // default stream) before returning, because the header needs the payload's checksum. Returns
  // the bytes written. Any alignment works; a 4-byte aligned wire (every cudaMalloc pointer) gets
  // 32-bit stores.
  std::size_t encode(const float* x, std::size_t d, const RngKey& key, std::byte* wire,
                     std::size_t wire_bytes, void* stream = nullptr) const;

  // y (d floats, device) += w * C(x) from a device message of `bytes` bytes; validates the
  // header, the checksum and (topk, threshold) the indices first and throws WireError without
  // touching y.
  void decode_accumulate(const std::byte* wire, std::size_t bytes, float w, float* y, std::size_t d,
                         void* stream = nullptr) const;
  void decode(const std::byte* wire, std::size_t bytes, float* y, std::size_t d,
              void* stream = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Device memory for callers without CUDA headers (the bench and the tests). Errors throw
// std::runtime_error naming the CUDA call.
struct DeviceFree {
  void operator()(void* p) const noexcept;
};
using DeviceMemory = std::unique_ptr<void, DeviceFree>;
DeviceMemory device_alloc(std::size_t bytes);
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
// cudaMemcpyAsync device to device on `stream`, then waits for it.
void copy_device_to_device(void* dst, const void* src, std::size_t bytes, void* stream = nullptr);
void device_synchronize();
// True when p is device memory (of any GPU), not host, pinned or managed memory.
bool is_device_memory(const void* p);

}  // namespace gossip::kernels::cuda
