// CURVE keys as a user handles them: `gossip keygen` (file modes, hex that round-trips, no
// overwriting), the secret key file of a run (refused when others may read it, when it is not
// the rank's, when the topology and the key disagree about CURVE), GOSSIP_SECRET_KEY_FILE and the
// {rank} pattern, and `topo inspect` saying whether a topology is authenticated.

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <fmt/format.h>

#include "gossip/curve_keys.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/session.hpp"
#include "tests/common/run_cli.hpp"
#include "tests/common/scratch.hpp"
#include "topology/topology_file.hpp"

namespace fs = std::filesystem;
namespace gn = gossip::net;
using gossip::runtime::ConfigError;
using gossip::testing::run_cli;
using gossip::testing::Scratch;

namespace {

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

// A keyed ring of `n` over ipc, written to dir/topo.toml, with keys dir/peer-R.{key,pub} made by
// write_key_pair.
std::string keyed_ring(const fs::path& dir, int n) {
  std::string text;
  for (int r = 0; r < n; ++r) {
    const auto pair = gn::write_key_pair(dir / fmt::format("peer-{}", r));
    text += fmt::format("[[peer]]\nrank = {}\nendpoint = \"ipc://{}/s{}\"\npublic_key = \"{}\"\n",
                        r, dir.string(), r, gossip::topology::key_hex(pair.public_key));
  }
  for (int r = 0; r + 1 < n; ++r) text += fmt::format("[[edge]]\npeers = [{}, {}]\n", r, r + 1);
  if (n > 2) text += fmt::format("[[edge]]\npeers = [{}, 0]\n", n - 1);
  const auto path = dir / "topo.toml";
  std::ofstream(path) << text;
  return path.string();
}

struct EnvVar {
  explicit EnvVar(const char* value) {
    if (value)
      ::setenv("GOSSIP_SECRET_KEY_FILE", value, 1);
    else
      ::unsetenv("GOSSIP_SECRET_KEY_FILE");
  }
  ~EnvVar() { ::unsetenv("GOSSIP_SECRET_KEY_FILE"); }
};

}  // namespace

TEST_CASE("keygen: 0600 secret, readable public key, hex that round-trips, never overwrites") {
  Scratch s("keygen");
  fs::create_directories(s.dir());
  const auto name = (s.dir() / "peer-0").string();
  ::umask(022);
  auto r = run_cli("keygen -o " + name);
  REQUIRE(r.code == 0);
  CHECK(mode_of(name + ".key") == 0600);
  CHECK(mode_of(name + ".pub") == 0644);
  // Both files: a comment line, then 64 hex digits.
  const auto key_text = read_all(name + ".key"), pub_text = read_all(name + ".pub");
  CHECK(key_text.starts_with("#"));
  CHECK(pub_text.starts_with("#"));
  const auto secret = gn::read_secret_key_file(name + ".key");
  const auto pub = gn::read_public_key_file(name + ".pub");
  // The printed key is the file's, and the secret key's own public key.
  CHECK(r.out == gossip::topology::key_hex(pub) + "\n");
  CHECK(gn::public_key_of(secret) == pub);
  CHECK(pub_text.find(gossip::topology::key_hex(pub)) != std::string::npos);
  CHECK(key_text.find(gossip::topology::key_hex(secret)) != std::string::npos);
  // Hex -> bytes -> hex is the identity; Z85 is only for libzmq.
  CHECK(gossip::topology::parse_key_hex(gossip::topology::key_hex(pub)) == pub);
  CHECK(gn::z85(pub).size() == 40);

  // A second keygen over either file fails and changes nothing.
  r = run_cli("keygen -o " + name);
  CHECK(r.code != 0);
  CHECK(r.err.find(name + ".key: exists") != std::string::npos);
  CHECK(read_all(name + ".key") == key_text);
  fs::remove(name + ".key");
  r = run_cli("keygen -o " + name);
  CHECK(r.code != 0);
  CHECK(r.err.find(name + ".pub: exists") != std::string::npos);
  CHECK_FALSE(fs::exists(name + ".key"));  // nothing half-written left behind
  CHECK(read_all(name + ".pub") == pub_text);
  // A restrictive umask does not make the public key unreadable to the other peers.
  ::umask(077);
  r = run_cli("keygen -o " + name + "-b");
  ::umask(022);
  REQUIRE(r.code == 0);
  CHECK(mode_of(name + "-b.pub") == 0644);
  CHECK(mode_of(name + "-b.key") == 0600);
}

