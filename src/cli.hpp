#pragma once
// Each command group of the `gossip` CLI registers itself on the root app.

#include <CLI/CLI.hpp>

namespace gossip::cli {

// `gossip topo ...`: generate, inspect, compare.
void add_topo_commands(CLI::App& app);

}  // namespace gossip::cli
