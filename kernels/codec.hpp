#pragma once
// The compression-operator interface the gossip layer codes against. One Codec instance is made
// from a spec string ("qsgd:s=3,bucket=512,scaled=true") and a tensor layout; it encodes a flat
// float vector into a self-describing wire message (header + bit-packed payload) and decodes it.
// Definitions of every operator and the wire header: docs/kernels.md.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gossip::kernels {

// Key of the counter-based RNG (Philox-4x32-10): the random stream of one encoding is fixed by
// (seed, peer, round) and indexed by element, so it does not depend on thread count or device.
struct RngKey {
  std::uint64_t seed = 0;
  std::uint32_t peer = 0;
  std::uint64_t round = 0;
};

// Thrown for any malformed wire message: truncated, oversized, wrong codec, wrong length, bad
// checksum. what() says which check failed.
class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Codec {
 public:
  virtual ~Codec() = default;

  // Canonical spec, e.g. "qsgd:s=3,bucket=512,scaled=false"; make_codec(spec()) gives an equal
  // codec.
  virtual std::string spec() const = 0;

  // Exact size in bytes of the whole wire message (header + payload) for `d` elements.
  // d must equal the layout's total when the codec was made with a layout.
  // threshold is the one codec whose size depends on the data: for it this is the largest message
  // (every element kept) and encode's return value is the actual size (fixed_wire_size() false).
  virtual std::size_t wire_size(std::size_t d) const = 0;

  // True when every message for d elements is exactly wire_size(d) bytes.
  virtual bool fixed_wire_size() const { return true; }

  // Encodes x into wire[0, wire_size(x.size())). Returns the bytes written.
  virtual std::size_t encode(std::span<const float> x, const RngKey& key,
                             std::span<std::byte> wire) const = 0;

  // y += w * C(x) from a message made by encode, in one pass with no dense temporary.
  // Validates the whole header first; throws WireError without touching y on a bad message.
  virtual void decode_accumulate(std::span<const std::byte> wire, float w,
                                 std::span<float> y) const = 0;

  // y = C(x).
  virtual void decode(std::span<const std::byte> wire, std::span<float> y) const = 0;
};

// Makes a codec from its spec. `tensor_sizes` empty: the whole vector is one tensor
// (granularity "model"); otherwise each tensor is compressed on its own (granularity "layer").
// Throws std::invalid_argument naming the unknown codec or the bad parameter.
std::unique_ptr<Codec> make_codec(std::string_view spec,
                                  std::span<const std::size_t> tensor_sizes = {});

}  // namespace gossip::kernels
