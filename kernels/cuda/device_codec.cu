// CUDA backend: raw kernels over the shared per-thread logic of kernels/pack.hpp (packed codecs),
// radix_select.hpp (topk), randomk_parallel.hpp (randomk) and crc_combine.hpp (checksums), plus CUB
// for sorting, scans and stream compaction. Built with -fmad=false so every float operation rounds
// exactly as on the host. Every kernel launches on the caller's stream; temporaries are
// stream-ordered allocations (cudaMallocAsync) freed on the same stream. The layout's small arrays
// (offsets, bucket and segment bases, topk chunks, randomk bases and scales) are uploaded once per
// device and vector size and kept (Impl::tables).

#include <cuda_runtime.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/crc_combine.hpp"
#include "kernels/cuda/device_codec.hpp"
#include "kernels/cuda/runtime.hpp"
#include "kernels/ops.hpp"
#include "kernels/pack.hpp"
#include "kernels/plan.hpp"
#include "kernels/radix_select.hpp"
#include "kernels/randomk_parallel.hpp"

#define GOSSIP_CUDA_CHECK(call) GOSSIP_CUDA_CALL("CUDA codec", call)
// After every kernel launch: a bad configuration shows up here.
#define GOSSIP_LAUNCH_CHECK() GOSSIP_CUDA_CHECK(cudaGetLastError())

namespace gossip::kernels::cuda {
namespace {

using tiles::kTileThreads;

cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

// Stream-ordered device buffer: allocated and freed on one stream.
template <class T>
class DevBuf {
 public:
  DevBuf(std::size_t n, cudaStream_t s) : s_(s) {
    if (n) GOSSIP_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), s));
  }
  ~DevBuf() {
    if (p_) (void)cudaFreeAsync(p_, s_);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  cudaStream_t s_;
};

constexpr unsigned kThreads = 256;

unsigned blocks_for(std::uint64_t n, std::uint64_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

bool aligned4(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 4 == 0;
}

// ---- checksum: one block per 64 KiB payload block -----------------------------------------------
__global__ void __launch_bounds__(kCrcThreads)
    crc_blocks_kernel(const std::byte* payload, std::uint64_t bytes, const std::uint32_t* table,
                      const std::uint32_t* pow2, std::uint32_t* out) {
  __shared__ std::uint32_t tab[256], p2[64], crc[kCrcThreads], plen[kCrcThreads];
  const std::uint32_t t = threadIdx.x;
  tab[t] = table[t];  // kCrcThreads == 256
  if (t < 64) p2[t] = pow2[t];
  __syncthreads();
  const std::uint64_t off = static_cast<std::uint64_t>(blockIdx.x) * kChecksumBlock;
  crc_piece(tab, payload + off, min_u64(kChecksumBlock, bytes - off), t, crc, plen);
  __syncthreads();
  for (std::uint32_t s = 1; s < kCrcThreads; s *= 2) {
    crc_merge(p2, s, t, crc, plen);
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = crc[0];
}
static_assert(kCrcThreads == 256 && kCrcThreads * kCrcPiece == kChecksumBlock);

// ---- bucket statistics --------------------------------------------------------------------------
constexpr unsigned kWarpsPerBlock = kThreads / 32;

// Warp per segment: lane j sums elements j, j+32, .. in order, lanes fold 16, 8, 4, 2, 1.
template <bool kSquare>
__global__ void segment_sum_kernel(const float* x, LayoutView v, const std::uint64_t* seg_base,
                                   std::uint64_t nseg, double* part) {
  const std::uint64_t s =
      static_cast<std::uint64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (s >= nseg) return;  // whole warps leave together
  const std::uint32_t lane = threadIdx.x % 32;
  std::uint64_t bucket, begin, len;
  tiles::segment_range(v, seg_base, s, bucket, begin, len);
  double acc = 0.0;
  for (std::uint64_t e = lane; e < len; e += 32) {
    const double xv = static_cast<double>(x[begin + e]);
    acc += kSquare ? xv * xv : (xv < 0 ? -xv : xv);
  }
  for (int w = 16; w >= 1; w /= 2) acc += __shfl_down_sync(0xffffffffu, acc, w);
  if (lane == 0) part[s] = acc;
}

__device__ tiles::Extreme shfl_extreme(tiles::Extreme e, int w) {
  return tiles::Extreme{__shfl_down_sync(0xffffffffu, e.v, w),
                        __shfl_down_sync(0xffffffffu, static_cast<unsigned long long>(e.i), w)};
}

// Warp per segment: (value, index) extremes, NaN skipped, ties to the lower index (order-free).
template <bool kAbs>
__global__ void segment_extreme_kernel(const float* x, LayoutView v, const std::uint64_t* seg_base,
                                       std::uint64_t nseg, tiles::Extreme* lo, tiles::Extreme* hi) {
  const std::uint64_t s =
      static_cast<std::uint64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (s >= nseg) return;
  const std::uint32_t lane = threadIdx.x % 32;
  std::uint64_t bucket, begin, len;
  tiles::segment_range(v, seg_base, s, bucket, begin, len);
  tiles::Extreme a{0.0f, tiles::kNoIndex}, b{0.0f, tiles::kNoIndex};
  for (std::uint64_t e = lane; e < len; e += 32) {
    const float xv = kAbs ? std::fabs(x[begin + e]) : x[begin + e];
    a = tiles::pick_extreme<false>(a, tiles::extreme_of(xv, begin + e));
    b = tiles::pick_extreme<true>(b, tiles::extreme_of(xv, begin + e));
  }
  for (int w = 16; w >= 1; w /= 2) {
    a = tiles::pick_extreme<false>(a, shfl_extreme(a, w));
    b = tiles::pick_extreme<true>(b, shfl_extreme(b, w));
  }
  if (lane == 0) {
    lo[s] = a;
    hi[s] = b;
  }
}

// Thread per bucket: its segments in order, then the table entry as BucketStatFn writes it.
template <BucketStat kStat>
__global__ void bucket_finish_kernel(const float* x, LayoutView v, const std::uint64_t* seg_base,
                                     const double* sum, const tiles::Extreme* lo,
                                     const tiles::Extreme* hi, std::byte* table) {
  const std::uint64_t j = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= v.buckets()) return;
  std::uint64_t first, count, begin, end;
  tiles::bucket_segments(v, seg_base, j, first, count, begin, end);
  if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
    double s = 0.0;
    for (std::uint64_t q = 0; q < count; ++q) s += sum[first + q];
    store_le<float>(table + 4 * j, BucketStatFn<kStat>::finish(s, end - begin));
  } else {
    tiles::Extreme a{0.0f, tiles::kNoIndex}, b{0.0f, tiles::kNoIndex};
    for (std::uint64_t q = 0; q < count; ++q) {
      a = tiles::pick_extreme<false>(a, lo[first + q]);
      b = tiles::pick_extreme<true>(b, hi[first + q]);
    }
    if constexpr (kStat == BucketStat::kMaxAbs) {
      store_le<float>(table + 4 * j, b.i == tiles::kNoIndex ? 0.0f : b.v);
    } else {
      const MinMax mm = tiles::finish_minmax(a, b, x[begin]);
      store_le<float>(table + 8 * j, mm.lo);
      store_le<float>(table + 8 * j + 4, mm.hi);
    }
  }
}

