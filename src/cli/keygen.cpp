// `gossip keygen -o NAME`: a CURVE key pair for one peer (gossip/curve_keys.hpp).

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "gossip/curve_keys.hpp"
#include "src/cli/cli.hpp"

namespace gossip::cli {

void add_keygen_command(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  auto* k = app.add_subcommand(
      "keygen",
      "Write a CURVE key pair: NAME.key (secret, mode 0600: this peer's "
      "transport.secret_key_file) and NAME.pub (its public_key for the topology file); print the "
      "public key. Refuses to overwrite either file.");
  k->add_option("-o,--output", *name, "Path and name of the pair, e.g. keys/peer-0")->required();
  k->callback([name] {
    const auto pair = net::write_key_pair(*name);
    fmt::print("{}\n", topology::key_hex(pair.public_key));
  });
}

}  // namespace gossip::cli
