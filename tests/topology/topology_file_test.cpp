// Topology files: both forms parse, generate -> write -> parse round-trips, and every validation
// error names the file and the line.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <stdexcept>

#include "topology/generators.hpp"
#include "topology/topology_file.hpp"

using namespace gossip::topology;

namespace {

void expect_error(const std::string& text, long line, const std::string& part) {
  CAPTURE(text);
  try {
    parse_topology(text, "t.toml");
    FAIL("no error; expected one at line " << line << " containing '" << part << "'");
  } catch (const TopologyFileError& e) {
    CHECK(e.file() == "t.toml");
    CHECK(e.line() == line);
    CHECK(std::string(e.what()).starts_with("t.toml:" + std::to_string(line) + ": "));
    CHECK_MESSAGE(std::string(e.what()).find(part) != std::string::npos, e.what());
  }
}

// Four peers 0..3 on ipc endpoints: lines 1-8.
const std::string kPeers =
    "[[peer]]\nrank = 0\nendpoint = \"ipc:///tmp/a0\"\n"
    "[[peer]]\nrank = 1\nendpoint = \"ipc:///tmp/a1\"\n"
    "[[peer]]\nrank = 2\nendpoint = \"ipc:///tmp/a2\"\n"
    "[[peer]]\nrank = 3\nendpoint = \"ipc:///tmp/a3\"\n";  // 12 lines

std::string edge(int a, int b) {
  return "[[edge]]\npeers = [" + std::to_string(a) + ", " + std::to_string(b) + "]\n";
}
std::string edge(int a, int b, double w) {
  return edge(a, b) + "weight = " + std::to_string(w) + "\n";
}

}  // namespace

TEST_CASE("generate -> write -> parse reproduces W bit for bit") {
  for (const char* text : {"ring:1", "ring:2", "ring:7", "torus:3x4", "grid:2x3", "complete:5",
                           "star:6,weights=best-constant", "hypercube:8", "exponential:10",
                           "erdos-renyi:12,p=0.4,seed=3", "random-regular:14,d=3,seed=5",
                           "torus:4x4,weights=max-degree"}) {
    CAPTURE(text);
    const auto t = make_topology(parse_spec(text));
    std::ostringstream out;
    write_topology(t, out);
    const auto back = parse_topology(out.str(), "generated.toml");
    REQUIRE(back.size() == t.size());
    CHECK(back.graph.edges() == t.graph.edges());
    for (int i = 0; i < t.size(); ++i)
      for (int j = 0; j < t.size(); ++j) CHECK(back.weight(i, j) == t.weight(i, j));
    CHECK(back.hash() == t.hash());
  }
}

TEST_CASE(
    "endpoints with backslashes and a description with a line break are written back exactly") {
  // Found by fuzz_topology: the explicit form wrote endpoints between quotes unescaped, so "\\\\"
  // read back as "\\" (another endpoint, another hash).
  const std::string text =
      "[generator]\nkind = \"ring\"\nsizes = [2]\nendpoint = "
      "\"tcp://\\\\\\\\127.0.0.1:2500\"\n";
  auto t = parse_topology(text, "a\nb.toml");
  REQUIRE(t.peers[0].endpoint.find("\\\\") != std::string::npos);
  t.description = "line one\nline two";
  std::ostringstream out;
  write_topology(t, out);
  const auto back = parse_topology(out.str(), "written.toml");
  CHECK(back.peers[0].endpoint == t.peers[0].endpoint);
  CHECK(back.hash() == t.hash());
}

TEST_CASE("generator form") {
  const auto t = parse_topology(
      "name = \"t\"\n[generator]\nkind = \"torus\"\nsizes = [3, 4]\nendpoint = "
      "\"tcp://127.0.0.1:7000\"\n"
      "devices = [0,1,2,3,0,1,2,3,0,1,2,3]\n",
      "gen.toml");
  CHECK(t.size() == 12);
  CHECK(t.peers[5].endpoint == "tcp://127.0.0.1:7005");
  CHECK(t.peers[5].device == 1);
  CHECK(t.weight(0, 1) == doctest::Approx(0.2));
  CHECK(t.hash() == make_topology(parse_spec("torus:3x4,endpoint=tcp://127.0.0.1:7000")).hash());
}

