// libFuzzer target for run configs (src/runtime/config.hpp): the TOML text and --set overrides.
// Input: the text, then optionally a NUL byte and overrides separated by NUL bytes
// ("section.key=value", as `--set` takes them).
//
// Properties checked (a failure aborts, which libFuzzer reports):
//  - parse_run_config throws nothing but ConfigError, and its message names the file or the
//    override;
//  - a config that parses is written (to_toml) and read back to the same config: the same text
//    again and the same hashes (what peers and checkpoints compare);
//  - apply_override on a parsed config either applies or throws ConfigError and leaves the config
//    unchanged.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "src/runtime/config.hpp"

namespace {

namespace gr = gossip::runtime;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_config: property violated: %s\n", what);
  std::abort();
}

bool same(const gr::RunConfig& a, const gr::RunConfig& b) {
  return a.to_toml() == b.to_toml() &&
         a.hash(gr::RunConfig::Scope::peers) == b.hash(gr::RunConfig::Scope::peers) &&
         a.hash(gr::RunConfig::Scope::resume) == b.hash(gr::RunConfig::Scope::resume);
}

}  // namespace

// With GOSSIP_FUZZ_SEED_DIR set, writes the seed corpus there: the repository's run configs
// (GOSSIP_SOURCE_ROOT names it), alone and with a few overrides.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("GOSSIP_FUZZ_SEED_DIR");
  const char* root = std::getenv("GOSSIP_SOURCE_ROOT");
  if (!dir || !root) return 0;
  int k = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(root) / "configs")) {
    if (e.path().extension() != ".toml") continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    using namespace std::string_literals;
    for (const std::string& tail :
         {""s, "\0run.epochs=0.5\0compression.codec=qsgd:s=4"s,
          "\0algorithm.lr_decay_epochs=[1, 2.5]\0transport.receive_window=2"s}) {
      std::ofstream out(std::string(dir) + "/seed-" + std::to_string(k++), std::ios::binary);
      out << text << tail;
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  const std::string text(input.substr(0, nul));
  std::vector<std::string> overrides;
  if (nul != std::string_view::npos) {
    for (std::size_t at = nul + 1; at <= input.size();) {
      const auto end = std::min(input.find('\0', at), input.size());
      overrides.emplace_back(input.substr(at, end - at));
      at = end + 1;
    }
  }
  gr::RunConfig c;
  try {
    c = gr::parse_run_config(text, "fuzz.toml", overrides);
  } catch (const gr::ConfigError& e) {
    const std::string_view what = e.what();
    if (!what.starts_with("fuzz.toml") && !what.starts_with("--set "))
      violated("error names neither the file nor the override");
    return 0;
  }
  const std::string written = c.to_toml();
  gr::RunConfig back;
  try {
    back = gr::parse_run_config(written, "written.toml");
  } catch (const gr::ConfigError& e) {
    std::fprintf(stderr, "%s\n--- written ---\n%s\n", e.what(), written.c_str());
    violated("a written config does not parse");
  }
  if (!same(back, c)) {
    std::fprintf(stderr, "--- written ---\n%s\n--- read back ---\n%s\n", written.c_str(),
                 back.to_toml().c_str());
    violated("a written config reads back as another");
  }
  for (const auto& o : overrides) {
    gr::RunConfig edited = c;
    try {
      gr::apply_override(edited, o);
    } catch (const gr::ConfigError&) {
      if (!same(edited, c)) violated("a refused override changed the config");
    }
  }
  return 0;
}
