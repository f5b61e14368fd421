// Payload sizes against the table in shared/ALGORITHMS.md, the wire header, spec parsing, and
// rejection of every kind of bad message.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/plan.hpp"
#include "kernels/wire.hpp"
#include "tests/kernels/reference.hpp"

using namespace gossip::kernels;
namespace r = gossip::kernels::ref;

namespace {
std::size_t cdiv(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}
}  // namespace

TEST_CASE("payload sizes match ALGORITHMS.md") {
  for (std::size_t d : {0u, 1u, 31u, 32u, 33u, 1000u}) {
    CAPTURE(d);
    auto payload = [&](const char* spec) { return make_codec(spec)->wire_size(d) - kHeaderSize; };
    CHECK(payload("identity") == 4 * d);
    CHECK(payload("fp16") == 2 * d);
    CHECK(payload("bf16") == 2 * d);
    // bucket 7 does not divide 1000, 33, 31; bucket 0 is one bucket for the whole vector.
    const std::size_t nb7 = cdiv(d, 7), nb0 = d ? 1 : 0;
    CHECK(payload("qsgd:s=3,bucket=7") == 4 * nb7 + cdiv(d * 3, 8));  // 1 + ceil(log2 4) = 3
    CHECK(payload("qsgd:s=1,bucket=7") == 4 * nb7 + cdiv(d * 2, 8));  // 1 + 1
    CHECK(payload("qsgd:s=4,bucket=7") == 4 * nb7 + cdiv(d * 4, 8));  // 1 + ceil(log2 5) = 4
    CHECK(payload("qsgd:s=255") == 4 * nb0 + cdiv(d * 9, 8));
    CHECK(payload("qsgd:s=256,scaled=true") == 4 * nb0 + cdiv(d * 10, 8));
    for (std::size_t bits : {1u, 2u, 4u, 8u})
      CHECK(payload(("quantize:bucket=7,bits=" + std::to_string(bits)).c_str()) ==
            8 * nb7 + cdiv(d * bits, 8));
    CHECK(payload("terngrad:bucket=7") == 4 * nb7 + cdiv(2 * d, 8));
    CHECK(payload("sign:bucket=7") == 4 * nb7 + cdiv(d, 8));
    CHECK(payload("sign") == 4 * nb0 + cdiv(d, 8));
    CHECK(payload("topk:k=10") == 8 * std::min<std::size_t>(10, d));
    CHECK(payload("topk:ratio=0.01") == 8 * cdiv(d, 100));
    CHECK(payload("randomk:k=10") == 8 + 4 * std::min<std::size_t>(10, d));
    CHECK(payload("randomk:ratio=0.5,unbiased=false") == 8 + 4 * cdiv(d, 2));
    CHECK(payload("threshold:tau=0.5") == 8 * d);  // the most it can be; actual: 8 * count
  }
  // Per-tensor: buckets restart at every tensor.
  const std::vector<std::size_t> layout = {10, 0, 3};
  CHECK(make_codec("qsgd:s=3,bucket=4", layout)->wire_size(13) - kHeaderSize ==
        4 * (3 + 0 + 1) + cdiv(13 * 3, 8));
  CHECK(make_codec("topk:k=5", layout)->wire_size(13) - kHeaderSize == 8 * (5 + 3));
}

TEST_CASE("encode writes exactly wire_size bytes and the documented header") {
  const auto c = make_codec("qsgd:s=3,bucket=7,scaled=true");
  const auto x = r::gaussian(1000, 1);
  std::vector<std::byte> wire(c->wire_size(1000) + 16, std::byte{0xAB});
  CHECK(c->encode(x, {1, 77, 0x123456789ull}, wire) == c->wire_size(1000));
  for (std::size_t i = c->wire_size(1000); i < wire.size(); ++i) CHECK(wire[i] == std::byte{0xAB});
  const WireHeader h = peek_header(wire);
  CHECK(h.magic == 0x4B505347u);
  CHECK(std::memcmp(wire.data(), "GSPK", 4) == 0);
  CHECK(h.codec == static_cast<std::uint8_t>(CodecId::kQsgd));
  CHECK(h.flags == kFlagScaled);
  CHECK(h.p0 == 3);
  CHECK(h.bucket == 7);
  CHECK(h.elements == 1000);
  CHECK(h.payload_bytes == c->wire_size(1000) - kHeaderSize);
  CHECK(h.peer == 77);
  CHECK(h.round == 0x123456789ull);
  CHECK(h.checksum ==
        message_checksum(std::span<const std::byte>(wire.data(), c->wire_size(1000))));
  CHECK_THROWS_AS(c->encode(x, {}, std::span<std::byte>(wire.data(), c->wire_size(1000) - 1)),
                  std::invalid_argument);
}