TEST_CASE("explicit form: scheme, per-edge weights, matrix") {
  auto t = parse_topology(kPeers + edge(0, 1) + edge(1, 2) + edge(2, 3) + edge(3, 0), "x.toml");
  CHECK(t.weight(0, 1) == doctest::Approx(1.0 / 3));  // metropolis by default
  t = parse_topology(kPeers + edge(0, 1, 0.5) + edge(2, 3, 0.25) + edge(1, 2, 0.1), "x.toml");
  CHECK(t.weight(1, 1) == doctest::Approx(0.4));
  CHECK(t.weight(3, 3) == doctest::Approx(0.75));
  // Top-level keys come before the first [[peer]] table (TOML puts later keys in that table).
  t = parse_topology(
      "matrix = [[0.5, 0.5, 0, 0], [0.5, 0.25, 0.25, 0],\n"
      "[0, 0.25, 0.5, 0.25], [0, 0, 0.25, 0.75]]\n" +
          kPeers,
      "x.toml");
  CHECK(t.graph.edge_count() == 3);
  CHECK(t.weight(2, 3) == 0.25);
}

TEST_CASE("validation errors name the file and the line") {
  expect_error("[generator]\nkind = \"ring\"\nsizes = [4]\ncolour = \"red\"\n", 4,
               "unknown key 'colour'");
  expect_error(kPeers + "flavour = 1\n", 13, "unknown key 'flavour'");
  expect_error(kPeers + edge(0, 1) + "[[edge]]\npeers = [2, 3]\nwieght = 0.1\n", 17,
               "unknown key 'wieght'");
  expect_error(kPeers + edge(0, 1) + edge(1, 2) + edge(1, 0), 18,
               "duplicate edge 0-1 (first at line 13)");
  expect_error(kPeers + edge(0, 1) + edge(2, 2), 16, "self edge");
  expect_error(kPeers + edge(0, 1) + edge(1, 7), 16, "rank 7, out of range");
  expect_error(kPeers + "[[peer]]\nrank = 9\nendpoint = \"ipc:///tmp/a9\"\n", 13,
               "rank 9 is out of range");
  expect_error(
      "[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\n[[peer]]\nrank = 0\nendpoint = \"ipc:///b\"\n",
      4, "rank 0 is listed twice (first at line 1)");
  expect_error(
      "[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\n[[peer]]\nrank = 1\nendpoint = \"ipc:///a\"\n",
      6, "endpoint 'ipc:///a' is used twice (first at line 1)");
  expect_error("[[peer]]\nendpoint = \"ipc:///a\"\n", 1, "needs 'rank'");
  expect_error(kPeers + edge(0, 1, -0.1) + edge(1, 2, 0.3) + edge(2, 3, 0.3), 15,
               "negative weight");
  // Matrix rows are lines 1-4, the peers follow.
  expect_error(
      "matrix = [[0.5, 0.5, 0, 0],\n[0.5, 0.5, 0, 0],\n[0, 0, 0.5, 0.5],\n"
      "[0, 0.01, 0.5, 0.49]]\n" +
          kPeers,
      4, "not symmetric: W[3][1] = 0.01 but W[1][3] = 0");
  expect_error(
      "matrix = [[0.5, 0.5, 0, 0],\n[0.5, 0.5, 0, 0],\n[0, 0, 0.6, 0.5],\n"
      "[0, 0, 0.5, 0.5]]\n" +
          kPeers,
      3, "row 2 of W sums to 1.1");
  expect_error(
      "matrix = [[1.2, -0.2, 0, 0],\n[-0.2, 1.2, 0, 0],\n[0, 0, 0.5, 0.5],\n"
      "[0, 0, 0.5, 0.5]]\n" +
          kPeers,
      1, "negative weight W[0][1]");
  expect_error(
      "matrix = [[0.5, 0.5, 0, 0],\n[0.5, 0.5, 0, 0],\n[0, 0, 0.5, 0.5],\n"
      "[0, 0, 0.5, 0.5]]\n" +
          kPeers + edge(0, 1),
      3, "W[2][3] = 0.5 but there is no edge 2-3");
  // Self weight that breaks the row sum: the peer's own line.
  expect_error(
      "[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\nself_weight = 0.6\n"
      "[[peer]]\nrank = 1\nendpoint = \"ipc:///b\"\n" +
          edge(0, 1, 0.5),
      1, "row 0 of W sums to 1.1");
  // Disconnected: two components of sizes 2 and 2; peer 2 (line 7) cannot reach peer 0.
  expect_error(kPeers + edge(0, 1) + edge(2, 3), 7, "2 components of sizes 2, 2");
  expect_error(kPeers + edge(0, 1, 0.5) + edge(2, 3, 0.5), 7, "disconnected");
  expect_error(kPeers + edge(0, 1, 0.5) + edge(1, 2), 16,
               "edge has no weight while the edge at line 13 has one");
  expect_error("[generator]\nkind = \"ring\"\nsizes = [4]\n" + kPeers, 4,
               "cannot be combined with [generator]");
  expect_error("[generator]\nkind = \"hexagon\"\nsizes = [4]\n", 2,
               "unknown topology kind 'hexagon'");
  expect_error("[generator]\nkind = \"random-regular\"\nsizes = [5]\ndegree = 3\n", 1, "n*d even");
  expect_error("weights = \"metropolis\"\nsizes = 3\n", 2, "unknown key 'sizes'");
  expect_error("[[peer]]\nrank = 0\nendpoint = \"http://x\"\n", 3, "tcp:// or ipc://");
  expect_error("[generator\nkind = \"ring\"\n", 1, "");  // TOML syntax error: its own line
  expect_error("name = \"nothing here\"\n", 1, "no peers");
}

