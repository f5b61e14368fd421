#pragma once
// CURVE key pairs (Curve25519, ZeroMQ's RFC 26) as gossip stores them: 32 bytes, written in files
// as 64 hex digits under a comment line. `gossip keygen -o NAME` writes NAME.key (the secret,
// mode 0600) and NAME.pub (the public key, for the topology file); a peer reads its secret with
// read_secret_key_file, which refuses a file that others may read, as ssh does.

#include <array>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "topology/topology.hpp"

namespace gossip::net {

using PublicKey = topology::PublicKey;
using SecretKey = std::array<std::uint8_t, 32>;

class KeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CurveKeyPair {
  PublicKey public_key{};
  SecretKey secret_key{};
};

// A fresh key pair from libzmq (libsodium's random source).
CurveKeyPair generate_key_pair();
// The public key that belongs to `secret`.
PublicKey public_key_of(const SecretKey& secret);

// The 40-character Z85 text libzmq's socket options and ZAP use.
std::string z85(const std::array<std::uint8_t, 32>& key);

// Writes NAME.key (secret: created with O_EXCL and mode 0600, so it is never readable by others,
// not even for a moment) and NAME.pub (mode 0644), 64 hex digits under a comment line each. Refuses
// (KeyError) when either file exists; nothing is left behind on failure.
CurveKeyPair write_key_pair(const std::filesystem::path& name);

// Reads a file of one 64-hex-digit key (lines starting with '#' and blank lines are skipped).
// A secret file must be a regular file that neither group nor others may read or write (KeyError
// naming the file and its mode otherwise).
SecretKey read_secret_key_file(const std::filesystem::path& path);
PublicKey read_public_key_file(const std::filesystem::path& path);

// Why `secret` cannot be rank `rank`'s key in `topo`: "" when it can. Every ZeroMQ peer of a
// topology with public keys needs the secret key that matches its own entry; a secret key for a
// topology without keys is refused too (it would suggest an encryption the run does not have).
std::string secret_key_problem(const topology::Topology& topo, int rank, const SecretKey* secret);

}  // namespace gossip::net
