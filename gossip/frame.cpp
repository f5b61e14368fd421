#include "gossip/frame.hpp"

#include <cstring>
#include <ctime>
#include <stdexcept>

#include <fmt/core.h>

#include "kernels/le_bytes.hpp"

namespace gossip::net {
namespace {

using kernels::load_le;
using kernels::store_le;

std::uint32_t fnv1a32(std::span<const std::byte> bytes) {
  std::uint32_t h = 2166136261u;
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint32_t>(b);
    h *= 16777619u;
  }
  return h;
}

constexpr std::size_t kChecksumOffset = 60;
// hashes, size, rank, window, endpoint length, nonce, instance
constexpr std::size_t kHelloFixed = 8 + 8 + 4 + 4 + 4 + 4 + 8 + 8;
constexpr std::size_t kMaxEndpoint = 4096;

}  // namespace

std::string_view kind_name(FrameKind k) {
  switch (k) {
    case FrameKind::hello:
      return "hello";
    case FrameKind::exchange:
      return "exchange";
    case FrameKind::ring:
      return "ring";
    case FrameKind::credit:
      return "credit";
    case FrameKind::direct:
      return "direct";
    case FrameKind::state:
      return "state";
    case FrameKind::control:
      return "control";
  }
  return "unknown";
}

HeaderBytes encode_header(const FrameHeader& h) {
  HeaderBytes out{};
  std::byte* p = out.data();
  store_le<std::uint32_t>(p, kFrameMagic);
  store_le<std::uint16_t>(p + 4, kFrameVersion);
  store_le<std::uint16_t>(p + 6, static_cast<std::uint16_t>(h.kind));
  store_le<std::uint32_t>(p + 8, h.sender);
  store_le<std::uint32_t>(p + 12, h.receiver);
  store_le<std::uint64_t>(p + 16, h.round);
  store_le<std::uint32_t>(p + 24, h.step);
  store_le<std::uint32_t>(p + 28, h.uplink_us);
  store_le<std::uint64_t>(p + 32, h.payload_length);
  store_le<std::uint64_t>(p + 40, h.session);
  store_le<std::uint64_t>(p + 48, h.sent_at_ns);
  store_le<std::uint32_t>(p + 56, h.stop_in);
  store_le<std::uint32_t>(p + kChecksumOffset, fnv1a32({p, kChecksumOffset}));
  return out;
}

HeaderParse decode_header(std::span<const std::byte> bytes) {
  if (bytes.size() != kFrameHeaderSize) {
    return {std::nullopt,
            fmt::format("frame header is {} bytes, expected {}", bytes.size(), kFrameHeaderSize),
            HeaderFault::size};
  }
  const std::byte* p = bytes.data();
  if (auto magic = load_le<std::uint32_t>(p); magic != kFrameMagic) {
    return {std::nullopt, fmt::format("bad magic 0x{:08x}", magic), HeaderFault::magic};
  }
  if (auto version = load_le<std::uint16_t>(p + 4); version != kFrameVersion) {
    return {std::nullopt, fmt::format("frame version {}, ours is {}", version, kFrameVersion),
            HeaderFault::version};
  }
  const auto sum = load_le<std::uint32_t>(p + kChecksumOffset);
  if (sum != fnv1a32({p, kChecksumOffset})) {
    return {std::nullopt, "header checksum mismatch", HeaderFault::checksum};
  }
  const auto kind = load_le<std::uint16_t>(p + 6);
  if (kind < 1 || kind > kLastFrameKind) {
    return {std::nullopt, fmt::format("unknown frame kind {}", kind), HeaderFault::kind};
  }
  FrameHeader h;
  h.kind = static_cast<FrameKind>(kind);
  h.sender = load_le<std::uint32_t>(p + 8);
  h.receiver = load_le<std::uint32_t>(p + 12);
  h.round = load_le<std::uint64_t>(p + 16);
  h.step = load_le<std::uint32_t>(p + 24);
  h.payload_length = load_le<std::uint64_t>(p + 32);
  h.session = load_le<std::uint64_t>(p + 40);
  h.sent_at_ns = load_le<std::uint64_t>(p + 48);
  h.uplink_us = load_le<std::uint32_t>(p + 28);
  h.stop_in = load_le<std::uint32_t>(p + 56);
  return {h, {}, HeaderFault::none};
}