TEST_CASE("every shipped topology file validates") {
  const char* root = std::getenv("GOSSIP_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "GOSSIP_SOURCE_ROOT is set by meson test");
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(root) / "configs/topologies")) {
    if (entry.path().extension() != ".toml") continue;
    CAPTURE(entry.path().string());
    const auto t = load_topology(entry.path());
    CHECK(t.size() >= 1);
    ++count;
  }
  CHECK(count >= 5);
}

TEST_CASE("unreadable file and file-or-spec") {
  CHECK_THROWS_WITH_AS(load_topology("/nonexistent/x.toml"),
                       doctest::Contains("/nonexistent/x.toml:0: cannot open"), TopologyFileError);
  CHECK(load_topology_or_spec("ring:5").size() == 5);
  CHECK_THROWS_WITH_AS(load_topology_or_spec("missing.toml"),
                       doctest::Contains("neither a topology file"), std::invalid_argument);
}

TEST_CASE("weights must be finite numbers, wherever they are read") {
  // NaN fails every comparison, so it passed the sign, symmetry and row-sum checks.
  for (const char* v : {"nan", "-nan", "inf", "+inf", "-inf"}) {
    CAPTURE(v);
    const std::string bad = v;
    expect_error(kPeers + edge(0, 1) + "weight = " + bad + "\n" + edge(1, 2, 0.5) + edge(2, 3, 0.5),
                 15, "'weight' must be a finite number");
    expect_error("[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\nself_weight = " + bad +
                     "\n[[peer]]\nrank = 1\nendpoint = \"ipc:///b\"\n" + edge(0, 1, 0.5),
                 4, "'self_weight' must be a finite number");
    expect_error("matrix = [[0.5, 0.5, 0, 0],\n[0.5, 0.5, 0, 0],\n[0, 0, 0.5, " + bad +
                     "],\n[0, 0, 0.5, 0.5]]\n" + kPeers,
                 3, "a matrix entry must be a finite number");
  }
  expect_error("[generator]\nkind = \"erdos-renyi\"\nsizes = [8]\np = nan\n", 4,
               "'p' must be a finite number");
  expect_error("[generator]\nkind = \"erdos-renyi\"\nsizes = [8]\np = 1.5\n", 4,
               "'p' must be a number in [0, 1]");
}

