// CUDA backend: Thrust's CUDA system runs the functors of kernels/ops.hpp on device buffers.
// Built with -fmad=false so every float operation rounds exactly as on the host.

#include <cuda_runtime.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <array>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/device_codec.hpp"
#include "kernels/ops.hpp"
#include "kernels/plan.hpp"

// Every CUDA runtime call goes through this: an error becomes an exception naming the call.
#define GOSSIP_CUDA_CHECK(call)                                               \
  do {                                                                        \
    const cudaError_t gossip_cuda_err_ = (call);                              \
    if (gossip_cuda_err_ != cudaSuccess)                                      \
      throw std::runtime_error(std::string("CUDA error at " __FILE__ ":") +   \
                               std::to_string(__LINE__) + " in " #call ": " + \
                               cudaGetErrorString(gossip_cuda_err_));         \
  } while (0)

namespace gossip::kernels::cuda {
namespace {

struct CudaFree {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
template <class T>
using DevicePtr = std::unique_ptr<T, CudaFree>;

template <class T>
DevicePtr<T> device_alloc(std::size_t n) {
  void* p = nullptr;
  if (n) GOSSIP_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  return DevicePtr<T>(static_cast<T*>(p));
}

cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

template <class F>
void device_for(cudaStream_t s, std::uint64_t n, const F& f) {
  if (n == 0) return;
  thrust::for_each_n(thrust::cuda::par.on(s), thrust::counting_iterator<std::uint64_t>(0), n, f);
  GOSSIP_CUDA_CHECK(cudaGetLastError());
}

// Table-driven CRC32C of one 64 KiB payload block per thread (the same function as the host's).
struct BlockCrc {
  const std::byte* payload;
  std::uint64_t bytes;
  const std::uint32_t* table;
  std::uint32_t* out;
  __host__ __device__ void operator()(std::uint64_t b) const {
    const std::uint64_t off = b * kChecksumBlock;
    const std::uint64_t n = min_u64(kChecksumBlock, bytes - off);
    std::uint32_t c = 0xffffffffu;
    for (std::uint64_t i = 0; i < n; ++i)
      c = (c >> 8) ^ table[(c ^ static_cast<std::uint32_t>(payload[off + i])) & 0xffu];
    out[b] = ~c;
  }
};

std::array<std::uint32_t, 256> crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? 0x82f63b78u : 0u);
    t[i] = c;
  }
  return t;
}

// Code widths compiled for the device. Every width is a set of kernels, and nvcc is slow: the
// device takes qsgd with s = 2^b - 1 for b in {1, 2, 3, 4, 8} (widths 2, 3, 4, 5, 9: the "b-bit
// QSGD" of the papers) and quantize's 1, 2, 4, 8 bits.
constexpr int kDeviceWidths[] = {1, 2, 3, 4, 5, 8, 9};

template <class G, int... Is>
void with_width_impl(int f, G& g, std::integer_sequence<int, Is...>) {
  (void)((f == kDeviceWidths[Is] ? (g(std::integral_constant<int, kDeviceWidths[Is]>{}), true)
                                 : false) ||
         ...);
}
template <class G>
void with_width(int f, G&& g) {
  with_width_impl(f, g, std::make_integer_sequence<int, std::size(kDeviceWidths)>{});
}
bool device_width(int f) {
  for (int w : kDeviceWidths)
    if (w == f) return true;
  return false;
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device / no driver" state
    return 0;
  }
  return n;
}

struct DeviceCodec::Impl {
  CodecPlan plan;
  DevicePtr<std::uint32_t> table;

  Impl(CodecParams p, std::span<const std::size_t> sizes) : plan(p, sizes) {
    if (plan.is_sparse())
      throw std::invalid_argument("codec " + plan.canonical() +
                                  " has no CUDA implementation yet (topk, randomk and threshold "
                                  "run on the host)");
    if (p.id == CodecId::kQsgd && !device_width(static_cast<int>(p.qsgd_width())))
      throw std::invalid_argument("codec " + plan.canonical() +
                                  ": the CUDA build has qsgd for s = 1, 3, 7, 15, 255 only (s = "
                                  "2^b - 1, b in 1, 2, 3, 4, 8)");
    const auto t = crc_table();
    table = device_alloc<std::uint32_t>(256);
    GOSSIP_CUDA_CHECK(cudaMemcpy(table.get(), t.data(), sizeof t, cudaMemcpyHostToDevice));
  }

