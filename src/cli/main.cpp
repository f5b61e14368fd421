// The `gossip` command line: one binary, one subcommand group per layer.

#include <cstdio>
#include <exception>
#include <new>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "src/cli/cli.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "gossip: decentralized training over slow networks.\n"
      "Peers in ring, torus or random-graph topologies exchange compressed model differences.",
      "gossip"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gossip 0.1.0");
  gossip::cli::add_topo_commands(app);
  gossip::cli::add_train_commands(app);
  gossip::cli::add_keygen_command(app);
  auto* bench = app.add_subcommand("bench", "Benchmarks: compression kernels, gossip exchange");
  bench->require_subcommand(1);
  gossip::cli::add_bench_codecs(*bench);
  gossip::cli::add_bench_exchange(*bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::bad_alloc&) {
    fmt::print(stderr,
               "gossip: error: out of memory: the model (model.hidden), the batch "
               "(run.batch_size), the data or the peers of this process need more than this "
               "machine has\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gossip: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