TEST_CASE("integers are range-checked before they are narrowed, at their line") {
  // 4294967300 became a ring of 4 and 4294967299 a degree of 3.
  expect_error("[generator]\nkind = \"ring\"\nsizes = [4294967300]\n", 3,
               "a size must be an integer in [1, 10000000], got 4294967300");
  expect_error("[generator]\nkind = \"ring\"\nsizes = 4294967300\n", 3, "got 4294967300");
  expect_error("[generator]\nkind = \"torus\"\nsizes = [4,\n0]\n", 4, "got 0");
  expect_error("[generator]\nkind = \"random-regular\"\nsizes = [8]\ndegree = 4294967299\n", 4,
               "'degree' must be an integer in [0, 2147483647], got 4294967299");
  expect_error("[generator]\nkind = \"random-regular\"\nsizes = [8]\ndegree = 3\nseed = -1\n", 5,
               "'seed' must be an integer in [0, 9223372036854775807], got -1");
  expect_error("[generator]\nkind = \"ring\"\nsizes = [2]\ndevices = [0, 4294967296]\n", 4,
               "a device must be an integer in [0, 2147483647]");
  expect_error("[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\ndevice = -1\n", 4,
               "'device' must be an integer in [0, 2147483647], got -1");
  // The product of sizes is checked in 64 bits by the generator (65536 x 65537 crashed).
  expect_error("[generator]\nkind = \"torus\"\nsizes = [65536, 65537]\n", 1,
               "4,295,032,832 peers, more than 10,000,000");
}

TEST_CASE("[generator] refuses keys its kind does not use") {
  expect_error("[generator]\nkind = \"torus\"\nsizes = [4, 4]\np = 0.1\n", 4,
               "kind \"torus\" does not use 'p' (a key of erdos-renyi)");
  expect_error("[generator]\nkind = \"erdos-renyi\"\nsizes = [8]\np = 0.5\ndegree = 3\n", 5,
               "does not use 'degree'");
}

TEST_CASE("a negative diagonal needs best-constant weights") {
  // Three peers, every edge 0.75: W_ii = -0.5 and rho = 1.25, which passed and never converges.
  const std::string peers3 =
      "[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\n[[peer]]\nrank = 1\nendpoint = "
      "\"ipc:///b\"\n[[peer]]\nrank = 2\nendpoint = \"ipc:///c\"\n";  // 9 lines
  expect_error(peers3 + edge(0, 1, 0.75) + edge(1, 2, 0.75) + edge(0, 2, 0.75), 1,
               "peer 0 has a negative self weight W[0][0] = -0.5");
  expect_error(peers3 + edge(0, 1, 0.75) + edge(1, 2, 0.5) + edge(0, 2, 0.25), 4,
               "peer 1 has a negative self weight W[1][1] = -0.25");
  expect_error("matrix = [[-0.5, 0.75, 0.75],\n[0.75, -0.5, 0.75],\n[0.75, 0.75, -0.5]]\n" + peers3,
               1, "W[0][0] = -0.5");
  expect_error(
      "[[peer]]\nrank = 0\nendpoint = \"ipc:///a\"\nself_weight = -0.5\n"
      "[[peer]]\nrank = 1\nendpoint = \"ipc:///b\"\nself_weight = -0.5\n" +
          edge(0, 1, 1.5),
      1, "negative self weight");
  // A best-constant star has a negative centre; written out, it says so and reads back.
  const auto star = make_topology(parse_spec("star:6,weights=best-constant"));
  REQUIRE(star.self_weight(0) < 0.0);
  std::ostringstream out;
  write_topology(star, out);
  CHECK(out.str().find("weights = \"best-constant\"") != std::string::npos);
  CHECK(parse_topology(out.str(), "star.toml").hash() == star.hash());
  // Claiming best-constant for other weights is an error at the row that differs.
  expect_error("weights = \"best-constant\"\n" + peers3 + edge(0, 1, 0.75) + edge(1, 2, 0.75) +
                   edge(0, 2, 0.75),
               2, "but best-constant weights (weights = \"best-constant\" at line 1) give");
  // Without a negative diagonal the file stays plain explicit.
  std::ostringstream ring;
  write_topology(make_topology(parse_spec("ring:5,weights=best-constant")), ring);
  CHECK(ring.str().find("weights =") == std::string::npos);
}

