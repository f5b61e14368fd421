#pragma once
// What a codec is, independent of where it runs: parameters, tensor layout, payload sizes, the
// header it writes and the checks a received header must pass. Shared by the host codec and the
// CUDA codec so both agree byte for byte.

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/codec.hpp"
#include "kernels/crc32c.hpp"
#include "kernels/layout.hpp"
#include "kernels/params.hpp"
#include "kernels/wire.hpp"

namespace gossip::kernels {

struct LayoutData {
  std::vector<std::uint64_t> offsets, bucket_base;
  std::uint64_t bucket = 0;

  LayoutData(std::span<const std::uint64_t> sizes, std::uint64_t b) : bucket(b) {
    offsets.assign(1, 0);
    bucket_base.assign(1, 0);
    for (std::uint64_t n : sizes) {
      offsets.push_back(offsets.back() + n);
      const std::uint64_t len = b ? b : n;
      bucket_base.push_back(bucket_base.back() + (n ? (n + len - 1) / len : 0));
    }
  }
  // One tensor of d elements (none when d = 0), as the constructor makes it, reusing this object's
  // storage: no allocation once it has held a layout.
  void assign_flat(std::uint64_t d, std::uint64_t b) {
    bucket = b;
    offsets.resize(d ? 2 : 1);
    bucket_base.resize(d ? 2 : 1);
    offsets[0] = bucket_base[0] = 0;
    if (d) {
      offsets[1] = d;
      const std::uint64_t len = b ? b : d;
      bucket_base[1] = (d + len - 1) / len;
    }
  }
  LayoutView view() const {
    LayoutView v{offsets.data(), bucket_base.data(), static_cast<std::uint32_t>(offsets.size() - 1),
                 bucket};
    if (bucket && (bucket & (bucket - 1)) == 0) {
      int shift = 0;
      while ((std::uint64_t{1} << shift) != bucket) ++shift;
      v.bucket_shift = shift;
    }
    return v;
  }
  std::uint64_t tensors() const { return offsets.size() - 1; }
  std::uint64_t size(std::uint64_t t) const { return offsets[t + 1] - offsets[t]; }
};

inline std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) {
  return (a + b - 1) / b;
}

class CodecPlan {
 public:
  CodecPlan(CodecParams p, std::span<const std::size_t> tensor_sizes) : p_(p) {
    layered_ = !tensor_sizes.empty();
    for (std::size_t n : tensor_sizes) sizes_.push_back(n);
    if (layered_) {
      layout_hash_ = crc32c(std::as_bytes(std::span<const std::uint64_t>(sizes_)));
      layout_.emplace_back(sizes_, bucket_elems());
      total_ = layout_.front().offsets.back();
    }
  }

  std::string canonical() const { return canonical_spec(p_); }
  const CodecParams& params() const { return p_; }

  bool is_sparse() const {
    return p_.id == CodecId::kTopk || p_.id == CodecId::kRandomk || p_.id == CodecId::kThreshold;
  }
  bool is_bucketed() const {
    return p_.id == CodecId::kQsgd || p_.id == CodecId::kQuantize || p_.id == CodecId::kTerngrad ||
           p_.id == CodecId::kSign;
  }
  std::uint64_t bucket_elems() const { return is_bucketed() ? p_.bucket : 0; }

  // The layout of a d-element vector: the codec's own when it was made with tensor sizes (no
  // copy), else one tensor of d elements built into `flat`, which must outlive the result.
  const LayoutData& layout_for(std::uint64_t d, std::optional<LayoutData>& flat) const {
    if (layered_) {
      if (d != total_)
        throw std::invalid_argument(
            "codec " + canonical() + " was made for " + std::to_string(sizes_.size()) +
            " tensors of " + std::to_string(total_) + " elements in all, got " + std::to_string(d));
      return layout_.front();
    }
    const std::uint64_t one[1] = {d};
    return flat.emplace(std::span<const std::uint64_t>(one, d ? 1 : 0), bucket_elems());
  }

  // layout_for without a caller-owned optional: a flat layout lives in a per-thread object that
  // keeps its storage, so steady-state calls allocate nothing. The reference is valid until this
  // thread's next call.
  const LayoutData& layout_reused(std::uint64_t d) const {
    if (layered_) {
      std::optional<LayoutData> none;
      return layout_for(d, none);
    }
    thread_local LayoutData flat(std::span<const std::uint64_t>{}, 0);
    flat.assign_flat(d, bucket_elems());
    return flat;
  }

  std::uint64_t total_k(const LayoutData& lay) const {
    std::uint64_t k = 0;
    for (std::uint64_t t = 0; t < lay.tensors(); ++t) k += p_.k_for(lay.size(t));
    return k;
  }

  // Exact payload bytes (threshold: the most it can be).
  std::uint64_t payload_size(const LayoutData& lay, std::uint64_t d) const {
    const std::uint64_t nb = lay.bucket_base.back();
    switch (p_.id) {
      case CodecId::kIdentity:
        return 4 * d;
      case CodecId::kFp16:
      case CodecId::kBf16:
        return 2 * d;
      case CodecId::kQsgd:
        return 4 * nb + ceil_div(d * p_.qsgd_width(), 8);
      case CodecId::kQuantize:
        return 8 * nb + ceil_div(d * p_.bits, 8);
      case CodecId::kTerngrad:
        return 4 * nb + ceil_div(2 * d, 8);
      case CodecId::kSign:
        return 4 * nb + ceil_div(d, 8);
      case CodecId::kTopk:
        return 8 * total_k(lay);
      case CodecId::kRandomk:
        return 8 + 4 * total_k(lay);
      case CodecId::kThreshold:
        return 8 * d;
    }
    return 0;
  }

