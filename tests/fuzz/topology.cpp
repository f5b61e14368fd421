// libFuzzer target for topology files (topology/topology_file.hpp): the input is the TOML text.
//
// Properties checked (a failure aborts, which libFuzzer reports):
//  - parse_topology throws nothing but TopologyFileError, and its message starts with the file
//    name (every error names the file and line);
//  - a topology that parses is written (write_topology, the explicit form) and read back to the
//    same topology: the same hash (n, edges, W bit for bit, endpoints, keys), and writing that
//    gives the same text again (comment lines aside: the first names where the topology came from).
// Generated topologies are limited to 64 peers here: larger ones are valid (up to 10^7 peers)
// and only slower (the round trip writes every edge), which cost the fuzzer inputs, not coverage.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "topology/topology_file.hpp"

namespace {

namespace gt = gossip::topology;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_topology: property violated: %s\n", what);
  std::abort();
}

// Product of [generator] sizes, saturating; 0 when there is no generator table to bound.
std::uint64_t generated_peers(std::string_view text) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error&) {
    return 0;
  }
  const auto* sizes = root["generator"]["sizes"].node();
  if (!sizes) return 0;
  std::uint64_t n = 1;
  const auto times = [&](const toml::node& v) {
    // value_exact: integers only (value<> would convert a float such as 6e40, out of range).
    const auto s = v.value_exact<std::int64_t>();
    if (!s || *s < 1) return;
    n = static_cast<std::uint64_t>(*s) > UINT64_MAX / n ? UINT64_MAX
                                                        : n * static_cast<std::uint64_t>(*s);
  };
  if (const auto* arr = sizes->as_array()) {
    for (const auto& v : *arr) times(v);
  } else {
    times(*sizes);
  }
  return n;
}

// The text without its comment lines (write_topology's first line names where the topology came
// from: a file name, a generator spec).
std::string without_comments(const std::string& text) {
  std::istringstream in(text);
  std::string out, line;
  while (std::getline(in, line))
    if (!line.starts_with('#')) out += line + '\n';
  return out;
}

}  // namespace

// With GOSSIP_FUZZ_SEED_DIR set, copies the repository's topology files there (the seed corpus;
// GOSSIP_SOURCE_ROOT names the repository).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("GOSSIP_FUZZ_SEED_DIR");
  const char* root = std::getenv("GOSSIP_SOURCE_ROOT");
  if (!dir || !root) return 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(root) / "configs" / "topologies"))
    std::filesystem::copy_file(e.path(), std::filesystem::path(dir) / e.path().filename(),
                               std::filesystem::copy_options::overwrite_existing);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (generated_peers(text) > 64) return 0;
  gt::Topology t;
  try {
    t = gt::parse_topology(text, "fuzz.toml");
  } catch (const gt::TopologyFileError& e) {
    if (std::string_view(e.what()).substr(0, 9) != "fuzz.toml") violated("error without the file");
    return 0;
  }
  std::ostringstream written;
  gt::write_topology(t, written);
  gt::Topology back;
  try {
    back = gt::parse_topology(written.str(), "written.toml");
  } catch (const gt::TopologyFileError& e) {
    std::fprintf(stderr, "%s\n--- written ---\n%s\n", e.what(), written.str().c_str());
    violated("a written topology does not parse");
  }
  if (back.hash() != t.hash()) violated("a written topology reads back as another");
  std::ostringstream again;
  gt::write_topology(back, again);
  if (without_comments(again.str()) != without_comments(written.str())) {
    std::fprintf(stderr, "--- written ---\n%s\n--- again ---\n%s\n", written.str().c_str(),
                 again.str().c_str());
    violated("writing a read-back topology changes the text");
  }
  return 0;
}
