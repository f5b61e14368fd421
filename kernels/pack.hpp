#pragma once
// The packed codecs (qsgd, quantize, terngrad, sign) in the shape the CUDA kernels run them,
// written once for host and device so the host can test the exact code the GPU runs:
//
//  * Tiles: a tile is kTileThreads groups of 32 elements (4096 elements), one CUDA block of
//    kTileThreads threads. Encode: load_x (thread t reads elements t, t+128, .. of the tile:
//    coalesced) -> pack_group (thread t computes group t's codes with the functions of ops.hpp and
//    packs them with GroupBits<F>::pack into F words) -> store_words (thread t writes words t,
//    t+128, .. of the tile's 128 F words: coalesced 32-bit stores, the stream's last word byte by
//    byte). Decode runs the mirror image (load_words -> unpack_group -> emit_tile). Shared memory
//    is padded (element e at x_slot(e), group words at a stride of F | 1) so no phase has bank
//    conflicts. The device runs each phase for threadIdx.x between __syncthreads(); the host twins
//    (encode_stream_host, decode_stream_host) run the same phase functions for t = 0..127 in turn.
//  * Bucket statistics: a bucket is cut into kSegment (4096) element segments from its start; a
//    warp sums one segment (lane j adds elements j, j+32, .. in order, lanes fold 16, 8, 4, 2, 1:
//    sum_segment's order), and one thread per bucket adds its segments' sums in order. Min/max
//    reduce (value, index) pairs, ties to the lower index and NaN skipped, then a bucket whose
//    first element is NaN takes that NaN: exactly minmax_range's left-to-right result.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/ops.hpp"
#include "kernels/params.hpp"

namespace gossip::kernels::tiles {

inline constexpr std::uint32_t kTileThreads = 128;
inline constexpr std::uint32_t kTileElems = kTileThreads * kGroup;       // 4096
inline constexpr std::uint32_t kTileXSlots = kTileElems + kTileThreads;  // padded element slots
inline constexpr int kMaxWidth = 9;                                      // widest device code
inline constexpr std::uint32_t kTileWordSlots = kTileThreads * kMaxWidth;

// Padded shared-memory slot of tile element e: group g's 32 elements sit at 33 g .. 33 g + 31.
GOSSIP_HD constexpr std::uint32_t x_slot(std::uint32_t e) {
  return e + e / kGroup;
}
template <int F>
inline constexpr std::uint32_t kWordStride = static_cast<std::uint32_t>(F | 1);

GOSSIP_HD inline std::uint64_t stream_bytes(std::uint64_t d, int f) {
  return (d * static_cast<std::uint64_t>(f) + 7) / 8;
}
GOSSIP_HD inline std::uint64_t tile_count(std::uint64_t d) {
  return (d + kTileElems - 1) / kTileElems;
}

// Word wi of a packed stream of `bytes` bytes: a full word is one 32-bit access (the device uses
// an aligned store when the stream is 4-byte aligned), the stream's last partial word only its
// own bytes; words past the end are not touched (load: zero).
GOSSIP_HD inline void put_stream_word(std::byte* s, std::uint64_t bytes, std::uint64_t wi,
                                      std::uint32_t w, bool aligned) {
  const std::uint64_t off = 4 * wi;
  if (off >= bytes) return;
  if (off + 4 <= bytes) {
#if defined(__CUDA_ARCH__)
    if (aligned) {
      *reinterpret_cast<std::uint32_t*>(s + off) = w;
      return;
    }
#else
    (void)aligned;
#endif
    std::memcpy(s + off, &w, 4);
    return;
  }
  for (std::uint64_t k = 0; off + k < bytes; ++k)
    s[off + k] = static_cast<std::byte>((w >> (8 * k)) & 0xffu);
}
GOSSIP_HD inline std::uint32_t get_stream_word(const std::byte* s, std::uint64_t bytes,
                                               std::uint64_t wi, bool aligned) {
  const std::uint64_t off = 4 * wi;
  if (off >= bytes) return 0;
  if (off + 4 <= bytes) {
#if defined(__CUDA_ARCH__)
    if (aligned) return *reinterpret_cast<const std::uint32_t*>(s + off);
#else
    (void)aligned;
#endif
    std::uint32_t w;
    std::memcpy(&w, s + off, 4);
    return w;
  }
  std::uint32_t w = 0;
  for (std::uint64_t k = 0; off + k < bytes; ++k)
    w |= static_cast<std::uint32_t>(s[off + k]) << (8 * k);
  return w;
}

// ---- per-group code and value functions (group-local element arrays) --------------------------
// As group_codes / group_values of ops.hpp, but reading the group's elements from xg[0..31] and
// writing values to vg[0..31] (shared memory on the device).
template <class Consts, class Code>
GOSSIP_HD inline void local_codes(const BucketedArgs& a, const float* xg, std::uint64_t i0,
                                  std::uint32_t n, const std::uint32_t* r, std::uint32_t* codes,
                                  Consts consts, Code code) {
  BucketCursor cur;
  cur.seek(a.layout, i0);
  auto c = consts(cur.bucket);
  for (std::uint32_t j = 0; j < kGroup; ++j) {
    if (j >= n) {
      codes[j] = 0;
      continue;
    }
    if (cur.at(a.layout, i0 + j)) c = consts(cur.bucket);
    codes[j] = code(c, xg[j], r ? r[j] : 0u);
  }
}
template <class Consts, class Value>
GOSSIP_HD inline void local_values(const BucketedArgs& a, std::uint64_t i0, std::uint32_t n,
                                   const std::uint32_t* codes, float* vg, Consts consts,
                                   Value value) {
  BucketCursor cur;
  cur.seek(a.layout, i0);
  auto c = consts(cur.bucket);
  for (std::uint32_t j = 0; j < n; ++j) {
    if (cur.at(a.layout, i0 + j)) c = consts(cur.bucket);
    vg[j] = value(c, codes[j]);
  }
}

GOSSIP_HD inline std::uint32_t group_len(std::uint64_t d, std::uint64_t g) {
  return static_cast<std::uint32_t>(min_u64(kGroup, d - g * kGroup));
}

struct QsgdCodes {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const float* xg, std::uint32_t* codes) const {
    std::uint32_t r[kGroup];
    group_noise(a.rng, g * kGroup, r);
    const float s = static_cast<float>(a.param);
    const BucketedArgs& aa = a;
    local_codes(
        a, xg, g * kGroup, group_len(a.d, g), r, codes,
        [&aa](std::uint64_t b) { return qsgd_encode_scale(aa, b); },
        [s](float scale, float v, std::uint32_t rw) { return qsgd_code(v, scale, s, rw); });
  }
};
struct QsgdValues {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const std::uint32_t* codes, float* vg) const {
    const BucketedArgs& aa = a;
    local_values(
        a, g * kGroup, group_len(a.d, g), codes, vg,
        [&aa](std::uint64_t b) { return qsgd_decode_unit(aa, b); },
        [](float unit, std::uint32_t c) { return qsgd_value(c, unit); });
  }
};

