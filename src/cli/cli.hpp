#pragma once
// Each command group of the `gossip` CLI registers itself on the root app.

#include <CLI/CLI.hpp>

namespace gossip::cli {

// `gossip topo ...`: generate, inspect, compare.
void add_topo_commands(CLI::App& app);

// `gossip simulate`, `gossip peer`, `gossip launch`: training runs (src/cli_train.cpp).
void add_train_commands(CLI::App& app);

// `gossip bench codecs`: codec throughput beside memcpy (src/cli_bench_codecs.cpp).
void add_bench_codecs(CLI::App& bench);

// `gossip bench exchange`: one gossip round between processes beside raw ZeroMQ.
void add_bench_exchange(CLI::App& bench);

// `gossip keygen -o NAME`: a CURVE key pair, NAME.key and NAME.pub (src/cli/keygen.cpp).
void add_keygen_command(CLI::App& app);

}  // namespace gossip::cli