TEST_CASE("directories, devices and huge files are refused by name") {
  const auto dir = std::filesystem::temp_directory_path();
  CHECK_THROWS_WITH_AS(load_topology(dir), doctest::Contains("is a directory"), TopologyFileError);
  CHECK_THROWS_WITH_AS(load_topology_or_spec(dir.string()), doctest::Contains("is a directory"),
                       TopologyFileError);
  if (std::filesystem::exists("/dev/zero"))  // endless: it hung and grew memory
    CHECK_THROWS_WITH_AS(load_topology("/dev/zero"), doctest::Contains("larger than 64 MiB"),
                         TopologyFileError);
  const auto big = dir / ("gossip_big_" + std::to_string(::getpid()) + ".toml");
  { std::ofstream(big) << "name = \"big\"\n"; }
  std::filesystem::resize_file(big, kMaxTopologyFileBytes + 1);  // sparse: no disk used
  CHECK_THROWS_WITH_AS(load_topology(big), doctest::Contains("larger than 64 MiB"),
                       TopologyFileError);
  std::filesystem::remove(big);
}

namespace {
// Peers 0 and 1 with the given endpoints (the second on line 6) and an edge.
std::string two_peers(const std::string& a, const std::string& b) {
  return "[[peer]]\nrank = 0\nendpoint = \"" + a + "\"\n[[peer]]\nrank = 1\nendpoint = \"" + b +
         "\"\n" + edge(0, 1);
}
}  // namespace

TEST_CASE("endpoints: tcp with a host and a port in 1..65535, ipc with an absolute path") {
  // All of these were accepted: ZeroMQ binds a random port for 0, * and 99999 (which it reads
  // modulo 2^16 or refuses at bind time), and the others fail only when the peers start.
  const std::pair<const char*, const char*> bad[] = {
      {"tcp://127.0.0.1:99999", "has a port outside 1..65535"},
      {"tcp://127.0.0.1:65536", "has a port outside 1..65535"},
      {"tcp://127.0.0.1:0", "has a port outside 1..65535"},
      {"tcp://127.0.0.1:*", "needs a port of decimal digits"},
      {"tcp://127.0.0.1:-5", "needs a port of decimal digits"},
      {"tcp://127.0.0.1:+5", "needs a port of decimal digits"},
      {"tcp://127.0.0.1:", "needs a port of decimal digits"},
      {"tcp://127.0.0.1", "has no port"},
      {"tcp://:29500", "has no host"},
      {"tcp://*:29500", "has host *"},
      {"tcp://[::1:29500", "has a malformed [IPv6] host"},
      {"tcp://[]:29500", "has a malformed [IPv6] host"},
      {"tcp://127.0.0.1:29500 ", "contains a space"},
      {" tcp://127.0.0.1:29500", "contains a space"},
      {"tcp://127.0.0.1 :29500", "contains a space"},
      {"ipc://", "has an empty path"},
      {"ipc://relative/path", "needs an absolute path"},
      {"ipc://./p.sock", "needs an absolute path"},
      {"udp://127.0.0.1:29500", "must start with tcp:// or ipc://"},
  };
  for (const auto& [endpoint, message] : bad) {
    const std::string shown(endpoint);  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    expect_error(two_peers("ipc:///tmp/ok", endpoint), 6,
                 "endpoint '" + std::string(endpoint) + "' " + message);
  }
  // A tab, written as TOML's \t escape.
  expect_error(two_peers("ipc:///tmp/ok", "tcp://127.0.0.1:29500\\t"), 6,
               "contains a space or control character");
  for (const char* good :
       {"tcp://127.0.0.1:1", "tcp://127.0.0.1:65535", "tcp://[::1]:29500", "tcp://::1:29500",
        "tcp://node-7.cluster:29500", "tcp://10.0.0.2:080", "ipc:///tmp/gossip-0.sock"}) {
    CAPTURE(std::string(good));
    CHECK(parse_topology(two_peers("ipc:///tmp/ok", good), "t.toml").peers[1].endpoint == good);
  }
}