  // Device copy of the layout arrays (a view into it is what the functors read).
  struct DeviceLayout {
    DevicePtr<std::uint64_t> offsets, base;
    LayoutView view;
  };
  static DeviceLayout upload(const LayoutData& lay, cudaStream_t s) {
    DeviceLayout out;
    out.offsets = device_alloc<std::uint64_t>(lay.offsets.size());
    out.base = device_alloc<std::uint64_t>(lay.bucket_base.size());
    GOSSIP_CUDA_CHECK(cudaMemcpyAsync(out.offsets.get(), lay.offsets.data(), 8 * lay.offsets.size(),
                                      cudaMemcpyHostToDevice, s));
    GOSSIP_CUDA_CHECK(cudaMemcpyAsync(out.base.get(), lay.bucket_base.data(),
                                      8 * lay.bucket_base.size(), cudaMemcpyHostToDevice, s));
    out.view = LayoutView{out.offsets.get(), out.base.get(),
                          static_cast<std::uint32_t>(lay.offsets.size() - 1), lay.bucket};
    return out;
  }

  // Block CRCs of a device payload, brought back to the host.
  std::vector<std::uint32_t> block_crcs(const std::byte* payload, std::uint64_t bytes,
                                        cudaStream_t s) const {
    const std::uint64_t nb = (bytes + kChecksumBlock - 1) / kChecksumBlock;
    std::vector<std::uint32_t> host(nb);
    auto dev = device_alloc<std::uint32_t>(nb);
    device_for(s, nb, BlockCrc{payload, bytes, table.get(), dev.get()});
    if (nb)
      GOSSIP_CUDA_CHECK(cudaMemcpyAsync(host.data(), dev.get(), 4 * nb, cudaMemcpyDeviceToHost, s));
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    return host;
  }

  std::size_t encode(const float* x, std::uint64_t d, const RngKey& key, std::byte* wire,
                     cudaStream_t s) const {
    const CodecParams& p = plan.params();
    std::optional<LayoutData> flat;
    const LayoutData& lay = plan.layout_for(d, flat);
    const DeviceLayout dl = upload(lay, s);
    const std::uint64_t nb = lay.bucket_base.back(), ng = (d + kGroup - 1) / kGroup;
    const std::uint64_t bytes = plan.payload_size(lay, d);
    std::byte* out = wire + kHeaderSize;
    const RngStreamKey noise = make_stream(key.seed, key.peer, key.round, RngStream::kElementNoise);
    BucketedArgs a{dl.view, d, out, 0, false, noise};
    switch (p.id) {
      case CodecId::kIdentity:
        device_for(s, ng, IdentityEncode{x, d, out});
        break;
      case CodecId::kFp16:
        device_for(s, ng, HalfEncode<false>{x, d, out});
        break;
      case CodecId::kBf16:
        device_for(s, ng, HalfEncode<true>{x, d, out});
        break;
      case CodecId::kQsgd:
        device_for(s, nb, BucketStatFn<BucketStat::kL2>{x, dl.view, out});
        a.param = p.s;
        with_width(static_cast<int>(p.qsgd_width()), [&](auto f) {
          device_for(s, ng, QsgdEncode<decltype(f)::value>{a, x, out + 4 * nb});
        });
        break;
      case CodecId::kQuantize:
        device_for(s, nb, BucketStatFn<BucketStat::kMinMax>{x, dl.view, out});
        a.param = (1u << p.bits) - 1u;
        a.flag = p.nearest;
        with_width(static_cast<int>(p.bits), [&](auto f) {
          device_for(s, ng, QuantizeEncode<decltype(f)::value>{a, x, out + 8 * nb});
        });
        break;
      case CodecId::kTerngrad:
        device_for(s, nb, BucketStatFn<BucketStat::kMaxAbs>{x, dl.view, out});
        device_for(s, ng, TerngradEncode{a, x, out + 4 * nb});
        break;
      case CodecId::kSign:
        device_for(s, nb, BucketStatFn<BucketStat::kL1Mean>{x, dl.view, out});
        device_for(s, ng, SignEncode{x, d, out + 4 * nb});
        break;
      default:
        throw std::logic_error("sparse codec reached the device encoder");
    }
    const std::vector<std::uint32_t> crcs = block_crcs(out, bytes, s);
    WireHeader h = plan.header_for(d);
    h.payload_bytes = bytes;
    h.peer = key.peer;
    h.round = key.round;
    std::array<std::byte, kHeaderSize> head;
    store_header(h, head);
    h.checksum = combine_checksum(head, crcs);
    store_header(h, head);
    GOSSIP_CUDA_CHECK(cudaMemcpyAsync(wire, head.data(), kHeaderSize, cudaMemcpyHostToDevice, s));
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    return kHeaderSize + bytes;
  }