struct QuantizeCodes {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const float* xg, std::uint32_t* codes) const {
    std::uint32_t r[kGroup];
    if (!a.flag) group_noise(a.rng, g * kGroup, r);
    const float top = static_cast<float>(a.param);
    const bool nearest = a.flag;
    const BucketedArgs& aa = a;
    local_codes(
        a, xg, g * kGroup, group_len(a.d, g), nearest ? nullptr : r, codes,
        [&aa](std::uint64_t b) { return quantize_encode_consts(aa, b); },
        [top, nearest](QuantConsts c, float v, std::uint32_t rw) {
          return quantize_code(v, c.lo, c.inv_or_step, top, nearest, rw);
        });
  }
};
struct QuantizeValues {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const std::uint32_t* codes, float* vg) const {
    const BucketedArgs& aa = a;
    local_values(
        a, g * kGroup, group_len(a.d, g), codes, vg,
        [&aa](std::uint64_t b) { return quantize_decode_consts(aa, b); },
        [](QuantConsts c, std::uint32_t q) {
          return c.lo + static_cast<float>(static_cast<std::int32_t>(q)) * c.inv_or_step;
        });
  }
};

struct TerngradCodes {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const float* xg, std::uint32_t* codes) const {
    std::uint32_t r[kGroup];
    group_noise(a.rng, g * kGroup, r);
    const BucketedArgs& aa = a;
    local_codes(
        a, xg, g * kGroup, group_len(a.d, g), r, codes,
        [&aa](std::uint64_t b) { return terngrad_encode_inv(aa, b); },
        [](float inv, float v, std::uint32_t rw) { return terngrad_code(v, inv, rw); });
  }
};
struct TerngradValues {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const std::uint32_t* codes, float* vg) const {
    const BucketedArgs& aa = a;
    local_values(
        a, g * kGroup, group_len(a.d, g), codes, vg,
        [&aa](std::uint64_t b) { return bucket_float(aa, b); },
        [](float s, std::uint32_t c) { return terngrad_value(c, s); });
  }
};

