#include "kernels/wire.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "kernels/codec.hpp"
#include "kernels/crc32c.hpp"
#include "kernels/le_bytes.hpp"

namespace gossip::kernels {

const char* codec_name(CodecId id) {
  switch (id) {
    case CodecId::kIdentity:
      return "identity";
    case CodecId::kFp16:
      return "fp16";
    case CodecId::kBf16:
      return "bf16";
    case CodecId::kQsgd:
      return "qsgd";
    case CodecId::kQuantize:
      return "quantize";
    case CodecId::kTerngrad:
      return "terngrad";
    case CodecId::kSign:
      return "sign";
    case CodecId::kTopk:
      return "topk";
    case CodecId::kRandomk:
      return "randomk";
    case CodecId::kThreshold:
      return "threshold";
  }
  return "unknown";
}

void store_header(const WireHeader& h, std::span<std::byte, kHeaderSize> out) {
  std::byte* b = out.data();
  store_le(b, h.magic);
  store_le(b + 4, h.version);
  store_le(b + 6, h.codec);
  store_le(b + 7, h.flags);
  store_le(b + 8, h.p0);
  store_le(b + 12, h.bucket);
  store_le(b + 16, h.p1);
  store_le(b + 24, h.elements);
  store_le(b + 32, h.payload_bytes);
  store_le(b + 40, h.layout_hash);
  store_le(b + 44, h.peer);
  store_le(b + 48, h.round);
  store_le(b + 56, h.checksum);
  store_le(b + 60, h.reserved);
}

WireHeader load_header(std::span<const std::byte, kHeaderSize> in) {
  const std::byte* b = in.data();
  WireHeader h;
  h.magic = load_le<std::uint32_t>(b);
  h.version = load_le<std::uint16_t>(b + 4);
  h.codec = load_le<std::uint8_t>(b + 6);
  h.flags = load_le<std::uint8_t>(b + 7);
  h.p0 = load_le<std::uint32_t>(b + 8);
  h.bucket = load_le<std::uint32_t>(b + 12);
  h.p1 = load_le<double>(b + 16);
  h.elements = load_le<std::uint64_t>(b + 24);
  h.payload_bytes = load_le<std::uint64_t>(b + 32);
  h.layout_hash = load_le<std::uint32_t>(b + 40);
  h.peer = load_le<std::uint32_t>(b + 44);
  h.round = load_le<std::uint64_t>(b + 48);
  h.checksum = load_le<std::uint32_t>(b + 56);
  h.reserved = load_le<std::uint32_t>(b + 60);
  return h;
}

std::uint32_t checksum_start(std::span<const std::byte, kHeaderSize> header) {
  std::byte head[kHeaderSize];
  std::memcpy(head, header.data(), kHeaderSize);
  std::memset(head + 56, 0, 4);
  // CRC32C over the byte string (c_h, c_0, c_1, ...), computed by continuation.
  const std::uint32_t ch = crc32c(std::span<const std::byte>(head, kHeaderSize));
  return crc32c(std::as_bytes(std::span<const std::uint32_t, 1>(&ch, 1)));
}

std::uint32_t checksum_continue(std::uint32_t state, std::span<const std::uint32_t> block_crcs) {
  return crc32c(std::as_bytes(block_crcs), state);
}

std::uint32_t combine_checksum(std::span<const std::byte, kHeaderSize> header,
                               std::span<const std::uint32_t> block_crcs) {
  return checksum_continue(checksum_start(header), block_crcs);
}

std::uint32_t message_checksum(std::span<const std::byte> message) {
  const auto payload = message.subspan(kHeaderSize);
  const std::size_t blocks = (payload.size() + kChecksumBlock - 1) / kChecksumBlock;
  std::uint32_t state = checksum_start(message.first<kHeaderSize>());
  // Block CRCs in stack batches: no allocation, all cores on each batch.
  std::uint32_t crcs[kChecksumBatch];
  for (std::size_t b0 = 0; b0 < blocks; b0 += kChecksumBatch) {
    const auto nb = static_cast<std::int64_t>(std::min(kChecksumBatch, blocks - b0));
#pragma omp parallel for schedule(static) if (nb > 4)
    for (std::int64_t i = 0; i < nb; ++i) {
      const std::size_t off = (b0 + static_cast<std::size_t>(i)) * kChecksumBlock;
      crcs[i] = crc32c(payload.subspan(off, std::min(kChecksumBlock, payload.size() - off)));
    }
    state = checksum_continue(state,
                              std::span<const std::uint32_t>(crcs, static_cast<std::size_t>(nb)));
  }
  return state;
}

void seal_message(std::span<std::byte> message) {
  store_le(message.data() + 56, message_checksum(message));
}

WireHeader peek_header(std::span<const std::byte> message) {
  if (message.size() < kHeaderSize)
    throw WireError("truncated message: " + std::to_string(message.size()) +
                    " bytes, the header alone is " + std::to_string(kHeaderSize));
  const WireHeader h = load_header(message.first<kHeaderSize>());
  if (h.magic != kWireMagic) throw WireError("bad magic: not a gossip codec message");
  if (h.version != kWireVersion)
    throw WireError("unsupported wire format version " + std::to_string(h.version) +
                    " (this build reads " + std::to_string(kWireVersion) + ")");
  return h;
}

}  // namespace gossip::kernels
