#pragma once
// Topology files (TOML, edited by hand). Two forms:
//   generator form:  [generator] kind = "torus", sizes = [4, 4], weights = "metropolis", ...
//   explicit form:   [[peer]] rank, endpoint, device?, self_weight?   [[edge]] peers = [a, b],
//   weight?
//                    optionally a top-level `weights` scheme or a full `matrix` of W.
// docs/ARCHITECTURE.md describes every key. Every error names the file and the line.

#include <cstddef>
#include <filesystem>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <string_view>

#include "topology/topology.hpp"

namespace gossip::topology {

class TopologyFileError : public std::runtime_error {
 public:
  TopologyFileError(const std::string& file, long line, const std::string& what);
  const std::string& file() const { return file_; }
  long line() const { return line_; }

 private:
  std::string file_;
  long line_;
};

// Tolerance on row sums and on symmetry of W read from a file.
inline constexpr double kWeightTolerance = 1e-9;

// Largest topology file load_topology reads (64 MiB: a few million explicit edges at most, well
// below the 2·10^7 edges a generator may make); larger files, directories and other non-regular
// files are refused.
inline constexpr std::size_t kMaxTopologyFileBytes = std::size_t{64} << 20;

// Parses and validates TOML text; `name` is used in error messages (usually the path).
Topology parse_topology(std::string_view toml_text, const std::string& name);
Topology load_topology(const std::filesystem::path& path);

// A path to a topology file, or else a generator spec such as "torus:4x4".
Topology load_topology_or_spec(const std::string& file_or_spec);

// Writes the explicit form: every peer with its endpoint (and device, self weight), every edge with
// its weight at full precision, so that parse_topology(write) reproduces W bit for bit.
void write_topology(const Topology& t, std::ostream& out);

}  // namespace gossip::topology