struct SignCodes {
  std::uint64_t d;
  GOSSIP_HD void operator()(std::uint64_t g, const float* xg, std::uint32_t* codes) const {
    const std::uint32_t n = group_len(d, g);
    for (std::uint32_t j = 0; j < kGroup; ++j) codes[j] = j < n && xg[j] < 0.0f ? 1u : 0u;
  }
};
struct SignValues {
  BucketedArgs a;
  GOSSIP_HD void operator()(std::uint64_t g, const std::uint32_t* codes, float* vg) const {
    const BucketedArgs& aa = a;
    local_values(
        a, g * kGroup, group_len(a.d, g), codes, vg,
        [&aa](std::uint64_t b) { return bucket_float(aa, b); },
        [](float s, std::uint32_t c) { return c ? -s : s; });
  }
};

// ---- tile phases -------------------------------------------------------------------------------
// Encode phase 1: thread t stages elements t + 128 m of the tile (zero past d).
GOSSIP_HD inline void load_x(const float* x, std::uint64_t d, std::uint64_t tile, std::uint32_t t,
                             float* xs) {
  const std::uint64_t e0 = tile * kTileElems;
  for (std::uint32_t m = 0; m < kGroup; ++m) {
    const std::uint32_t e = t + m * kTileThreads;
    xs[x_slot(e)] = e0 + e < d ? x[e0 + e] : 0.0f;
  }
}
// Encode phase 2: thread t packs group t of the tile into F words.
template <int F, class Codes>
GOSSIP_HD inline void pack_group(const Codes& codes_of, std::uint64_t d, std::uint64_t tile,
                                 std::uint32_t t, const float* xs, std::uint32_t* ws) {
  const std::uint64_t g = tile * kTileThreads + t;
  if (g * kGroup >= d) return;
  std::uint32_t codes[kGroup];
  codes_of(g, xs + x_slot(t * kGroup), codes);
  GroupBits<F> bits;
  bits.pack(codes);
  for (int k = 0; k < F; ++k) ws[t * kWordStride<F> + static_cast<std::uint32_t>(k)] = bits.w[k];
}
// Encode phase 3: thread t writes words t + 128 m of the tile's 128 F stream words.
template <int F>
GOSSIP_HD inline void store_words(std::byte* stream, std::uint64_t bytes, std::uint64_t tile,
                                  std::uint32_t t, const std::uint32_t* ws, bool aligned) {
  const std::uint64_t w0 = tile * kTileThreads * F;
  for (std::uint32_t m = 0; m < static_cast<std::uint32_t>(F); ++m) {
    const std::uint32_t wt = t + m * kTileThreads;
    const std::uint32_t grp = wt / F, k = wt % F;
    if (4 * (w0 + wt) >= bytes) continue;
    put_stream_word(stream, bytes, w0 + wt, ws[grp * kWordStride<F> + k], aligned);
  }
}

// Decode phase 1: thread t stages words t + 128 m of the tile (zero past the stream's end).
template <int F>
GOSSIP_HD inline void load_words(const std::byte* stream, std::uint64_t bytes, std::uint64_t tile,
                                 std::uint32_t t, std::uint32_t* ws, bool aligned) {
  const std::uint64_t w0 = tile * kTileThreads * F;
  for (std::uint32_t m = 0; m < static_cast<std::uint32_t>(F); ++m) {
    const std::uint32_t wt = t + m * kTileThreads;
    ws[(wt / F) * kWordStride<F> + wt % F] = get_stream_word(stream, bytes, w0 + wt, aligned);
  }
}
// Decode phase 2: thread t unpacks group t and writes its values C(x) to the padded slots.
template <int F, class Values>
GOSSIP_HD inline void unpack_group(const Values& values_of, std::uint64_t d, std::uint64_t tile,
                                   std::uint32_t t, const std::uint32_t* ws, float* vs) {
  const std::uint64_t g = tile * kTileThreads + t;
  if (g * kGroup >= d) return;
  GroupBits<F> bits;
  for (int k = 0; k < F; ++k) bits.w[k] = ws[t * kWordStride<F> + static_cast<std::uint32_t>(k)];
  std::uint32_t codes[kGroup];
  bits.unpack(codes);
  values_of(g, codes, vs + x_slot(t * kGroup));
}
// Decode phase 3: thread t applies elements t + 128 m of the tile to y (coalesced).
template <DecodeMode kMode>
GOSSIP_HD inline void emit_tile(float* y, std::uint64_t d, std::uint64_t tile, std::uint32_t t,
                                float w, const float* vs) {
  const std::uint64_t e0 = tile * kTileElems;
  for (std::uint32_t m = 0; m < kGroup; ++m) {
    const std::uint32_t e = t + m * kTileThreads;
    if (e0 + e < d) emit<kMode>(y, e0 + e, w, vs[x_slot(e)]);
  }
}

