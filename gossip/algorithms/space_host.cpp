// The host space: vectors in ordinary memory, each element-wise functor a plain loop, the host
// codecs of kernels/.

#include <algorithm>
#include <stdexcept>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "gossip/algorithms/space.hpp"

namespace gossip::algorithms {
namespace {

class HostCodec final : public SpaceCodec {
 public:
  HostCodec(std::string_view spec, std::span<const std::size_t> tensor_sizes, std::size_t d)
      : codec_(kernels::make_codec(spec, tensor_sizes)), wire_(codec_->wire_size(d)) {}

  std::string spec() const override { return codec_->spec(); }
  void encode(std::span<const float> x, const kernels::RngKey& key) override {
    bytes_ = codec_->encode(x, key, wire_);
  }
  std::span<const std::byte> message() const override {
    return std::span<const std::byte>(wire_).first(bytes_);
  }
  void accumulate_own(float w, std::span<float> y) override {
    codec_->decode_accumulate(message(), w, y);
  }
  void decode_own(std::span<float> y) override { codec_->decode(message(), y); }
  void decode_accumulate(std::span<const std::byte> message, float w, std::span<float> y) override {
    codec_->decode_accumulate(message, w, y);
  }
  void decode(std::span<const std::byte> message, std::span<float> y) override {
    codec_->decode(message, y);
  }

 private:
  std::unique_ptr<kernels::Codec> codec_;
  std::vector<std::byte> wire_;
  std::size_t bytes_ = 0;
};

class HostSpace final : public VectorSpace {
 public:
  bool on_device() const override { return false; }

  Buffer alloc(std::size_t n, float fill) override {
    if (n == 0) return {};
    auto* p = new float[n];
    std::fill_n(p, n, fill);
    return Buffer(p, n, [](float* q) noexcept { delete[] q; });
  }
  void run(const ew::Op& op, std::size_t n) override {
    std::visit(
        [n](const auto& f) {
          for (std::size_t k = 0; k < n; ++k) f(k);
        },
        op);
  }
  std::unique_ptr<SpaceCodec> make_codec(std::string_view spec,
                                         std::span<const std::size_t> tensor_sizes,
                                         std::size_t d) override {
    return std::make_unique<HostCodec>(spec, tensor_sizes, d);
  }

 protected:
  void copy_floats(const float* src, float* dst, std::size_t n) override {
    std::copy_n(src, n, dst);
  }
};

}  // namespace

void VectorSpace::transfer(std::span<const float> src, std::span<float> dst, const char* what) {
  if (src.size() != dst.size())
    throw std::invalid_argument(fmt::format("vector space {}: source has {} floats, destination {}",
                                            what, src.size(), dst.size()));
  copy_floats(src.data(), dst.data(), src.size());
}

std::unique_ptr<VectorSpace> make_host_space() {
  return std::make_unique<HostSpace>();
}

}  // namespace gossip::algorithms