// ---- packed codes: one block per 4096-element tile ----------------------------------------------
template <int F, class Codes>
__global__ void __launch_bounds__(kTileThreads)
    encode_tiles_kernel(Codes codes, const float* x, std::uint64_t d, std::byte* stream,
                        std::uint64_t bytes, bool aligned) {
  __shared__ float xs[tiles::kTileXSlots];
  __shared__ std::uint32_t ws[kTileThreads * tiles::kWordStride<F>];
  const std::uint64_t tile = blockIdx.x;
  const std::uint32_t t = threadIdx.x;
  tiles::load_x(x, d, tile, t, xs);
  __syncthreads();
  tiles::pack_group<F>(codes, d, tile, t, xs, ws);
  __syncthreads();
  tiles::store_words<F>(stream, bytes, tile, t, ws, aligned);
}

template <int F, DecodeMode kMode, class Values>
__global__ void __launch_bounds__(kTileThreads)
    decode_tiles_kernel(Values values, const std::byte* stream, std::uint64_t bytes,
                        std::uint64_t d, float w, float* y, bool aligned) {
  __shared__ float vs[tiles::kTileXSlots];
  __shared__ std::uint32_t ws[kTileThreads * tiles::kWordStride<F>];
  const std::uint64_t tile = blockIdx.x;
  const std::uint32_t t = threadIdx.x;
  tiles::load_words<F>(stream, bytes, tile, t, ws, aligned);
  __syncthreads();
  tiles::unpack_group<F>(values, d, tile, t, ws, vs);
  __syncthreads();
  tiles::emit_tile<kMode>(y, d, tile, t, w, vs);
}

// ---- identity / fp16 / bf16 ---------------------------------------------------------------------
__global__ void identity_accumulate_kernel(const std::byte* in, std::uint64_t d, float w, float* y,
                                           bool aligned) {
  const std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d) return;
  emit<DecodeMode::kAccumulate>(y, i, w,
                                bits_as<float>(tiles::get_stream_word(in, 4 * d, i, aligned)));
}

// Thread per pair of elements: one 32-bit word of the payload.
template <bool kBf16>
__global__ void half_encode_kernel(const float* x, std::uint64_t d, std::byte* out, bool aligned) {
  const std::uint64_t p = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::uint64_t i = 2 * p;
  if (i >= d) return;
  auto conv = [](float v) -> std::uint32_t {
    return kBf16 ? float_to_bf16_bits(v) : float_to_fp16_bits(v);
  };
  const std::uint32_t lo = conv(x[i]), hi = i + 1 < d ? conv(x[i + 1]) : 0u;
  tiles::put_stream_word(out, 2 * d, p, lo | (hi << 16), aligned);
}
template <bool kBf16, DecodeMode kMode>
__global__ void half_decode_kernel(const std::byte* in, std::uint64_t d, float w, float* y,
                                   bool aligned) {
  const std::uint64_t p = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::uint64_t i = 2 * p;
  if (i >= d) return;
  const std::uint32_t word = tiles::get_stream_word(in, 2 * d, p, aligned);
  auto conv = [](std::uint16_t h) { return kBf16 ? bf16_bits_to_float(h) : fp16_bits_to_float(h); };
  emit<kMode>(y, i, w, conv(static_cast<std::uint16_t>(word & 0xffffu)));
  if (i + 1 < d) emit<kMode>(y, i + 1, w, conv(static_cast<std::uint16_t>(word >> 16)));
}

// ---- sparse: shared pieces ----------------------------------------------------------------------
// Indices strictly increasing and < d, else *bad = 1.
__global__ void check_indices_kernel(const std::byte* idx, std::uint64_t count, std::uint64_t d,
                                     unsigned* bad) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= count) return;
  const auto cur = load_le<std::uint32_t>(idx + 4 * e);
  const bool wrong = cur >= d || (e > 0 && cur <= load_le<std::uint32_t>(idx + 4 * (e - 1)));
  if (wrong) atomicOr(bad, 1u);
}

template <DecodeMode kMode>
__global__ void sparse_apply_kernel(const std::byte* idx, const std::byte* val, std::uint64_t count,
                                    float w, float* y) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= count) return;
  SparseDecode<kMode>{idx, val, w, y}(e);
}

// Payload of topk / threshold from chosen indices: u32 index e at 4e, f32 value at 4 count + 4e.
__global__ void write_sparse_kernel(const std::uint32_t* idx, std::uint64_t count, const float* x,
                                    std::byte* out) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= count) return;
  const std::uint32_t i = idx[e];
  store_le<std::uint32_t>(out + 4 * e, i);
  store_le<float>(out + 4 * count + 4 * e, x[i]);
}