// ---- which functions a codec uses ---------------------------------------------------------------
// Code widths built for the device: qsgd's width is 1 + ceil(log2(s + 1)), so widths 2, 3, 4, 5, 8,
// 9 take s = 1..15 and 64..255; quantize's 1, 2, 4, 8 bits (terngrad 2, sign 1). Each width is a
// set of kernels.
using DeviceWidths = std::integer_sequence<int, 1, 2, 3, 4, 5, 8, 9>;

inline bool device_width(int f) {
  bool built = false;
  with_width_in(DeviceWidths{}, f, [&](auto) { built = true; });
  return built;
}

// Code width and scale-table bytes per bucket of a packed codec.
inline int packed_width(const CodecParams& p) {
  switch (p.id) {
    case CodecId::kQsgd:
      return static_cast<int>(p.qsgd_width());
    case CodecId::kQuantize:
      return static_cast<int>(p.bits);
    case CodecId::kTerngrad:
      return 2;
    default:
      return 1;
  }
}
inline std::uint64_t table_entry_bytes(const CodecParams& p) {
  return p.id == CodecId::kQuantize ? 8 : 4;
}

// g(std::integral_constant<int, F>) for a width in DeviceWidths (nothing otherwise).
template <class G>
void with_width(int f, G&& g) {
  with_width_in(DeviceWidths{}, f, g);
}

// The BucketedArgs of a packed codec: param/flag as the functors of ops.hpp read them. `table`
// is the payload start (scale table); `rng` only matters for encoding.
inline BucketedArgs packed_args(const CodecParams& p, LayoutView v, std::uint64_t d,
                                const std::byte* table, RngStreamKey rng) {
  BucketedArgs a{v, d, table, 0, false, rng};
  if (p.id == CodecId::kQsgd) {
    a.param = p.s;
    a.flag = p.scaled;
  } else if (p.id == CodecId::kQuantize) {
    a.param = (1u << p.bits) - 1u;
    a.flag = p.nearest;
  }
  return a;
}

constexpr bool is_quantize_width(int f) {
  return f == 1 || f == 2 || f == 4 || f == 8;
}

// g(width constant, codes function) for the packed codec p — or, with kValues, its values
// function — one instantiation per codec and width the device has: qsgd's widths are >= 2,
// quantize's 1, 2, 4, 8.
template <bool kValues, class G>
void with_packed(const CodecParams& p, const BucketedArgs& a, G&& g) {
  with_width(packed_width(p), [&](auto f) {
    constexpr int kF = decltype(f)::value;
    const auto pick = [&](const auto& codes, const auto& values) {
      if constexpr (kValues) {
        g(f, values);
      } else {
        g(f, codes);
      }
    };
    switch (p.id) {
      case CodecId::kQsgd:
        if constexpr (kF >= 2) pick(QsgdCodes{a}, QsgdValues{a});
        break;
      case CodecId::kQuantize:
        if constexpr (is_quantize_width(kF)) pick(QuantizeCodes{a}, QuantizeValues{a});
        break;
      case CodecId::kTerngrad:
        if constexpr (kF == 2) pick(TerngradCodes{a}, TerngradValues{a});
        break;
      case CodecId::kSign:
        if constexpr (kF == 1) pick(SignCodes{a.d}, SignValues{a});
        break;
      default:
        break;
    }
  });
}
template <class G>
void with_codes(const CodecParams& p, const BucketedArgs& a, G&& g) {
  with_packed<false>(p, a, g);
}
template <class G>
void with_values(const CodecParams& p, const BucketedArgs& a, G&& g) {
  with_packed<true>(p, a, g);
}