  // What every encoder checks before it writes: the wire buffer (wire_bytes) holds the message,
  // the sparse codecs' u32 indices reach every element, and the element noise's 32-bit Philox
  // block counter (four elements a block) does not wrap. Throws std::invalid_argument; returns
  // payload_size(lay, d).
  std::uint64_t check_encode(const LayoutData& lay, std::uint64_t d,
                             std::uint64_t wire_bytes) const {
    // The limits on d first: the capacity below is computed from d and must not wrap.
    if (d > (std::uint64_t{1} << 40))
      throw std::invalid_argument("encode: " + std::to_string(d) + " elements; at most 2^40");
    if (is_sparse() && d > 0xffffffffull)
      throw std::invalid_argument("encode: " + canonical() +
                                  " sends u32 indices; d must be < 2^32");
    const bool noise = p_.id == CodecId::kQsgd || p_.id == CodecId::kTerngrad ||
                       (p_.id == CodecId::kQuantize && !p_.nearest);
    if (noise && d > (std::uint64_t{1} << 34))
      throw std::invalid_argument(
          "encode: " + canonical() +
          " draws its noise from a 32-bit block counter; d must be <= 2^34");
    const std::uint64_t payload = payload_size(lay, d);
    if (wire_bytes < kHeaderSize + payload)
      throw std::invalid_argument("encode: wire buffer holds " + std::to_string(wire_bytes) +
                                  " bytes, " + canonical() + " needs " +
                                  std::to_string(kHeaderSize + payload) + " for " +
                                  std::to_string(d) + " elements");
    return payload;
  }

  WireHeader header_for(std::uint64_t d) const {
    WireHeader h;
    h.codec = static_cast<std::uint8_t>(p_.id);
    h.flags =
        static_cast<std::uint8_t>((p_.id == CodecId::kQsgd && p_.scaled ? kFlagScaled : 0) |
                                  (p_.id == CodecId::kQuantize && p_.nearest ? kFlagNearest : 0) |
                                  (p_.id == CodecId::kRandomk && p_.unbiased ? kFlagUnbiased : 0) |
                                  (layered_ ? kFlagLayered : 0));
    switch (p_.id) {
      case CodecId::kQsgd:
        h.p0 = p_.s;
        break;
      case CodecId::kQuantize:
        h.p0 = p_.bits;
        break;
      case CodecId::kTopk:
      case CodecId::kRandomk:
        h.p0 = static_cast<std::uint32_t>(p_.k);
        h.p1 = p_.ratio;
        break;
      case CodecId::kThreshold:
        h.p1 = p_.tau;
        break;
      default:
        break;
    }
    h.bucket = static_cast<std::uint32_t>(bucket_elems());
    h.elements = d;
    h.layout_hash = layout_hash_;
    return h;
  }

  [[noreturn]] void reject(const std::string& why) const {
    throw WireError("codec " + canonical() + ": " + why);
  }

  // Every check on the header against this codec, the output length d and the message length
  // `bytes` (`head` holds at least the header when bytes >= 64). Not the checksum, not the payload.
  WireHeader check_header(std::span<const std::byte> head, std::uint64_t bytes, std::uint64_t d,
                          const LayoutData& lay) const {
    if (bytes < kHeaderSize)
      throw WireError("truncated message: " + std::to_string(bytes) +
                      " bytes, the header alone is " + std::to_string(kHeaderSize));
    const WireHeader h = peek_header(head);
    const WireHeader want = header_for(d);
    if (h.codec != want.codec)
      reject(std::string("wrong codec: message is ") + codec_name(static_cast<CodecId>(h.codec)) +
             " (id " + std::to_string(h.codec) + ")");
    if (h.flags != want.flags || h.p0 != want.p0 || h.bucket != want.bucket ||
        std::memcmp(&h.p1, &want.p1, sizeof(double)) != 0 || h.reserved != 0)
      reject("codec parameters differ: message has flags=" + std::to_string(h.flags) +
             " p0=" + std::to_string(h.p0) + " bucket=" + std::to_string(h.bucket) +
             " p1=" + std::to_string(h.p1));
    if (h.layout_hash != want.layout_hash)
      reject("tensor layout differs (layout hash " + std::to_string(h.layout_hash) + " vs " +
             std::to_string(want.layout_hash) + ")");
    if (h.elements != d)
      reject("wrong length: message has " + std::to_string(h.elements) + " elements, output has " +
             std::to_string(d));
    const std::uint64_t expect = payload_size(lay, d);
    if (p_.id == CodecId::kThreshold ? (h.payload_bytes > expect || h.payload_bytes % 8 != 0)
                                     : h.payload_bytes != expect)
      reject("wrong payload length " + std::to_string(h.payload_bytes) + " for " +
             std::to_string(d) + " elements (expected " +
             (p_.id == CodecId::kThreshold ? "a multiple of 8 up to " : "") +
             std::to_string(expect) + ")");
    if (bytes - kHeaderSize < h.payload_bytes)
      reject("truncated message: " + std::to_string(bytes) + " bytes, header says " +
             std::to_string(kHeaderSize + h.payload_bytes));
    if (bytes - kHeaderSize > h.payload_bytes)
      reject("oversized message: " + std::to_string(bytes) + " bytes, header says " +
             std::to_string(kHeaderSize + h.payload_bytes));
    return h;
  }

 protected:
  CodecParams p_;
  bool layered_ = false;
  std::vector<std::uint64_t> sizes_;
  std::uint32_t layout_hash_ = 0;
  std::uint64_t total_ = 0;
  std::vector<LayoutData> layout_;  // one entry when layered (vector: LayoutData has no default)
};

}  // namespace gossip::kernels
