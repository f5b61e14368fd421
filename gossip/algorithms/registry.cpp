#include "gossip/algorithms/registry.hpp"

#include <array>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/params.hpp"

namespace gossip::algorithms {

// The factories, one per algorithm source file.
namespace detail {
std::unique_ptr<Algorithm> make_dpsgd(const AlgorithmConfig&, net::Transport&,
                                      const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_dcd_psgd(const AlgorithmConfig&, net::Transport&,
                                         const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_deep_squeeze(const AlgorithmConfig&, net::Transport&,
                                             const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_choco_sgd(const AlgorithmConfig&, net::Transport&,
                                          const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_d2(const AlgorithmConfig&, net::Transport&,
                                   const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_relaysum(const AlgorithmConfig&, net::Transport&,
                                         const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_allreduce_sgd(const AlgorithmConfig&, net::Transport&,
                                              const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_dga(const AlgorithmConfig&, net::Transport&,
                                    const topology::Topology&, std::span<const float>);
std::unique_ptr<Algorithm> make_double_squeeze(const AlgorithmConfig&, net::Transport&,
                                               const topology::Topology&, std::span<const float>);
std::size_t double_squeeze_payload(const AlgorithmConfig&, std::size_t d, int n);
}  // namespace detail

namespace {

using namespace std::string_view_literals;

constexpr std::array kDpsgdAliases = {"d-psgd"sv};
constexpr std::array kDcdAliases = {"dcd"sv};
constexpr std::array kChocoAliases = {"choco"sv};
constexpr std::array kD2Aliases = {"exact-diffusion"sv};
constexpr std::array kRelaysumAliases = {"relaysgd"sv};
constexpr std::array kAllreduceAliases = {"c-psgd"sv};
constexpr std::array kDgaAliases = {"delayed-averaging"sv};
constexpr std::array kDoubleSqueezeAliases = {"double-squeeze"sv};

// Canonical names are what hashes and saved states hold: never rename a row.
const std::array<AlgorithmInfo, 9> kRegistry = {{
    {"dpsgd", kDpsgdAliases, detail::make_dpsgd, false, CodecRule::lossless,
     TopologyNeed::symmetric_w, true, false, true, true, nullptr,
     "D-PSGD (Lian et al. 2017): x_i <- sum_j W_ij x_j - lr g_i; sends the model", ""},
    {"dcd-psgd", kDcdAliases, detail::make_dcd_psgd, false, CodecRule::any,
     TopologyNeed::symmetric_w, false, false, false, true, nullptr,
     "DCD-PSGD (Tang et al. 2018): sends the compressed change of the model",
     "its replicas of the neighbours' models are built from both ends of each edge since round 0"},
    {"deepsqueeze",
     {},
     detail::make_deep_squeeze,
     true,
     CodecRule::any,
     TopologyNeed::symmetric_w,
     false,
     false,
     false,
     true,
     nullptr,
     "DeepSqueeze (Tang et al. 2019): error-compensated compression, consensus step eta",
     ""},
    {"choco-sgd", kChocoAliases, detail::make_choco_sgd, true, CodecRule::any,
     TopologyNeed::symmetric_w, false, false, false, true, nullptr,
     "CHOCO-SGD (Koloskova et al. 2019): compressed public copies, consensus step gamma_c",
     "it keeps s_i = sum_j W_ij xhat_j as a running sum, not the copies xhat_j that a new W would "
     "need"},
    {"d2", kD2Aliases, detail::make_d2, false, CodecRule::lossless, TopologyNeed::symmetric_w,
     false, false, false, true, nullptr,
     "D2 / exact diffusion (Tang et al. 2018): corrects for heterogeneous data",
     "its correction carries the last round's mixing (W (2 x_t - x_{t-1} ...)), derived for one "
     "fixed W"},
    {"relaysum", kRelaysumAliases, detail::make_relaysum, false, CodecRule::any, TopologyNeed::tree,
     false, false, false, true, nullptr,
     "RelaySGD (Vogels et al. 2021): relays sums along a tree, exact average with delays",
     "its relayed sums follow one fixed tree, which a lost peer cuts"},
    {"allreduce", kAllreduceAliases, detail::make_allreduce_sgd, false, CodecRule::identity,
     TopologyNeed::peers, true, true, false, true, nullptr,
     "C-PSGD: ring all-reduce of the gradients, every model identical",
     "it sums over a ring of all n peers, which cannot lose one"},
    {"dga", kDgaAliases, detail::make_dga, false, CodecRule::identity, TopologyNeed::all_pairs,
     true, true, false, false, nullptr,
     "DGA (Zhu et al. 2021): all-reduce of round t applied in round t + delay, while computing",
     "each rank sums one chunk of every peer's direction, which a lost peer takes away"},
    {"doublesqueeze", kDoubleSqueezeAliases, detail::make_double_squeeze, false, CodecRule::any,
     TopologyNeed::all_pairs, true, true, false, false, detail::double_squeeze_payload,
     "DoubleSqueeze (Tang et al. 2019): compressed all-reduce, error feedback on both sides",
     "each rank sums one chunk of every peer's direction, which a lost peer takes away"},
}};

std::string all_aliases() {
  std::vector<std::string_view> names;
  for (const AlgorithmInfo& a : kRegistry)
    for (std::string_view alias : a.aliases) names.push_back(alias);
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

std::span<const AlgorithmInfo> algorithm_registry() {
  return kRegistry;
}

const AlgorithmInfo& find_algorithm(std::string_view name) {
  for (const AlgorithmInfo& a : kRegistry) {
    if (a.name == name) return a;
    for (std::string_view alias : a.aliases)
      if (alias == name) return a;
  }
  throw std::invalid_argument(fmt::format("unknown algorithm '{}': expected one of {} (aliases {})",
                                          name, algorithm_names(), all_aliases()));
}

std::string algorithm_names() {
  std::vector<std::string_view> names;
  for (const AlgorithmInfo& a : kRegistry) names.push_back(a.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string algorithm_help() {
  std::string out;
  for (const AlgorithmInfo& a : kRegistry) {
    out += fmt::format(
        "  {}{}: {}\n", a.name,
        a.aliases.empty() ? std::string() : fmt::format(" ({})", fmt::join(a.aliases, ", ")),
        a.description);
  }
  return out;
}

std::size_t largest_payload(const AlgorithmConfig& config, std::size_t d, int n) {
  const AlgorithmInfo& a = find_algorithm(config.name);
  return a.payload != nullptr ? a.payload(config, d, n) : 0;
}

void fit_transport_options(const AlgorithmConfig& config, net::TransportOptions& options) {
  const AlgorithmInfo& a = find_algorithm(config.name);
  options.exchange_lag = config.staleness;
  options.exchange_interval = config.local_steps;
  options.all_links = a.topology == TopologyNeed::all_pairs;
  options.direct_lag = config.delay;
}

void check_codec(const AlgorithmInfo& algorithm, std::string_view spec) {
  const kernels::CodecId id =
      spec.empty() ? kernels::CodecId::kIdentity : kernels::parse_spec(spec).id;
  switch (algorithm.codecs) {
    case CodecRule::any:
      return;
    case CodecRule::lossless:
      if (id == kernels::CodecId::kIdentity || id == kernels::CodecId::kFp16 ||
          id == kernels::CodecId::kBf16)
        return;
      throw std::invalid_argument(fmt::format(
          "is \"{}\", but {} sends its models themselves: use \"identity\", \"fp16\" or "
          "\"bf16\", or an algorithm that compresses differences ({})",
          spec, algorithm.name, [] {
            std::vector<std::string_view> any;
            for (const AlgorithmInfo& a : kRegistry)
              if (a.codecs == CodecRule::any) any.push_back(a.name);
            return fmt::format("{}", fmt::join(any, ", "));
          }()));
    case CodecRule::identity:
      if (id == kernels::CodecId::kIdentity) return;
      throw std::invalid_argument(fmt::format(
          "is \"{}\", but {} sums fp32 gradients: set it to \"identity\"", spec, algorithm.name));
  }
}

void check_peer_loss(const AlgorithmInfo& algorithm) {
  if (algorithm.peer_loss_refusal.empty()) return;
  std::vector<std::string_view> can;
  for (const AlgorithmInfo& a : kRegistry)
    if (a.peer_loss_refusal.empty()) can.push_back(a.name);
  throw std::invalid_argument(fmt::format(
      "= \"continue\" needs an algorithm that follows the weights changing when a peer is lost; "
      "{} cannot: {}. Use \"stop\", or {}",
      algorithm.name, algorithm.peer_loss_refusal, fmt::join(can, ", ")));
}

void check_staleness(const AlgorithmInfo& algorithm, std::uint32_t staleness) {
  if (staleness == 0 || algorithm.staleness) return;
  std::vector<std::string_view> stale;
  for (const AlgorithmInfo& a : kRegistry)
    if (a.staleness) stale.push_back(a.name);
  throw std::invalid_argument(fmt::format(
      "= {} (overlapped gossip) needs a rule that mixes stale neighbour values and keeps its "
      "invariant; {} has none derived and tested here ({}): use staleness 0, or {}",
      staleness, algorithm.name,
      algorithm.centralized
          ? "every model must stay identical, and a stale average would need a correction term "
            "like delayed gradient averaging's"
          : "its state (public copies, error memories, corrections or relayed sums) is updated "
            "from both ends of an edge in the same round",
      fmt::join(stale, ", ")));
}

}  // namespace gossip::algorithms