// g(std::integral_constant<BucketStat, S>) for the statistic of the packed codec p.
template <class G>
void with_stat(const CodecParams& p, G&& g) {
  switch (p.id) {
    case CodecId::kQsgd:
      g(std::integral_constant<BucketStat, BucketStat::kL2>{});
      break;
    case CodecId::kQuantize:
      g(std::integral_constant<BucketStat, BucketStat::kMinMax>{});
      break;
    case CodecId::kTerngrad:
      g(std::integral_constant<BucketStat, BucketStat::kMaxAbs>{});
      break;
    default:
      g(std::integral_constant<BucketStat, BucketStat::kL1Mean>{});
      break;
  }
}

// ---- bucket statistics by segments --------------------------------------------------------------
// seg_base[t]: first segment of tensor t (tensors + 1 entries), built by segment_base().
inline std::uint64_t segments_of_tensor(std::uint64_t n, std::uint64_t bucket) {
  if (n == 0) return 0;
  const std::uint64_t len = bucket ? bucket : n, nb = (n + len - 1) / len;
  const std::uint64_t spb = (len + kSegment - 1) / kSegment, last = n - (nb - 1) * len;
  return (nb - 1) * spb + (last + kSegment - 1) / kSegment;
}
template <class Layout>
std::vector<std::uint64_t> segment_base(const Layout& lay) {
  std::vector<std::uint64_t> base(1, 0);
  for (std::uint64_t t = 0; t + 1 < lay.offsets.size(); ++t)
    base.push_back(base.back() +
                   segments_of_tensor(lay.offsets[t + 1] - lay.offsets[t], lay.bucket));
  return base;
}

// Segment s: its bucket, first element and length.
GOSSIP_HD inline void segment_range(const LayoutView& l, const std::uint64_t* seg_base,
                                    std::uint64_t s, std::uint64_t& bucket, std::uint64_t& begin,
                                    std::uint64_t& len) {
  const std::uint32_t t = LayoutView::search(seg_base, l.tensors, s);
  const std::uint64_t b = l.bucket_len_of(t), spb = (b + kSegment - 1) / kSegment;
  const std::uint64_t local = s - seg_base[t], jb = local / spb, m = local % spb;
  bucket = l.bucket_base[t] + jb;
  const std::uint64_t bstart = l.offsets[t] + jb * b, bend = min_u64(bstart + b, l.offsets[t + 1]);
  begin = bstart + m * kSegment;
  len = min_u64(kSegment, bend - begin);
}
// Bucket j: its first segment and segment count (and element range).
GOSSIP_HD inline void bucket_segments(const LayoutView& l, const std::uint64_t* seg_base,
                                      std::uint64_t j, std::uint64_t& first, std::uint64_t& count,
                                      std::uint64_t& begin, std::uint64_t& end) {
  const std::uint32_t t = LayoutView::search(l.bucket_base, l.tensors, j);
  const std::uint64_t b = l.bucket_len_of(t), spb = (b + kSegment - 1) / kSegment;
  first = seg_base[t] + (j - l.bucket_base[t]) * spb;
  begin = l.offsets[t] + (j - l.bucket_base[t]) * b;
  end = min_u64(begin + b, l.offsets[t + 1]);
  count = (end - begin + kSegment - 1) / kSegment;
}

// Extreme value with its element index; i == kNoIndex: no non-NaN element seen.
inline constexpr std::uint64_t kNoIndex = ~std::uint64_t{0};
struct Extreme {
  float v;
  std::uint64_t i;
};
// The lower (kMax: higher) value, ties to the lower index, NaN never chosen: any reduction order
// gives the same answer.
template <bool kMax>
GOSSIP_HD inline Extreme pick_extreme(Extreme a, Extreme b) {
  if (a.i == kNoIndex) return b;
  if (b.i == kNoIndex) return a;
  const bool b_better = kMax ? b.v > a.v : b.v < a.v;
  const bool a_better = kMax ? a.v > b.v : a.v < b.v;
  if (b_better) return b;
  if (a_better) return a;
  return b.i < a.i ? b : a;
}
GOSSIP_HD inline Extreme extreme_of(float v, std::uint64_t i) {
  return Extreme{v, v == v ? i : kNoIndex};
}
// minmax_range's result from the reduced extremes and the bucket's first element.
GOSSIP_HD inline MinMax finish_minmax(Extreme lo, Extreme hi, float first) {
  if (!(first == first) || lo.i == kNoIndex) return MinMax{first, first};
  return MinMax{lo.v, hi.v};
}