std::uint64_t session_hash(std::uint64_t topology_hash, std::uint64_t run_hash,
                           std::uint64_t nonce) {
  // Without a nonce the session is what it was before nonces existed.
  if (nonce != 0) return session_hash(session_hash(topology_hash, run_hash), nonce);
  // splitmix64 finaliser over the pair: cheap, and a change in either input changes the result.
  std::uint64_t z = topology_hash ^ (run_hash + 0x9e3779b97f4a7c15ull + (topology_hash << 6) +
                                     (topology_hash >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<std::byte> encode_hello(const Hello& h) {
  std::vector<std::byte> out(kHelloFixed + h.endpoint.size());
  std::byte* p = out.data();
  store_le<std::uint64_t>(p, h.topology_hash);
  store_le<std::uint64_t>(p + 8, h.run_hash);
  store_le<std::uint32_t>(p + 16, h.size);
  store_le<std::uint32_t>(p + 20, h.rank);
  store_le<std::uint32_t>(p + 24, h.window);
  store_le<std::uint32_t>(p + 28, static_cast<std::uint32_t>(h.endpoint.size()));
  store_le<std::uint64_t>(p + 32, h.nonce);
  store_le<std::uint64_t>(p + 40, h.instance);
  std::memcpy(p + kHelloFixed, h.endpoint.data(), h.endpoint.size());
  return out;
}

Hello decode_hello(std::span<const std::byte> bytes) {
  if (bytes.size() < kHelloFixed) {
    throw std::invalid_argument(fmt::format("hello record of {} bytes", bytes.size()));
  }
  const std::byte* p = bytes.data();
  Hello h;
  h.topology_hash = load_le<std::uint64_t>(p);
  h.run_hash = load_le<std::uint64_t>(p + 8);
  h.size = load_le<std::uint32_t>(p + 16);
  h.rank = load_le<std::uint32_t>(p + 20);
  h.window = load_le<std::uint32_t>(p + 24);
  const auto len = load_le<std::uint32_t>(p + 28);
  h.nonce = load_le<std::uint64_t>(p + 32);
  h.instance = load_le<std::uint64_t>(p + 40);
  if (len > kMaxEndpoint || bytes.size() != kHelloFixed + len) {
    throw std::invalid_argument(
        fmt::format("hello record endpoint length {} does not fit {} bytes", len, bytes.size()));
  }
  h.endpoint.assign(reinterpret_cast<const char*>(p + kHelloFixed), len);
  return h;
}

std::array<std::byte, kControlSize> encode_control(const Control& c) {
  std::array<std::byte, kControlSize> out{};
  store_le<std::uint32_t>(out.data(), static_cast<std::uint32_t>(c.type));
  store_le<std::uint32_t>(out.data() + 4, c.rank);
  store_le<std::uint64_t>(out.data() + 8, c.round);
  store_le<std::uint64_t>(out.data() + 16, c.episode);
  store_le<std::uint64_t>(out.data() + 24, c.instance);
  return out;
}

std::optional<Control> decode_control(std::span<const std::byte> bytes) {
  if (bytes.size() != kControlSize) return std::nullopt;
  const auto type = load_le<std::uint32_t>(bytes.data());
  if (type < static_cast<std::uint32_t>(ControlType::leave) ||
      type > static_cast<std::uint32_t>(ControlType::join)) {
    return std::nullopt;
  }
  const Control c{static_cast<ControlType>(type), load_le<std::uint32_t>(bytes.data() + 4),
                  load_le<std::uint64_t>(bytes.data() + 8),
                  load_le<std::uint64_t>(bytes.data() + 16),
                  load_le<std::uint64_t>(bytes.data() + 24)};
  if (c.type == ControlType::join && c.instance == 0) return std::nullopt;
  return c;
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace gossip::net
