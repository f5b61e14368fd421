#pragma once
// The wire header every codec message starts with. Fixed 64 bytes, little-endian:
//   off size field
//    0   4   magic 0x4B505347 ("GSPK" in memory order)
//    4   2   format version (kWireVersion)
//    6   1   codec id (CodecId)
//    7   1   flags: bit0 scaled (qsgd), bit1 nearest rounding (quantize), bit2 unbiased (randomk),
//            bit3 per-tensor layout; other bits zero
//    8   4   p0: qsgd s | quantize bits | topk/randomk k (0 when a ratio is given)
//   12   4   bucket size (0 = whole tensor)
//   16   8   p1 (f64): topk/randomk ratio | threshold tau; 0 otherwise
//   24   8   element count d
//   32   8   payload length in bytes
//   40   4   layout hash: CRC32C of the tensor sizes as u64 LE (0 for one flat vector)
//   44   4   sender peer (RngKey::peer)
//   48   8   round (RngKey::round)
//   56   4   checksum (below)
//   60   4   reserved, zero
// Checksum: c_h = CRC32C(header with bytes 56..59 zeroed); c_i = CRC32C(payload block i), blocks of
// 64 KiB; checksum = CRC32C(c_h, c_0, c_1, ... as u32 LE). Fixed blocks keep it independent of the
// thread count while letting all cores work; any single corrupted byte changes it.

#include <cstddef>
#include <cstdint>
#include <span>

namespace gossip::kernels {

inline constexpr std::size_t kHeaderSize = 64;
inline constexpr std::uint32_t kWireMagic = 0x4B505347u;
inline constexpr std::uint16_t kWireVersion = 1;
inline constexpr std::size_t kChecksumBlock = 64 * 1024;

enum class CodecId : std::uint8_t {
  kIdentity = 1,
  kFp16 = 2,
  kBf16 = 3,
  kQsgd = 4,
  kQuantize = 5,
  kTerngrad = 6,
  kSign = 7,
  kTopk = 8,
  kRandomk = 9,
  kThreshold = 10,
};

const char* codec_name(CodecId id);

inline constexpr std::uint8_t kFlagScaled = 1, kFlagNearest = 2, kFlagUnbiased = 4,
                              kFlagLayered = 8;

struct WireHeader {
  std::uint32_t magic = kWireMagic;
  std::uint16_t version = kWireVersion;
  std::uint8_t codec = 0;
  std::uint8_t flags = 0;
  std::uint32_t p0 = 0;
  std::uint32_t bucket = 0;
  double p1 = 0.0;
  std::uint64_t elements = 0;
  std::uint64_t payload_bytes = 0;
  std::uint32_t layout_hash = 0;
  std::uint32_t peer = 0;
  std::uint64_t round = 0;
  std::uint32_t checksum = 0;
  std::uint32_t reserved = 0;
};

// Serialises h (checksum field as given) into out[0, 64).
void store_header(const WireHeader& h, std::span<std::byte, kHeaderSize> out);
WireHeader load_header(std::span<const std::byte, kHeaderSize> in);

// Checksum of a whole message as defined above (reads the header bytes, ignores bytes 56..59).
std::uint32_t message_checksum(std::span<const std::byte> message);

// The checksum from the header and the CRC32C of each 64 KiB payload block (for encoders that
// computed the block CRCs while the block was still in cache).
std::uint32_t combine_checksum(std::span<const std::byte, kHeaderSize> header,
                               std::span<const std::uint32_t> block_crcs);

// The same checksum fed in pieces: checksum_start(header), then checksum_continue(state, crcs) for
// consecutive runs of block CRCs (the value is CRC32C by continuation, so the split does not
// matter). Lets callers keep block CRCs in a fixed stack batch instead of a heap list.
std::uint32_t checksum_start(std::span<const std::byte, kHeaderSize> header);
std::uint32_t checksum_continue(std::uint32_t state, std::span<const std::uint32_t> block_crcs);
inline constexpr std::size_t kChecksumBatch = 1024;  // block CRCs per stack batch (64 MiB)

// Fills in the checksum of a complete message (header already stored).
void seal_message(std::span<std::byte> message);

// What a receiver can read from any message before it picks a codec: throws WireError when the
// buffer is shorter than a header or the magic/version are wrong. Does not verify the checksum.
WireHeader peek_header(std::span<const std::byte> message);

}  // namespace gossip::kernels