TEST_CASE("a repeated endpoint is found however it is spelled") {
  // Compared as strings, tcp://127.0.0.1:29500 and tcp://localhost:29500 passed on two ranks.
  const std::pair<const char*, const char*> same[] = {
      {"tcp://127.0.0.1:29500", "tcp://localhost:29500"},
      {"tcp://localhost:29500", "tcp://127.0.0.1:29500"},
      {"tcp://LocalHost:29500", "tcp://localhost:29500"},
      {"tcp://[::1]:29500", "tcp://::1:29500"},
      {"tcp://::1:29500", "tcp://[::1]:29500"},
      {"tcp://127.0.0.1:29500", "tcp://127.0.0.1:029500"},
      {"ipc:///tmp/p.sock", "ipc:///tmp//p.sock"},
      {"ipc:///tmp/p.sock", "ipc:///tmp/./x/../p.sock"},
  };
  for (const auto& [a, b] : same) {
    const std::string shown(b);  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    expect_error(two_peers(a, b), 6,
                 "endpoint '" + std::string(b) + "' is the same socket as '" + a + "' (line 1)");
  }
  // Different sockets: other ports, other addresses (IPv4 and IPv6 loopback are two).
  for (const auto& [a, b] : {std::pair{"tcp://127.0.0.1:29500", "tcp://127.0.0.1:29501"},
                             std::pair{"tcp://127.0.0.1:29500", "tcp://[::1]:29500"},
                             std::pair{"tcp://127.0.0.2:29500", "tcp://localhost:29500"},
                             std::pair{"ipc:///tmp/p.sock", "ipc:///tmp/q.sock"}}) {
    const std::string shown(b);  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    CHECK(parse_topology(two_peers(a, b), "t.toml").size() == 2);
  }
}

TEST_CASE("generator endpoints: every rank's endpoint is checked, at the 'endpoint' line") {
  const std::string head = "name = \"g\"\n[generator]\nkind = \"ring\"\nsizes = [4]\n";
  expect_error(head + "endpoint = \"tcp://127.0.0.1:{rank}\"\n", 5,
               "ring:4,endpoint=tcp://127.0.0.1:{rank}: endpoint 'tcp://127.0.0.1:0' of rank 0 "
               "has a port outside 1..65535");
  expect_error(head + "endpoint = \"tcp://:29500\"\n", 5, "of rank 0 has no host");
  expect_error(head + "endpoint = \"ipc://peer-{rank}.sock\"\n", 5,
               "endpoint 'ipc://peer-0.sock' of rank 0 needs an absolute path");
  expect_error(
      "name = \"g\"\n[generator]\nkind = \"ring\"\nsizes = [12]\nendpoint = "
      "\"tcp://127.0.0.1:6553{rank}\"\n",
      5, "endpoint 'tcp://127.0.0.1:65536' of rank 6 has a port outside 1..65535");
  expect_error(head + "endpoint = \"tcp://127.0.0.1:65534\"\n", 5, "leaves the port range");
  // Specs name themselves instead of a file.
  CHECK_THROWS_WITH_AS(make_topology(parse_spec("ring:4,endpoint=tcp://127.0.0.1:2950{rank} ")),
                       "ring:4,endpoint=tcp://127.0.0.1:2950{rank} : endpoint "
                       "'tcp://127.0.0.1:29500 ' of rank 0 contains a space or control character",
                       EndpointError);
  CHECK_THROWS_WITH_AS(
      make_topology(parse_spec("ring:12,endpoint=tcp://127.0.0.1:6553{rank}")),
      "ring:12,endpoint=tcp://127.0.0.1:6553{rank}: endpoint 'tcp://127.0.0.1:65536' of rank 6 "
      "has a port outside 1..65535",
      EndpointError);
  CHECK(make_topology(parse_spec("ring:6,endpoint=tcp://127.0.0.1:6553{rank}")).peers[5].endpoint ==
        "tcp://127.0.0.1:65535");
}