// ---- topk ---------------------------------------------------------------------------------------
// Work unit of every top-k kernel: a chunk of one tensor (radix_select.hpp).
using Chunk = TopkChunk;

__global__ void __launch_bounds__(kThreads)
    topk_hist_kernel(const float* x, const Chunk* chunks, const RadixState* state,
                     std::uint32_t* hist, int pass) {
  __shared__ std::uint32_t h[kRadixMaxBins];
  const std::uint32_t bins = radix_bins(pass);
  for (std::uint32_t b = threadIdx.x; b < bins; b += blockDim.x) h[b] = 0;
  __syncthreads();
  const Chunk c = chunks[blockIdx.x];
  const RadixState st = state[c.tensor];
  if (st.need != 0) {
    for (std::uint64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
      const std::uint32_t key = topk_key(x[i]);
      if (radix_candidate(key, st, pass)) atomicAdd(&h[radix_digit(key, pass)], 1u);
    }
  }
  __syncthreads();
  std::uint32_t* g = hist + static_cast<std::uint64_t>(c.tensor) * kRadixMaxBins;
  for (std::uint32_t b = threadIdx.x; b < bins; b += blockDim.x)
    if (h[b]) atomicAdd(&g[b], h[b]);
}

// Block per tensor: group sums, radix_pick by thread 0, then the histogram cleared for the next
// pass.
__global__ void topk_pick_kernel(RadixState* state, std::uint32_t* hist, int pass) {
  __shared__ std::uint32_t sums[kRadixMaxBins / 32];
  const std::uint32_t t = blockIdx.x;
  std::uint32_t* h = hist + static_cast<std::uint64_t>(t) * kRadixMaxBins;
  RadixState st = state[t];
  if (st.need == 0) return;  // the whole block: nothing to pick for an empty tensor
  const std::uint32_t groups = radix_bins(pass) / 32;
  for (std::uint32_t q = threadIdx.x; q < groups; q += blockDim.x) {
    std::uint32_t s = 0;
    for (std::uint32_t b = 0; b < 32; ++b) s += h[32 * q + b];
    sums[q] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    radix_pick(h, sums, pass, st);
    state[t] = st;
  }
  __syncthreads();
  for (std::uint32_t b = threadIdx.x; b < kRadixMaxBins; b += blockDim.x) h[b] = 0;
}

// Per chunk: elements with key == T and with key > T.
__global__ void __launch_bounds__(kThreads)
    topk_count_kernel(const float* x, const Chunk* chunks, const RadixState* state,
                      std::uint32_t* eq, std::uint32_t* gt) {
  __shared__ std::uint32_t n_eq, n_gt;
  if (threadIdx.x == 0) n_eq = n_gt = 0;
  __syncthreads();
  const Chunk c = chunks[blockIdx.x];
  const RadixState st = state[c.tensor];
  std::uint32_t my_eq = 0, my_gt = 0;
  if (st.need != 0) {
    for (std::uint64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
      const std::uint32_t key = topk_key(x[i]);
      my_eq += key == st.prefix ? 1u : 0u;
      my_gt += key > st.prefix ? 1u : 0u;
    }
  }
  if (my_eq) atomicAdd(&n_eq, my_eq);
  if (my_gt) atomicAdd(&n_gt, my_gt);
  __syncthreads();
  if (threadIdx.x == 0) {
    eq[blockIdx.x] = n_eq;
    gt[blockIdx.x] = n_gt;
  }
}

// Per chunk: ties before it in its tensor, and how many it keeps.
__global__ void topk_kept_kernel(const Chunk* chunks, std::uint64_t nchunks,
                                 const RadixState* state, const std::uint32_t* eq,
                                 const std::uint32_t* gt, const std::uint32_t* eq_scan,
                                 std::uint32_t* eq_before, std::uint32_t* kept) {
  const std::uint64_t c = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= nchunks) return;
  const Chunk ch = chunks[c];
  const RadixState st = state[ch.tensor];
  const std::uint32_t before = eq_scan[c] - eq_scan[ch.first_chunk];
  eq_before[c] = before;
  kept[c] = topk_chunk_kept(st, before, eq[c], gt[c]);
}

// Per chunk, in index order: block scans give each element its rank among the ties and its
// output position.
__global__ void __launch_bounds__(kThreads)
    topk_write_kernel(const float* x, const Chunk* chunks, const RadixState* state,
                      const std::uint32_t* eq_before, const std::uint32_t* offset,
                      std::uint64_t total, std::byte* out) {
  using Scan = cub::BlockScan<std::uint32_t, kThreads>;
  __shared__ typename Scan::TempStorage tmp;
  const Chunk c = chunks[blockIdx.x];
  const RadixState st = state[c.tensor];
  std::uint64_t ties = eq_before[blockIdx.x], pos = offset[blockIdx.x];
  for (std::uint64_t base = c.begin; base < c.end; base += kThreads) {
    const std::uint64_t i = base + threadIdx.x;
    const bool valid = i < c.end;
    const std::uint32_t key = valid ? topk_key(x[i]) : 0u;
    std::uint32_t tie_rank, tie_count, keep_rank, keep_count;
    Scan(tmp).ExclusiveSum(valid && key == st.prefix ? 1u : 0u, tie_rank, tie_count);
    __syncthreads();
    const bool keep = valid && st.need != 0 && topk_keep(key, st, ties + tie_rank);
    Scan(tmp).ExclusiveSum(keep ? 1u : 0u, keep_rank, keep_count);
    __syncthreads();
    if (keep) {
      const std::uint64_t p = pos + keep_rank;
      store_le<std::uint32_t>(out + 4 * p, static_cast<std::uint32_t>(i));
      store_le<float>(out + 4 * total + 4 * p, x[i]);
    }
    ties += tie_count;
    pos += keep_count;
  }
}