  template <DecodeMode kMode>
  void decode(const std::byte* wire, std::uint64_t bytes, float w, float* y, std::uint64_t d,
              cudaStream_t s) const {
    const CodecParams& p = plan.params();
    std::optional<LayoutData> flat;
    const LayoutData& lay = plan.layout_for(d, flat);
    std::array<std::byte, kHeaderSize> head{};
    if (bytes >= kHeaderSize) {
      GOSSIP_CUDA_CHECK(cudaMemcpyAsync(head.data(), wire, kHeaderSize, cudaMemcpyDeviceToHost, s));
      GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    const WireHeader h = plan.check_header(head, bytes, d, lay);
    const std::byte* in = wire + kHeaderSize;
    if (combine_checksum(head, block_crcs(in, h.payload_bytes, s)) != h.checksum)
      plan.reject("checksum mismatch: message corrupted");
    const DeviceLayout dl = upload(lay, s);
    const std::uint64_t nb = lay.bucket_base.back(), ng = (d + kGroup - 1) / kGroup;
    BucketedArgs a{dl.view, d, in, 0, false, {}};
    switch (p.id) {
      case CodecId::kIdentity:
        device_for(s, ng, IdentityDecode<kMode>{in, d, w, y});
        break;
      case CodecId::kFp16:
        device_for(s, ng, HalfDecode<false, kMode>{in, d, w, y});
        break;
      case CodecId::kBf16:
        device_for(s, ng, HalfDecode<true, kMode>{in, d, w, y});
        break;
      case CodecId::kQsgd:
        a.param = p.s;
        a.flag = p.scaled;
        with_width(static_cast<int>(p.qsgd_width()), [&](auto f) {
          device_for(s, ng, QsgdDecode<decltype(f)::value, kMode>{a, in + 4 * nb, w, y});
        });
        break;
      case CodecId::kQuantize:
        a.param = (1u << p.bits) - 1u;
        with_width(static_cast<int>(p.bits), [&](auto f) {
          device_for(s, ng, QuantizeDecode<decltype(f)::value, kMode>{a, in + 8 * nb, w, y});
        });
        break;
      case CodecId::kTerngrad:
        device_for(s, ng, TerngradDecode<kMode>{a, in + 4 * nb, w, y});
        break;
      case CodecId::kSign:
        device_for(s, ng, SignDecode<kMode>{a, in + 4 * nb, w, y});
        break;
      default:
        throw std::logic_error("sparse codec reached the device decoder");
    }
    // The layout arrays are freed on return: finish the work that reads them first.
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
  }
};

DeviceCodec::DeviceCodec(std::string_view spec, std::span<const std::size_t> tensor_sizes)
    : impl_(std::make_unique<Impl>(parse_spec(spec), tensor_sizes)) {}
DeviceCodec::~DeviceCodec() = default;

std::string DeviceCodec::spec() const {
  return impl_->plan.canonical();
}

std::size_t DeviceCodec::wire_size(std::size_t d) const {
  std::optional<LayoutData> flat;
  return kHeaderSize + impl_->plan.payload_size(impl_->plan.layout_for(d, flat), d);
}

std::size_t DeviceCodec::encode(const float* x, std::size_t d, const RngKey& key, std::byte* wire,
                                void* stream) const {
  return impl_->encode(x, d, key, wire, as_stream(stream));
}

void DeviceCodec::decode_accumulate(const std::byte* wire, std::size_t bytes, float w, float* y,
                                    std::size_t d, void* stream) const {
  impl_->decode<DecodeMode::kAccumulate>(wire, bytes, w, y, d, as_stream(stream));
}

void DeviceCodec::decode(const std::byte* wire, std::size_t bytes, float* y, std::size_t d,
                         void* stream) const {
  impl_->decode<DecodeMode::kAssign>(wire, bytes, 1.0f, y, d, as_stream(stream));
}

}  // namespace gossip::kernels::cuda