TEST_CASE("public keys: every peer or none, 64 hex digits, distinct; errors at their line") {
  const std::string k0(64, 'a'), k1(64, 'B'), k2 = std::string(63, '0') + "1", k3(64, '7');
  auto keyed = [&](int rank, const std::string& key) {
    return "[[peer]]\nrank = " + std::to_string(rank) + "\nendpoint = \"ipc:///tmp/a" +
           std::to_string(rank) + "\"\npublic_key = \"" + key + "\"\n";  // 4 lines
  };
  const std::string ring = edge(0, 1) + edge(1, 2) + edge(2, 3) + edge(3, 0);
  const auto t =
      parse_topology(keyed(0, k0) + keyed(1, k1) + keyed(2, k2) + keyed(3, k3) + ring, "t.toml");
  REQUIRE(t.public_keys.size() == 4);
  CHECK(t.authenticated());
  CHECK(key_hex(t.public_keys[1]) == std::string(64, 'b'));  // either case in, lowercase out
  CHECK(t.public_keys[2][31] == 1);
  CHECK(t.public_keys[2][0] == 0);
  // Keys enter the hash; a file without keys hashes as before they existed.
  const auto plain = parse_topology(kPeers + ring, "t.toml");
  CHECK_FALSE(plain.authenticated());
  auto stripped = t;
  stripped.public_keys.clear();
  CHECK(stripped.hash() == plain.hash());
  CHECK(t.hash() != plain.hash());
  auto other = t;
  other.public_keys[3][5] ^= 1;
  CHECK(other.hash() != t.hash());
  // Written back with the keys.
  std::ostringstream out;
  write_topology(t, out);
  CHECK(parse_topology(out.str(), "w.toml").public_keys == t.public_keys);

  // Some peers keyed: the error names the first unkeyed peer's line and the keyed one's.
  expect_error(keyed(0, k0) + "[[peer]]\nrank = 1\nendpoint = \"ipc:///tmp/a1\"\n" + keyed(2, k2) +
                   keyed(3, k3) + ring,
               5, "no 'public_key' while the peer at line 1 has one");
  expect_error("[[peer]]\nrank = 0\nendpoint = \"ipc:///tmp/a0\"\n" + keyed(1, k1) + keyed(2, k2) +
                   keyed(3, k3) + ring,
               1, "while the peer at line 4 has one");
  // Bad hex, wrong length, not a string, the same key twice.
  expect_error(
      keyed(0, k0) + keyed(1, std::string(63, 'a') + "g") + keyed(2, k2) + keyed(3, k3) + ring, 8,
      "not a hex digit");
  expect_error(keyed(0, k0) + keyed(1, k1) + keyed(2, std::string(62, 'a')) + keyed(3, k3) + ring,
               12, "got 62 digits");
  expect_error(keyed(0, k0) + keyed(1, k1) + keyed(2, k2) +
                   "[[peer]]\nrank = 3\nendpoint = \"ipc:///tmp/a3\"\npublic_key = 7\n" + ring,
               16, "must be a string");
  expect_error(keyed(0, k0) + keyed(1, k1) + keyed(2, k2) + keyed(3, k1) + ring, 16,
               "peer 3 has the public key of peer 1 (line 8)");
}

TEST_CASE("public keys in the generator form: one per rank, in rank order") {
  const std::string k(64, 'c');
  const std::string head = "[generator]\nkind = \"ring\"\nsizes = [3]\n";
  const auto t = parse_topology(head + "public_keys = [\"" + std::string(64, 'a') + "\", \"" +
                                    std::string(64, 'b') + "\", \"" + k + "\"]\n",
                                "g.toml");
  REQUIRE(t.public_keys.size() == 3);
  CHECK(key_hex(t.public_keys[2]) == k);
  expect_error(head + "public_keys = [\"" + k + "\"]\n", 4, "lists 1 keys for 3 peers");
  expect_error(
      head + "public_keys = [\n\"" + std::string(64, 'a') + "\",\n\"xyz\",\n\"" + k + "\"]\n", 6,
      "a public key must be 64 hex digits");
  expect_error(
      head + "public_keys = [\n\"" + k + "\",\n\"" + std::string(64, 'a') + "\",\n\"" + k + "\"]\n",
      7, "peer 2 has the public key of peer 0 (line 5)");
}