// ---- randomk ------------------------------------------------------------------------------------
struct RandomkLayout {
  const std::uint64_t* offsets;  // tensors + 1
  const std::uint64_t* kbase;    // tensors + 1: first draw of tensor t
  std::uint32_t tensors;

  __device__ void locate(std::uint64_t e, std::uint32_t& t, std::uint64_t& n, std::uint64_t& k,
                         std::uint64_t& q) const {
    randomk_locate(offsets, kbase, tensors, e, t, n, k, q);
  }
};

__global__ void randomk_draw_kernel(RandomkLayout l, std::uint64_t total, std::uint64_t seed,
                                    std::uint32_t* draw, std::uint32_t* pos) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  std::uint32_t t;
  std::uint64_t n, k, q;
  l.locate(e, t, n, k, q);
  draw[e] = static_cast<std::uint32_t>(l.offsets[t] + randomk_draw(seed, t, n - k + q));
  pos[e] = static_cast<std::uint32_t>(e);
}

__global__ void randomk_first_kernel(const std::uint32_t* sorted_draw,
                                     const std::uint32_t* sorted_pos, std::uint64_t total,
                                     std::uint8_t* first) {
  const std::uint64_t p = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= total) return;
  first[sorted_pos[p]] = p == 0 || sorted_draw[p - 1] != sorted_draw[p] ? 1 : 0;
}

__global__ void randomk_resolve_kernel(RandomkLayout l, std::uint64_t total,
                                       const std::uint32_t* draw, const std::uint8_t* first,
                                       std::uint32_t* idx) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  std::uint32_t t;
  std::uint64_t n, k, q;
  l.locate(e, t, n, k, q);
  const std::uint64_t b = l.kbase[t];
  idx[e] = static_cast<std::uint32_t>(randomk_resolve(draw + b, first + b, l.offsets[t], n, k, q));
}

__global__ void randomk_gather_kernel(const std::uint32_t* idx, std::uint64_t total, const float* x,
                                      std::byte* val) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  store_le<float>(val + 4 * e, x[idx[e]]);
}

template <DecodeMode kMode>
__global__ void randomk_apply_kernel(RandomkLayout l, std::uint64_t total, const std::uint32_t* idx,
                                     const float* scale, const std::byte* val, float w, float* y) {
  const std::uint64_t e = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  std::uint32_t t;
  std::uint64_t n, k, q;
  l.locate(e, t, n, k, q);
  emit<kMode>(y, idx[e], w, load_le<float>(val + 4 * e) * scale[t]);
}

// ---- threshold ----------------------------------------------------------------------------------
struct AbsAtLeast {
  const float* x;
  float tau;
  __device__ bool operator()(std::uint32_t i) const { return std::fabs(x[i]) >= tau; }
};

// Runs a CUB device algorithm: size query, temporary storage on the stream, the call.
template <class F>
void cub_run(cudaStream_t s, F&& f) {
  std::size_t bytes = 0;
  GOSSIP_CUDA_CHECK(f(nullptr, bytes));
  DevBuf<std::byte> tmp(bytes ? bytes : 1, s);
  GOSSIP_CUDA_CHECK(f(tmp.get(), bytes));
}

