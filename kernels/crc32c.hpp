#pragma once
// CRC32C (Castagnoli) for wire checksums. The message checksum is a two-level CRC so it can run on
// all cores and still be one fixed function of the bytes (see wire.hpp).

#include <cstddef>
#include <cstdint>
#include <span>

namespace gossip::kernels {

// Plain CRC32C of `data`, continuing from `crc` (0 to start). Uses SSE4.2 where the CPU has it.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0);

// Table-driven CRC32C: the reference the hardware path is tested against.
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0);

}  // namespace gossip::kernels
