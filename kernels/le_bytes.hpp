#pragma once
// Little-endian loads and stores of fixed-size values at a byte address: the one way every wire
// format in the project (codec messages, transport frames) reads and writes its fields.

#include <bit>
#include <cstddef>
#include <cstring>

#include "kernels/hd.hpp"

namespace gossip::kernels {

static_assert(std::endian::native == std::endian::little,
              "wire formats are little-endian and stored as in memory; add byte swaps to port");

template <class T>
GOSSIP_HD inline T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
GOSSIP_HD inline void store_le(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace gossip::kernels