// Temporaries come from the device's default memory pool (cudaMallocAsync). By default the pool
// hands its memory back to the driver at every synchronisation, and encode/decode synchronise, so
// each call would map its scratch again: keep up to 1 GiB instead (process-wide; more than that
// goes back, so plain cudaMalloc elsewhere, the model's and the space's, still finds it).
void keep_pool_memory() {
  int dev = 0;
  GOSSIP_CUDA_CHECK(cudaGetDevice(&dev));
  cudaMemPool_t pool;
  GOSSIP_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  std::uint64_t keep = std::uint64_t{1} << 30;
  GOSSIP_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
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

std::string device_name() {
  if (device_count() == 0) return "";
  int dev = 0;
  GOSSIP_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  GOSSIP_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

struct DeviceCodec::Impl {
  CodecPlan plan;
  DeviceMemory crc_mem;  // CRC32C byte table (256 words), then x^(8 * 2^i) mod P (64 words)
  const std::uint32_t* crc_table = nullptr;
  const std::uint32_t* crc_pow2 = nullptr;

  Impl(CodecParams p, std::span<const std::size_t> sizes) : plan(p, sizes) {
    if (p.id == CodecId::kQsgd && !tiles::device_width(static_cast<int>(p.qsgd_width())))
      throw std::invalid_argument("codec " + plan.canonical() +
                                  ": the CUDA build has qsgd for code widths 2, 3, 4, 5, 8, 9 "
                                  "only (s = 1..15 or 64..255)");
    keep_pool_memory();
    constexpr auto table = crc_byte_table();
    constexpr auto pow2 = crc_x8_pow2_table();
    std::array<std::uint32_t, 256 + 64> host{};
    std::copy(table.begin(), table.end(), host.begin());
    std::copy(pow2.begin(), pow2.end(), host.begin() + 256);
    crc_mem = device_alloc(sizeof host);
    copy_to_device(crc_mem.get(), host.data(), sizeof host);
    crc_table = static_cast<const std::uint32_t*>(crc_mem.get());
    crc_pow2 = crc_table + 256;
  }

  // The layout's arrays on the device, uploaded once per (device, d) and only read afterwards:
  // the packed codecs' offsets, bucket bases and segment bases; topk's chunks and starting radix
  // states; randomk's offsets, per-tensor draw bases and scales. One allocation per entry.
  struct Tables {
    DeviceBuffer<std::byte> mem;
    LayoutView view;                          // packed: offsets and bucket_base point into mem
    const std::uint64_t* seg_base = nullptr;  // packed: tensors + 1 entries
    std::uint64_t segments = 0;
    const Chunk* chunks = nullptr;  // topk
    std::uint64_t nchunks = 0;
    const RadixState* topk_start = nullptr;  // topk: copied per call, the passes change it
    RandomkLayout randomk{};                 // randomk
    const float* randomk_scale = nullptr;    // randomk: per tensor
  };
  mutable std::mutex tables_mu;
  mutable std::map<std::pair<int, std::uint64_t>, std::shared_ptr<const Tables>> tables_cache;

  // Host arrays packed into one blob, each at a 16-byte boundary.
  struct Blob {
    std::vector<std::byte> bytes;
    template <class T>
    std::size_t add(const std::vector<T>& v) {
      const std::size_t at = (bytes.size() + 15) / 16 * 16;
      bytes.resize(at + v.size() * sizeof(T));
      if (!v.empty()) std::memcpy(bytes.data() + at, v.data(), v.size() * sizeof(T));
      return at;
    }
  };

  std::shared_ptr<const Tables> tables(const LayoutData& lay, std::uint64_t d,
                                       cudaStream_t s) const {
    int dev = 0;
    GOSSIP_CUDA_CHECK(cudaGetDevice(&dev));
    // Declared before the lock, so evicted entries are freed (cudaFree) after it is released.
    std::map<std::pair<int, std::uint64_t>, std::shared_ptr<const Tables>> evicted;
    const std::lock_guard<std::mutex> lock(tables_mu);
    if (const auto it = tables_cache.find({dev, d}); it != tables_cache.end()) return it->second;
    const CodecParams& p = plan.params();
    const std::uint64_t tensors = lay.tensors();
    Blob blob;
    std::size_t at_offsets = 0, at_base = 0, at_seg = 0, at_chunks = 0, at_start = 0, at_kbase = 0,
                at_scale = 0;
    std::vector<std::uint64_t> seg;
    std::vector<Chunk> chunks;
    switch (p.id) {
      case CodecId::kQsgd:
      case CodecId::kQuantize:
      case CodecId::kTerngrad:
      case CodecId::kSign:
        seg = tiles::segment_base(lay);
        at_offsets = blob.add(lay.offsets);
        at_base = blob.add(lay.bucket_base);
        at_seg = blob.add(seg);
        break;
      case CodecId::kTopk: {
        chunks = topk_chunks(lay.offsets);
        std::vector<RadixState> start(tensors);
        for (std::uint64_t t = 0; t < tensors; ++t)
          start[t] = RadixState{0, static_cast<std::uint32_t>(p.k_for(lay.size(t)))};
        at_chunks = blob.add(chunks);
        at_start = blob.add(start);
        break;
      }
      case CodecId::kRandomk: {
        std::vector<std::uint64_t> kbase(1, 0);
        std::vector<float> scale(tensors);
        for (std::uint64_t t = 0; t < tensors; ++t) {
          kbase.push_back(kbase.back() + p.k_for(lay.size(t)));
          scale[t] = p.randomk_scale(lay.size(t));
        }
        at_offsets = blob.add(lay.offsets);
        at_kbase = blob.add(kbase);
        at_scale = blob.add(scale);
        break;
      }
      default:
        break;
    }
    auto tb = std::make_shared<Tables>();
    tb->mem = DeviceBuffer<std::byte>(blob.bytes.size());
    if (!blob.bytes.empty()) {
      // Waited for: the tables are then complete for every stream that reads them.
      GOSSIP_CUDA_CHECK(cudaMemcpyAsync(tb->mem.get(), blob.bytes.data(), blob.bytes.size(),
                                        cudaMemcpyHostToDevice, s));
      GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    std::byte* base = tb->mem.get();
    const auto u64 = [base](std::size_t at) {
      return reinterpret_cast<const std::uint64_t*>(base + at);
    };
    tb->view = lay.view();
    tb->view.offsets = plan.is_bucketed() ? u64(at_offsets) : nullptr;
    tb->view.bucket_base = plan.is_bucketed() ? u64(at_base) : nullptr;
    tb->seg_base = u64(at_seg);
    tb->segments = seg.empty() ? 0 : seg.back();
    tb->chunks = reinterpret_cast<const Chunk*>(base + at_chunks);
    tb->nchunks = chunks.size();
    tb->topk_start = reinterpret_cast<const RadixState*>(base + at_start);
    tb->randomk =
        RandomkLayout{u64(at_offsets), u64(at_kbase), static_cast<std::uint32_t>(tensors)};
    tb->randomk_scale = reinterpret_cast<const float*>(base + at_scale);
    // Bounded: a codec sees one or two vector sizes in a run; tests and benches see a few more.
    // Entries in use elsewhere live on in their callers' shared_ptr.
    if (tables_cache.size() >= 16) evicted.swap(tables_cache);
    tables_cache.emplace(std::make_pair(dev, d), tb);
    return tb;
  }

  // Block CRCs of a device payload, brought back to the host (synchronises s).
  std::vector<std::uint32_t> block_crcs(const std::byte* payload, std::uint64_t bytes,
                                        cudaStream_t s) const {
    const std::uint64_t nb = (bytes + kChecksumBlock - 1) / kChecksumBlock;
    std::vector<std::uint32_t> host(nb);
    if (nb) {
      DevBuf<std::uint32_t> dev(nb, s);
      crc_blocks_kernel<<<static_cast<unsigned>(nb), kCrcThreads, 0, s>>>(payload, bytes, crc_table,
                                                                          crc_pow2, dev.get());
      GOSSIP_LAUNCH_CHECK();
      GOSSIP_CUDA_CHECK(cudaMemcpyAsync(host.data(), dev.get(), 4 * nb, cudaMemcpyDeviceToHost, s));
    }
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    return host;
  }

  // The scale table of a packed codec at `table`.
  void bucket_stats(const float* x, const LayoutData& lay, const Tables& tb, std::byte* table,
                    cudaStream_t s) const {
    const std::uint64_t nseg = tb.segments, nb = lay.bucket_base.back();
    if (nseg == 0) return;
    const std::uint64_t* seg_base = tb.seg_base;
    const unsigned seg_blocks = blocks_for(nseg, kWarpsPerBlock);
    tiles::with_stat(plan.params(), [&](auto st) {
      constexpr BucketStat kStat = decltype(st)::value;
      if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
        DevBuf<double> part(nseg, s);
        segment_sum_kernel<kStat == BucketStat::kL2>
            <<<seg_blocks, kThreads, 0, s>>>(x, tb.view, seg_base, nseg, part.get());
        GOSSIP_LAUNCH_CHECK();
        bucket_finish_kernel<kStat><<<blocks_for(nb, kThreads), kThreads, 0, s>>>(
            x, tb.view, seg_base, part.get(), nullptr, nullptr, table);
        GOSSIP_LAUNCH_CHECK();
      } else {
        DevBuf<tiles::Extreme> lo(nseg, s), hi(nseg, s);
        segment_extreme_kernel<kStat == BucketStat::kMaxAbs>
            <<<seg_blocks, kThreads, 0, s>>>(x, tb.view, seg_base, nseg, lo.get(), hi.get());
        GOSSIP_LAUNCH_CHECK();
        bucket_finish_kernel<kStat><<<blocks_for(nb, kThreads), kThreads, 0, s>>>(
            x, tb.view, seg_base, nullptr, lo.get(), hi.get(), table);
        GOSSIP_LAUNCH_CHECK();
      }
    });
  }

  // topk payload: per tensor radix select, then the chosen indices and values in index order.
  void encode_topk(const float* x, const LayoutData& lay, const Tables& tb, std::byte* out,
                   cudaStream_t s) const {
    const std::uint64_t total = plan.total_k(lay), tensors = lay.tensors();
    if (total == 0) return;
    const std::uint64_t nchunks = tb.nchunks;
    const Chunk* chunks = tb.chunks;
    DevBuf<RadixState> state(tensors, s);
    DevBuf<std::uint32_t> hist(tensors * kRadixMaxBins, s);
    GOSSIP_CUDA_CHECK(cudaMemcpyAsync(state.get(), tb.topk_start, tensors * sizeof(RadixState),
                                      cudaMemcpyDeviceToDevice, s));
    GOSSIP_CUDA_CHECK(
        cudaMemsetAsync(hist.get(), 0, tensors * kRadixMaxBins * sizeof(std::uint32_t), s));
    for (int pass = 0; pass < kRadixPasses; ++pass) {
      topk_hist_kernel<<<static_cast<unsigned>(nchunks), kThreads, 0, s>>>(x, chunks, state.get(),
                                                                           hist.get(), pass);
      GOSSIP_LAUNCH_CHECK();
      topk_pick_kernel<<<static_cast<unsigned>(tensors), 64, 0, s>>>(state.get(), hist.get(), pass);
      GOSSIP_LAUNCH_CHECK();
    }
    DevBuf<std::uint32_t> eq(nchunks, s), gt(nchunks, s), eq_scan(nchunks, s),
        eq_before(nchunks, s), kept(nchunks, s), offset(nchunks, s);
    topk_count_kernel<<<static_cast<unsigned>(nchunks), kThreads, 0, s>>>(x, chunks, state.get(),
                                                                          eq.get(), gt.get());
    GOSSIP_LAUNCH_CHECK();
    const auto n = static_cast<std::int64_t>(nchunks);
    cub_run(s, [&](void* tmp, std::size_t& bytes) {
      return cub::DeviceScan::ExclusiveSum(tmp, bytes, eq.get(), eq_scan.get(), n, s);
    });
    topk_kept_kernel<<<blocks_for(nchunks, kThreads), kThreads, 0, s>>>(
        chunks, nchunks, state.get(), eq.get(), gt.get(), eq_scan.get(), eq_before.get(),
        kept.get());
    GOSSIP_LAUNCH_CHECK();
    cub_run(s, [&](void* tmp, std::size_t& bytes) {
      return cub::DeviceScan::ExclusiveSum(tmp, bytes, kept.get(), offset.get(), n, s);
    });
    // The selection must come to exactly sum k_t entries: check before writing the payload.
    std::uint32_t last[2] = {0, 0};
    GOSSIP_CUDA_CHECK(
        cudaMemcpyAsync(&last[0], offset.get() + nchunks - 1, 4, cudaMemcpyDeviceToHost, s));
    GOSSIP_CUDA_CHECK(
        cudaMemcpyAsync(&last[1], kept.get() + nchunks - 1, 4, cudaMemcpyDeviceToHost, s));
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    if (static_cast<std::uint64_t>(last[0]) + last[1] != total)
      throw std::logic_error("CUDA topk selected " + std::to_string(last[0] + last[1]) +
                             " entries, expected " + std::to_string(total));
    topk_write_kernel<<<static_cast<unsigned>(nchunks), kThreads, 0, s>>>(
        x, chunks, state.get(), eq_before.get(), offset.get(), total, out);
    GOSSIP_LAUNCH_CHECK();
  }

  // threshold payload; returns its size.
  std::uint64_t encode_threshold(const float* x, std::uint64_t d, std::byte* out,
                                 cudaStream_t s) const {
    if (d == 0) return 0;
    DevBuf<std::uint32_t> idx(d, s);
    DevBuf<std::int64_t> num(1, s);
    const AbsAtLeast pred{x, static_cast<float>(plan.params().tau)};
    const auto n = static_cast<std::int64_t>(d);
    cub_run(s, [&](void* tmp, std::size_t& bytes) {
      return cub::DeviceSelect::If(tmp, bytes, thrust::counting_iterator<std::uint32_t>(0),
                                   idx.get(), num.get(), n, pred, s);
    });
    std::int64_t count = 0;
    GOSSIP_CUDA_CHECK(cudaMemcpyAsync(&count, num.get(), sizeof count, cudaMemcpyDeviceToHost, s));
    GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    if (count < 0 || static_cast<std::uint64_t>(count) > d)
      throw std::logic_error("CUDA threshold selected " + std::to_string(count) + " of " +
                             std::to_string(d));
    const auto c = static_cast<std::uint64_t>(count);
    if (c) {
      write_sparse_kernel<<<blocks_for(c, kThreads), kThreads, 0, s>>>(idx.get(), c, x, out);
      GOSSIP_LAUNCH_CHECK();
    }
    return 8 * c;
  }

  // randomk's indices (global, in draw order) for the layout under the sent seed, into idx
  // (total = plan.total_k(lay) entries, > 0).
  void randomk_indices_dev(std::uint64_t seed, const LayoutData& lay, const Tables& tb,
                           std::uint64_t total, std::uint32_t* idx, cudaStream_t s) const {
    DevBuf<std::uint32_t> draw(total, s), pos(total, s), sdraw(total, s), spos(total, s);
    DevBuf<std::uint8_t> first(total, s);
    const unsigned blocks = blocks_for(total, kThreads);
    randomk_draw_kernel<<<blocks, kThreads, 0, s>>>(tb.randomk, total, seed, draw.get(), pos.get());
    GOSSIP_LAUNCH_CHECK();
    int end_bit = 1;
    while (end_bit < 32 && (std::uint64_t{1} << end_bit) < lay.offsets.back()) ++end_bit;
    const auto n = static_cast<std::int64_t>(total);
    cub_run(s, [&](void* tmp, std::size_t& bytes) {
      return cub::DeviceRadixSort::SortPairs(tmp, bytes, draw.get(), sdraw.get(), pos.get(),
                                             spos.get(), n, 0, end_bit, s);
    });
    randomk_first_kernel<<<blocks, kThreads, 0, s>>>(sdraw.get(), spos.get(), total, first.get());
    GOSSIP_LAUNCH_CHECK();
    randomk_resolve_kernel<<<blocks, kThreads, 0, s>>>(tb.randomk, total, draw.get(), first.get(),
                                                       idx);
    GOSSIP_LAUNCH_CHECK();
  }

  std::size_t encode(const float* x, std::uint64_t d, const RngKey& key, std::byte* wire,
                     std::uint64_t wire_bytes, cudaStream_t s) const {
    const CodecParams& p = plan.params();
    std::optional<LayoutData> flat;
    const LayoutData& lay = plan.layout_for(d, flat);
    std::uint64_t bytes = plan.check_encode(lay, d, wire_bytes);
    // Held to the end: kernels launched below read the tables until the final synchronisation.
    const std::shared_ptr<const Tables> tb = tables(lay, d, s);
    std::byte* out = wire + kHeaderSize;
    const bool aligned = aligned4(out);
    switch (p.id) {
      case CodecId::kIdentity:
        if (d) GOSSIP_CUDA_CHECK(cudaMemcpyAsync(out, x, 4 * d, cudaMemcpyDeviceToDevice, s));
        break;
      case CodecId::kFp16:
      case CodecId::kBf16:
        if (d) {
          const unsigned blocks = blocks_for((d + 1) / 2, kThreads);
          if (p.id == CodecId::kFp16)
            half_encode_kernel<false><<<blocks, kThreads, 0, s>>>(x, d, out, aligned);
          else
            half_encode_kernel<true><<<blocks, kThreads, 0, s>>>(x, d, out, aligned);
          GOSSIP_LAUNCH_CHECK();
        }
        break;
      case CodecId::kQsgd:
      case CodecId::kQuantize:
      case CodecId::kTerngrad:
      case CodecId::kSign: {
        if (d == 0) break;
        bucket_stats(x, lay, *tb, out, s);
        const std::uint64_t table = lay.bucket_base.back() * tiles::table_entry_bytes(p);
        const BucketedArgs a = tiles::packed_args(
            p, tb->view, d, out,
            make_stream(key.seed, key.peer, key.round, RngStream::kElementNoise));
        std::byte* stream = out + table;
        const std::uint64_t sbytes = tiles::stream_bytes(d, tiles::packed_width(p));
        const bool saligned = aligned4(stream);
        tiles::with_codes(p, a, [&](auto f, const auto& codes) {
          encode_tiles_kernel<decltype(f)::value>
              <<<static_cast<unsigned>(tiles::tile_count(d)), kTileThreads, 0, s>>>(
                  codes, x, d, stream, sbytes, saligned);
          GOSSIP_LAUNCH_CHECK();
        });
        break;
      }
      case CodecId::kTopk:
        encode_topk(x, lay, *tb, out, s);
        break;
      case CodecId::kRandomk: {
        const Philox4 r =
            make_stream(key.seed, key.peer, key.round, RngStream::kRandomkSeed).block(0);
        const std::uint64_t seed = (static_cast<std::uint64_t>(r.v[1]) << 32) | r.v[0];
        GOSSIP_CUDA_CHECK(cudaMemcpyAsync(out, &seed, 8, cudaMemcpyHostToDevice, s));
        const std::uint64_t total = plan.total_k(lay);
        if (total) {
          DevBuf<std::uint32_t> idx(total, s);
          randomk_indices_dev(seed, lay, *tb, total, idx.get(), s);
          randomk_gather_kernel<<<blocks_for(total, kThreads), kThreads, 0, s>>>(idx.get(), total,
                                                                                 x, out + 8);
          GOSSIP_LAUNCH_CHECK();
        }
        // The seed's host copy must outlive the copy: block_crcs below synchronises first.
        GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
        break;
      }
      case CodecId::kThreshold:
        bytes = encode_threshold(x, d, out, s);
        break;
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
    const std::shared_ptr<const Tables> tb = tables(lay, d, s);  // read until the end
    std::array<std::byte, kHeaderSize> head{};
    if (bytes >= kHeaderSize) {
      GOSSIP_CUDA_CHECK(cudaMemcpyAsync(head.data(), wire, kHeaderSize, cudaMemcpyDeviceToHost, s));
      GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    const WireHeader h = plan.check_header(head, bytes, d, lay);
    const std::byte* in = wire + kHeaderSize;
    if (combine_checksum(head, block_crcs(in, h.payload_bytes, s)) != h.checksum)
      plan.reject("checksum mismatch: message corrupted");
    const std::uint64_t count = h.payload_bytes / 8;  // topk / threshold entries
    if ((p.id == CodecId::kTopk || p.id == CodecId::kThreshold) && count) {
      DevBuf<unsigned> bad(1, s);
      GOSSIP_CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(unsigned), s));
      check_indices_kernel<<<blocks_for(count, kThreads), kThreads, 0, s>>>(in, count, d,
                                                                            bad.get());
      GOSSIP_LAUNCH_CHECK();
      unsigned host_bad = 0;
      GOSSIP_CUDA_CHECK(
          cudaMemcpyAsync(&host_bad, bad.get(), sizeof host_bad, cudaMemcpyDeviceToHost, s));
      GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
      if (host_bad) plan.reject("sparse indices not strictly increasing or out of range");
    }
    if (kMode == DecodeMode::kAssign && plan.is_sparse() && d)
      GOSSIP_CUDA_CHECK(cudaMemsetAsync(y, 0, 4 * d, s));
    const bool aligned = aligned4(in);
    switch (p.id) {
      case CodecId::kIdentity:
        if (d == 0) break;
        if constexpr (kMode == DecodeMode::kAssign) {
          GOSSIP_CUDA_CHECK(cudaMemcpyAsync(y, in, 4 * d, cudaMemcpyDeviceToDevice, s));
        } else {
          identity_accumulate_kernel<<<blocks_for(d, kThreads), kThreads, 0, s>>>(in, d, w, y,
                                                                                  aligned);
          GOSSIP_LAUNCH_CHECK();
        }
        break;
      case CodecId::kFp16:
      case CodecId::kBf16:
        if (d) {
          const unsigned blocks = blocks_for((d + 1) / 2, kThreads);
          if (p.id == CodecId::kFp16)
            half_decode_kernel<false, kMode><<<blocks, kThreads, 0, s>>>(in, d, w, y, aligned);
          else
            half_decode_kernel<true, kMode><<<blocks, kThreads, 0, s>>>(in, d, w, y, aligned);
          GOSSIP_LAUNCH_CHECK();
        }
        break;
      case CodecId::kQsgd:
      case CodecId::kQuantize:
      case CodecId::kTerngrad:
      case CodecId::kSign: {
        if (d == 0) break;
        const std::uint64_t table = lay.bucket_base.back() * tiles::table_entry_bytes(p);
        const BucketedArgs a = tiles::packed_args(p, tb->view, d, in, {});
        const std::byte* stream = in + table;
        const std::uint64_t sbytes = tiles::stream_bytes(d, tiles::packed_width(p));
        const bool saligned = aligned4(stream);
        tiles::with_values(p, a, [&](auto f, const auto& values) {
          decode_tiles_kernel<decltype(f)::value, kMode>
              <<<static_cast<unsigned>(tiles::tile_count(d)), kTileThreads, 0, s>>>(
                  values, stream, sbytes, d, w, y, saligned);
          GOSSIP_LAUNCH_CHECK();
        });
        break;
      }
      case CodecId::kTopk:
      case CodecId::kThreshold:
        if (count) {
          sparse_apply_kernel<kMode>
              <<<blocks_for(count, kThreads), kThreads, 0, s>>>(in, in + 4 * count, count, w, y);
          GOSSIP_LAUNCH_CHECK();
        }
        break;
      case CodecId::kRandomk: {
        std::uint64_t seed = 0;
        GOSSIP_CUDA_CHECK(cudaMemcpyAsync(&seed, in, 8, cudaMemcpyDeviceToHost, s));
        GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
        const std::uint64_t total = plan.total_k(lay);
        if (total == 0) break;
        DevBuf<std::uint32_t> idx(total, s);
        randomk_indices_dev(seed, lay, *tb, total, idx.get(), s);
        randomk_apply_kernel<kMode><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
            tb->randomk, total, idx.get(), tb->randomk_scale, in + 8, w, y);
        GOSSIP_LAUNCH_CHECK();
        break;
      }
    }
    // Temporaries are stream-ordered; finishing here keeps decode synchronous like encode.
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
                                std::size_t wire_bytes, void* stream) const {
  return impl_->encode(x, d, key, wire, wire_bytes, as_stream(stream));
}

void DeviceCodec::decode_accumulate(const std::byte* wire, std::size_t bytes, float w, float* y,
                                    std::size_t d, void* stream) const {
  impl_->decode<DecodeMode::kAccumulate>(wire, bytes, w, y, d, as_stream(stream));
}

void DeviceCodec::decode(const std::byte* wire, std::size_t bytes, float* y, std::size_t d,
                         void* stream) const {
  impl_->decode<DecodeMode::kAssign>(wire, bytes, 1.0f, y, d, as_stream(stream));
}

void DeviceFree::operator()(void* p) const noexcept {
  cudaFree(p);
}

DeviceMemory device_alloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes) GOSSIP_CUDA_CHECK(cudaMalloc(&p, bytes));
  return DeviceMemory(p);
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes) GOSSIP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes) GOSSIP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_device_to_device(void* dst, const void* src, std::size_t bytes, void* stream) {
  const cudaStream_t s = as_stream(stream);
  if (bytes) GOSSIP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
  GOSSIP_CUDA_CHECK(cudaStreamSynchronize(s));
}

void device_synchronize() {
  GOSSIP_CUDA_CHECK(cudaDeviceSynchronize());
}

bool is_device_memory(const void* p) {
  cudaPointerAttributes a{};
  GOSSIP_CUDA_CHECK(cudaPointerGetAttributes(&a, p));
  return a.type == cudaMemoryTypeDevice;
}

}  // namespace gossip::kernels::cuda