TEST_CASE("spec strings: canonical form round-trips, bad ones name the parameter") {
  for (const char* s :
       {"identity", "fp16", "bf16", "qsgd:s=3,bucket=512,scaled=true",
        "quantize:bits=2,bucket=0,rounding=nearest", "terngrad:bucket=64", "sign:bucket=512",
        "topk:ratio=0.01", "topk:k=5", "randomk:k=9,unbiased=false", "threshold:tau=0.001"}) {
    const auto c = make_codec(s);
    CHECK(make_codec(c->spec())->spec() == c->spec());
  }
  CHECK(make_codec("qsgd:s=3,bucket=512")->spec() == "qsgd:s=3,bucket=512,scaled=false");
  CHECK(make_codec(" quantize : bits = 2 , rounding = nearest ")->spec() ==
        "quantize:bits=2,bucket=0,rounding=nearest");
  auto message = [](const char* spec) -> std::string {
    try {
      (void)make_codec(spec);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(message("qsgdx").find("unknown codec 'qsgdx'") != std::string::npos);
  CHECK(message("quantize:bits=3").find("'bits' must be one of 1, 2, 4, 8") != std::string::npos);
  CHECK(message("quantize:rounding=up").find("stochastic or nearest") != std::string::npos);
  CHECK(message("qsgd:s=0").find("'s'") != std::string::npos);
  CHECK(message("qsgd:levels=3").find("unknown parameter 'levels'") != std::string::npos);
  CHECK(message("qsgd:s=3,s=4").find("twice") != std::string::npos);
  CHECK(message("qsgd:bucket=-1").find("'bucket'") != std::string::npos);
  CHECK(message("qsgd:scaled=yes").find("true or false") != std::string::npos);
  CHECK(message("topk").find("exactly one of 'k'") != std::string::npos);
  CHECK(message("topk:k=1,ratio=0.1").find("exactly one of 'k'") != std::string::npos);
  CHECK(message("topk:ratio=0").find("'ratio'") != std::string::npos);
  CHECK(message("topk:ratio=1.5").find("'ratio'") != std::string::npos);
  CHECK(message("threshold").find("'tau' is required") != std::string::npos);
  CHECK(message("threshold:tau=nan").find("'tau'") != std::string::npos);
  CHECK(message("identity:bucket=4").find("unknown parameter") != std::string::npos);
  CHECK(message("qsgd:s").find("key=value") != std::string::npos);
}

namespace {

std::string reject_reason(const Codec& c, std::span<const std::byte> msg, std::size_t d) {
  std::vector<float> y(d, 5.0f);
  const auto before = y;
  try {
    c.decode_accumulate(msg, 1.0f, y);
  } catch (const WireError& e) {
    // A rejected message leaves y untouched.
    if (!r::same_bits(y, before)) return "(y was modified)";
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("every kind of bad message is rejected with its reason") {
  const char* specs[] = {"identity",        "fp16",         "qsgd:s=3,bucket=100",
                         "quantize:bits=2", "terngrad",     "sign",
                         "topk:k=20",       "randomk:k=20", "threshold:tau=1"};
  const std::size_t d = 1000;
  const auto x = r::gaussian(d, 2);
  for (const char* spec : specs) {
    CAPTURE(spec);
    const auto c = make_codec(spec);
    std::vector<std::byte> wire(c->wire_size(d));
    wire.resize(c->encode(x, {1, 2, 3}, wire));
    const std::span<const std::byte> msg(wire);
    CHECK(reject_reason(*c, msg, d) == "(accepted)");

    // Truncated anywhere, including inside the header.
    for (std::size_t n :
         {std::size_t{0}, std::size_t{10}, kHeaderSize - 1, kHeaderSize, wire.size() - 1})
      CHECK(reject_reason(*c, msg.first(std::min(n, wire.size() - 1)), d).find("truncated") !=
            std::string::npos);
    // Oversized: a trailing byte.
    auto longer = wire;
    longer.push_back(std::byte{0});
    CHECK(reject_reason(*c, longer, d).find("oversized") != std::string::npos);
    // Wrong codec.
    const auto other = make_codec(std::string(spec) == "identity" ? "fp16" : "identity");
    CHECK(reject_reason(*other, msg, d).find("wrong codec") != std::string::npos);
    // Wrong length: the output has another size.
    CHECK(reject_reason(*c, msg, d + 1).find("wrong length") != std::string::npos);
    // Every single corrupted byte (header or payload) is caught.
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < wire.size(); ++i) {
      auto bad = wire;
      bad[i] ^= std::byte{0x10};
      if (reject_reason(*c, bad, d) == "(accepted)") ++accepted;
    }
    CHECK(accepted == 0);
    // A payload corruption with the header intact is reported as a checksum failure.
    auto bad = wire;
    bad[wire.size() - 1] ^= std::byte{1};
    CHECK(reject_reason(*c, bad, d).find("checksum") != std::string::npos);
  }
  // Same codec name, other parameters.
  const auto a = make_codec("qsgd:s=3"), b = make_codec("qsgd:s=7");
  std::vector<std::byte> wire(a->wire_size(d));
  a->encode(x, {}, wire);
  CHECK(reject_reason(*b, wire, d).find("parameters differ") != std::string::npos);
  // Same parameters, other tensor layout.
  const std::vector<std::size_t> l1 = {500, 500}, l2 = {400, 600};
  const auto la = make_codec("sign", l1), lb = make_codec("sign", l2);
  wire.assign(la->wire_size(d), std::byte{});
  la->encode(x, {}, wire);
  CHECK(reject_reason(*lb, wire, d).find("layout") != std::string::npos);
}

TEST_CASE("a message with a valid checksum but forged sparse indices is rejected") {
  const auto c = make_codec("topk:k=4");
  const auto x = r::gaussian(100, 4);
  std::vector<std::byte> wire(c->wire_size(100));
  c->encode(x, {}, wire);
  auto forge = [&](std::uint32_t first, std::uint32_t second) {
    auto w = wire;
    std::memcpy(w.data() + kHeaderSize, &first, 4);
    std::memcpy(w.data() + kHeaderSize + 4, &second, 4);
    seal_message(w);  // recompute the checksum as an attacker could
    return reject_reason(*c, w, 100);
  };
  CHECK(forge(1000, 1001).find("out of range") != std::string::npos);
  CHECK(forge(5, 5).find("strictly increasing") != std::string::npos);
  CHECK(forge(0, 1) == "(accepted)");
}

TEST_CASE("encoders refuse what the wire format cannot carry, before writing") {
  // The checks every encoder (host and CUDA) makes through CodecPlan::check_encode.
  const auto check = [](const char* spec, std::uint64_t d, std::uint64_t wire_bytes) {
    const CodecPlan plan(parse_spec(spec), {});
    std::optional<LayoutData> flat;
    const LayoutData& lay = plan.layout_for(d, flat);
    std::string why = "(accepted)";
    try {
      plan.check_encode(lay, d, wire_bytes);
    } catch (const std::invalid_argument& e) {
      why = e.what();
    }
    return why;
  };
  const std::uint64_t any = ~std::uint64_t{0};
  const std::uint64_t noise_limit = std::uint64_t{1} << 34;  // 2^32 Philox blocks of 4 words
  CHECK(check("qsgd:s=3", noise_limit, any) == "(accepted)");
  CHECK(check("qsgd:s=3", noise_limit + 1, any).find("d must be <= 2^34") != std::string::npos);
  CHECK(check("terngrad", noise_limit + 1, any).find("2^34") != std::string::npos);
  CHECK(check("quantize:bits=4", noise_limit + 1, any).find("2^34") != std::string::npos);
  CHECK(check("quantize:bits=4,rounding=nearest", noise_limit + 1, any) == "(accepted)");
  CHECK(check("topk:k=1", std::uint64_t{1} << 32, any).find("u32 indices") != std::string::npos);
  // d so large that the capacity arithmetic would wrap: refused before it is computed.
  CHECK(check("identity", std::uint64_t{1} << 62, 1000).find("at most 2^40") != std::string::npos);
  CHECK(check("sign", 1000, 64 + 4 + 125 - 1) ==
        "encode: wire buffer holds 192 bytes, sign:bucket=0 needs 193 for 1000 elements");
  CHECK(check("sign", 1000, 64 + 4 + 125) == "(accepted)");
  // The host encoder makes the check before it writes a byte.
  const auto x = r::gaussian(1000, 3);
  std::vector<std::byte> small(64 + 4 + 125 - 1, std::byte{0xa5});
  CHECK_THROWS_WITH_AS(make_codec("sign")->encode(x, {}, small),
                       "encode: wire buffer holds 192 bytes, sign:bucket=0 needs 193 for 1000 "
                       "elements",
                       std::invalid_argument);
  CHECK(std::all_of(small.begin(), small.end(), [](std::byte b) { return b == std::byte{0xa5}; }));
}