// Host twin of the statistics kernels: segments one by one (sum_segment is the warp's lane
// order), then buckets adding their segments in order. Writes the scale table like BucketStatFn.
template <BucketStat kStat, class Layout>
void bucket_stats_host(const float* x, const Layout& lay, std::byte* table) {
  const LayoutView v = lay.view();
  const std::vector<std::uint64_t> sb = segment_base(lay);
  const std::uint64_t nseg = sb.back();
  std::vector<double> sum(nseg);
  std::vector<Extreme> lo(nseg), hi(nseg);
  for (std::uint64_t s = 0; s < nseg; ++s) {
    std::uint64_t bucket, begin, len;
    segment_range(v, sb.data(), s, bucket, begin, len);
    if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
      sum[s] = sum_segment<kStat == BucketStat::kL2>(x + begin, static_cast<std::uint32_t>(len));
    } else {
      Extreme a{0.0f, kNoIndex}, b{0.0f, kNoIndex};
      for (std::uint64_t i = begin; i < begin + len; ++i) {
        const float xv = kStat == BucketStat::kMaxAbs ? std::fabs(x[i]) : x[i];
        a = pick_extreme<false>(a, extreme_of(xv, i));
        b = pick_extreme<true>(b, extreme_of(xv, i));
      }
      lo[s] = a;
      hi[s] = b;
    }
  }
  for (std::uint64_t j = 0; j < v.buckets(); ++j) {
    std::uint64_t first, count, begin, end;
    bucket_segments(v, sb.data(), j, first, count, begin, end);
    if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
      double s = 0.0;
      for (std::uint64_t q = 0; q < count; ++q) s += sum[first + q];
      store_le<float>(table + 4 * j, BucketStatFn<kStat>::finish(s, end - begin));
    } else {
      Extreme a{0.0f, kNoIndex}, b{0.0f, kNoIndex};
      for (std::uint64_t q = 0; q < count; ++q) {
        a = pick_extreme<false>(a, lo[first + q]);
        b = pick_extreme<true>(b, hi[first + q]);
      }
      if constexpr (kStat == BucketStat::kMaxAbs) {
        store_le<float>(table + 4 * j, b.i == kNoIndex ? 0.0f : b.v);
      } else {
        const MinMax mm = finish_minmax(a, b, x[begin]);
        store_le<float>(table + 8 * j, mm.lo);
        store_le<float>(table + 8 * j + 4, mm.hi);
      }
    }
  }
}

// ---- host twins of the tile kernels -------------------------------------------------------------
template <int F, class Codes>
void encode_stream_host(const Codes& codes_of, const float* x, std::uint64_t d, std::byte* stream) {
  std::vector<float> xs(kTileXSlots);
  std::vector<std::uint32_t> ws(kTileWordSlots);
  const std::uint64_t bytes = stream_bytes(d, F);
  for (std::uint64_t tile = 0; tile < tile_count(d); ++tile) {
    for (std::uint32_t t = 0; t < kTileThreads; ++t) load_x(x, d, tile, t, xs.data());
    for (std::uint32_t t = 0; t < kTileThreads; ++t)
      pack_group<F>(codes_of, d, tile, t, xs.data(), ws.data());
    for (std::uint32_t t = 0; t < kTileThreads; ++t)
      store_words<F>(stream, bytes, tile, t, ws.data(), false);
  }
}
template <int F, DecodeMode kMode, class Values>
void decode_stream_host(const Values& values_of, const std::byte* stream, std::uint64_t d, float w,
                        float* y) {
  std::vector<float> vs(kTileXSlots);
  std::vector<std::uint32_t> ws(kTileWordSlots);
  const std::uint64_t bytes = stream_bytes(d, F);
  for (std::uint64_t tile = 0; tile < tile_count(d); ++tile) {
    for (std::uint32_t t = 0; t < kTileThreads; ++t)
      load_words<F>(stream, bytes, tile, t, ws.data(), false);
    for (std::uint32_t t = 0; t < kTileThreads; ++t)
      unpack_group<F>(values_of, d, tile, t, ws.data(), vs.data());
    for (std::uint32_t t = 0; t < kTileThreads; ++t) emit_tile<kMode>(y, d, tile, t, w, vs.data());
  }
}

}  // namespace gossip::kernels::tiles