TEST_CASE("secret key file: too open, not a key, or two keys: refused naming the file") {
  Scratch s("secretfile");
  fs::create_directories(s.dir());
  const auto pair = gn::write_key_pair(s.dir() / "k");
  const auto key = (s.dir() / "k.key").string();
  CHECK(gn::read_secret_key_file(key) == pair.secret_key);
  for (const unsigned mode : {0640u, 0604u, 0660u, 0602u}) {
    CAPTURE(mode);
    REQUIRE(::chmod(key.c_str(), mode) == 0);
    CHECK_THROWS_WITH_AS(
        gn::read_secret_key_file(key),
        doctest::Contains(fmt::format("{}: permissions {:04o} are too open", key, mode).c_str()),
        gn::KeyError);
  }
  REQUIRE(::chmod(key.c_str(), 0400) == 0);  // read-only for the owner is fine
  CHECK(gn::read_secret_key_file(key) == pair.secret_key);
  const auto bad = (s.dir() / "bad.key").string();
  { std::ofstream(bad) << "# comment\n" << std::string(63, 'a') << "\n"; }
  REQUIRE(::chmod(bad.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(gn::read_secret_key_file(bad),
                       doctest::Contains((bad + ":2: not a key").c_str()), gn::KeyError);
  { std::ofstream(bad) << std::string(64, 'a') << "\n\n" << std::string(64, 'b') << "\n"; }
  CHECK_THROWS_WITH_AS(gn::read_secret_key_file(bad),
                       doctest::Contains((bad + ":3: a second key").c_str()), gn::KeyError);
  CHECK_THROWS_AS(gn::read_secret_key_file(s.dir() / "missing.key"), gn::KeyError);
}

TEST_CASE("run config: the secret key must exist exactly with topology keys, and be the rank's") {
  Scratch s("runkeys");
  fs::create_directories(s.dir());
  const auto topo_path = keyed_ring(s.dir(), 3);
  const auto topo = gossip::topology::load_topology(topo_path);
  REQUIRE(topo.authenticated());
  auto config = [&](const std::string& key_file) {
    auto c = gossip::runtime::parse_run_config(
        fmt::format("[topology]\nfile = \"{}\"\n[transport]\nsecret_key_file = \"{}\"\n", topo_path,
                    key_file),
        "run.toml");
    return c;
  };
  const std::string pattern = (s.dir() / "peer-{rank}.key").string();
  EnvVar none(nullptr);
  // {rank} picks each rank's own file.
  for (int r = 0; r < 3; ++r) {
    const auto key = gossip::runtime::curve_secret_key(config(pattern), topo, r);
    REQUIRE(key);
    CHECK(gn::public_key_of(*key) == topo.public_keys[static_cast<std::size_t>(r)]);
  }
  // Another rank's key: refused naming the rank and the file.
  const auto other = (s.dir() / "peer-2.key").string();
  CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(other), topo, 1),
                       doctest::Contains(fmt::format("rank 1: transport.secret_key_file = {}: the "
                                                     "secret key is not rank 1's",
                                                     other)
                                             .c_str()),
                       ConfigError);
  // Keys in the topology, no secret: refused.
  CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(""), topo, 0),
                       doctest::Contains("rank 0 needs its secret key"), ConfigError);
  // A secret, no keys in the topology: refused.
  auto plain = topo;
  plain.public_keys.clear();
  CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(pattern), plain, 0),
                       doctest::Contains("has no public keys"), ConfigError);
  CHECK_FALSE(gossip::runtime::curve_secret_key(config(""), plain, 0));
  // Too open: refused naming the file and the mode.
  const auto open_key = (s.dir() / "peer-0.key").string();
  REQUIRE(::chmod(open_key.c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(pattern), topo, 0),
                       doctest::Contains((open_key + ": permissions 0644 are too open").c_str()),
                       ConfigError);
  REQUIRE(::chmod(open_key.c_str(), 0600) == 0);
  {
    // The environment names the file when the config does not; the config wins when it does.
    EnvVar env(pattern.c_str());
    CHECK(gossip::runtime::curve_secret_key(config(""), topo, 2));
    CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(other), topo, 0),
                         doctest::Contains(("transport.secret_key_file = " + other).c_str()),
                         ConfigError);
  }
  {
    EnvVar env(other.c_str());
    CHECK_THROWS_WITH_AS(gossip::runtime::curve_secret_key(config(""), topo, 0),
                         doctest::Contains(("GOSSIP_SECRET_KEY_FILE = " + other).c_str()),
                         ConfigError);
  }
}

TEST_CASE("CLI: a peer of a keyed topology without its key stops before training; inspect says") {
  Scratch s("clikeys");
  fs::create_directories(s.dir());
  const auto topo_path = keyed_ring(s.dir(), 2);
  const auto cfg =
      s.config(fmt::format("[topology]\nfile = \"{}\"\n[data]\ndataset = \"blobs\"\n", topo_path));
  auto r = run_cli("peer --rank 1 --config " + cfg);
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("rank 1 needs its secret key") != std::string::npos, r.err);
  r = run_cli("peer --rank 1 --config " + cfg +
              " --set transport.secret_key_file=" + (s.dir() / "peer-0.key").string());
  CHECK(r.code != 0);
  CHECK(r.err.find("not rank 1's") != std::string::npos);
  r = run_cli("topo inspect " + topo_path);
  CHECK(r.code == 0);
  CHECK(r.out.find("authenticated         yes: CURVE, 2 public keys") != std::string::npos);
  r = run_cli("topo inspect ring:4");
  CHECK(r.out.find("authenticated         no") != std::string::npos);
}
