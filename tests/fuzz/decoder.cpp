// libFuzzer target for the codec decoders (tests/fuzz/meson.build; scripts/fuzz.sh runs it).
// Input: byte 0 picks the codec and whether to re-seal the checksum (so the fuzzer also reaches
// the payload decoding, not only the checksum check); the rest is the message. The output length
// is the header's element count (capped), so length checks pass and payloads get decoded.
// Any crash, sanitizer report, or exception other than WireError is a bug.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "kernels/codec.hpp"
#include "kernels/wire.hpp"

namespace {

using gossip::kernels::Codec;

const std::vector<std::unique_ptr<Codec>>& codecs() {
  static const auto all = [] {
    std::vector<std::unique_ptr<Codec>> v;
    for (const char* s :
         {"identity", "fp16", "bf16", "qsgd:s=3,bucket=7", "qsgd:s=1000,scaled=true",
          "quantize:bits=1,bucket=5", "quantize:bits=8,rounding=nearest", "terngrad:bucket=3",
          "sign", "topk:k=4", "randomk:ratio=0.3", "threshold:tau=0.5"})
      v.push_back(gossip::kernels::make_codec(s));
    return v;
  }();
  return all;
}

}  // namespace

// With GOSSIP_FUZZ_SEED_DIR set, writes one valid message per codec there (the seed corpus).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("GOSSIP_FUZZ_SEED_DIR");
  if (!dir) return 0;
  const auto& all = codecs();
  std::vector<float> x(100);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.2f;
  for (std::size_t c = 0; c < all.size(); ++c) {
    std::vector<std::byte> wire(all[c]->wire_size(x.size()));
    wire.resize(all[c]->encode(x, {1, 2, 3}, wire));
    std::ofstream out(std::string(dir) + "/seed-" + std::to_string(c), std::ios::binary);
    const char tag = static_cast<char>(c);
    out.write(&tag, 1);
    out.write(reinterpret_cast<const char*>(wire.data()),
              static_cast<std::streamsize>(wire.size()));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto& all = codecs();
  const Codec& c = *all[data[0] % all.size()];
  const bool reseal = data[0] & 0x80;
  std::vector<std::byte> msg(size - 1);
  if (size > 1) std::memcpy(msg.data(), data + 1, size - 1);
  std::size_t d = 64;
  if (msg.size() >= gossip::kernels::kHeaderSize) {
    std::uint64_t n;
    std::memcpy(&n, msg.data() + 24, 8);
    d = static_cast<std::size_t>(n % 4096);
    if (reseal) gossip::kernels::seal_message(msg);
  }
  std::vector<float> y(d, 1.0f);
  try {
    c.decode_accumulate(msg, 0.5f, y);
    c.decode(msg, y);
  } catch (const gossip::kernels::WireError&) {
  }
  return 0;
}
