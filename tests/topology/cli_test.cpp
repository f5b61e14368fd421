// The `gossip topo` commands as a user runs them: exit codes, one-line errors, JSON keys.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/common/run_cli.hpp"

namespace {
auto run(const std::string& args) {
  return gossip::testing::run_cli(args);
}
}  // namespace

TEST_CASE("inspect --json has the documented keys and values") {
  const auto r = run("topo inspect ring:8 --json --matrix");
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"peers", "edges", "lambda_2", "lambda_n", "rho", "spectral_gap", "beta",
                          "rounds_to_1e-6", "measured_contraction", "W"})
    CHECK_MESSAGE(j.contains(key), key);
  CHECK(j["peers"] == 8);
  CHECK(j["W"].size() == 8);
  CHECK(j["W"][0][1].get<double>() == doctest::Approx(1.0 / 3));
  CHECK(j["lambda_2"].get<double>() == doctest::Approx(1.0 / 3 + 2.0 / 3 * std::cos(M_PI / 4)));
  CHECK(j["tree"] == false);
}

TEST_CASE("inspect says whether the graph is a tree, as RelaySum needs") {
  for (const char* spec : {"grid:8", "star:5", "ring:1", "ring:2"}) {
    const auto r = run(std::string("topo inspect ") + spec + " --json");
    REQUIRE(r.code == 0);
    CHECK_MESSAGE(nlohmann::json::parse(r.out)["tree"] == true, spec);
  }
  for (const char* spec : {"ring:3", "torus:3x3", "complete:4"}) {
    const auto r = run(std::string("topo inspect ") + spec + " --json");
    REQUIRE(r.code == 0);
    CHECK_MESSAGE(nlohmann::json::parse(r.out)["tree"] == false, spec);
  }
  const auto text = run("topo inspect grid:8");
  CHECK(text.out.find("yes: RelaySum averages every peer, the farthest 6 rounds late") !=
        std::string::npos);
}

TEST_CASE("generate writes a file that inspect accepts, and the two agree") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gossip_gen_" + std::to_string(::getpid()) + ".toml");
  auto r = run("topo generate torus 3 4 --weights best-constant -o " + path.string());
  REQUIRE(r.code == 0);
  r = run("topo inspect " + path.string() + " --json");
  REQUIRE(r.code == 0);
  const auto from_file = nlohmann::json::parse(r.out);
  r = run("topo inspect torus:3x4,weights=best-constant --json");
  const auto from_spec = nlohmann::json::parse(r.out);
  CHECK(from_file["rho"].get<double>() == from_spec["rho"].get<double>());
  std::filesystem::remove(path);
}

TEST_CASE("one-peer exponential: inspect reports one peer per round and the period's product") {
  auto r = run("topo inspect one-peer-exponential:16 --json");
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["time_varying"] == true);
  CHECK(j["period"] == 4);
  CHECK(j["send_degree_max"] == 1);
  CHECK(j["receive_degree_max"] == 1);
  CHECK(j["union_degree_max"] == 7);  // the links opened once: hops +-1, +-2, +-4, 8
  CHECK(j["exact_average"] == true);
  CHECK(j["rho_period"].get<double>() == 0.0);
  CHECK(j["rounds_to_1e-6"] == 4);
  CHECK(j["measured_contraction"].get<double>() < 1e-12);
  CHECK_FALSE(j.contains("lambda_2"));  // there is no single W
  r = run("topo inspect one-peer-exponential:12 --json");
  REQUIRE(r.code == 0);
  j = nlohmann::json::parse(r.out);
  CHECK(j["exact_average"] == false);
  const double rho = j["rho_period"].get<double>();
  CHECK(rho > 0.0);
  CHECK(rho < 1.0);
  CHECK(j["measured_contraction_period"].get<double>() <= rho + 1e-9);
  CHECK(j["measured_contraction"].get<double>() ==
        doctest::Approx(std::pow(j["measured_contraction_period"].get<double>(), 1.0 / 4)));
  const auto text = run("topo inspect one-peer-exponential:8");
  CHECK(text.out.find("sends to 1..1, takes from 1..1 peers") != std::string::npos);
  CHECK(text.out.find("every 3 rounds average exactly") != std::string::npos);
  // --matrix: one W per round of the period, each row two halves.
  r = run("topo inspect one-peer-exponential:4 --json --matrix");
  REQUIRE(r.code == 0);
  j = nlohmann::json::parse(r.out);
  REQUIRE(j["W"].size() == 2);
  CHECK(j["W"][1][2][0].get<double>() == 0.5);  // round 1: peer 2 takes from 2 - 2 = 0
  CHECK(j["W"][1][0][2].get<double>() == 0.5);  // and peer 0 from 0 - 2 = 2
  CHECK(j["W"][0][0][1].get<double>() == 0.0);  // round 0: peer 0 takes from 3, not 1
}

TEST_CASE("one-peer exponential: generate writes a file that loads back the same schedule") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gossip_onepeer_" + std::to_string(::getpid()) + ".toml");
  auto r = run("topo generate one-peer-exponential 6 -o " + path.string());
  REQUIRE(r.code == 0);
  CHECK(r.err.find("time-varying: period 3") != std::string::npos);
  r = run("topo inspect " + path.string() + " --json");
  REQUIRE(r.code == 0);
  const auto from_file = nlohmann::json::parse(r.out);
  const auto from_spec =
      nlohmann::json::parse(run("topo inspect one-peer-exponential:6 --json").out);
  CHECK(from_file["rho_period"].get<double>() == from_spec["rho_period"].get<double>());
  CHECK(from_file["period"] == 3);
  std::filesystem::remove(path);
  r = run("topo generate one-peer-exponential 8 --weights metropolis");
  CHECK(r.code != 0);
  CHECK(r.err.find("has its own weights") != std::string::npos);
  r = run("topo compare one-peer-exponential:8 exponential:8");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("one-peer-exponential:8") != std::string::npos);
}

TEST_CASE("best-constant star above the dense limit: generate writes a file inspect accepts") {
  // The sparse solver's nonsense Laplacian extremes gave weights inspect then refused.
  const auto path = std::filesystem::temp_directory_path() /
                    ("gossip_star_" + std::to_string(::getpid()) + ".toml");
  auto r = run("topo generate star 2001 --weights best-constant -o " + path.string());
  REQUIRE(r.code == 0);
  r = run("topo inspect " + path.string() + " --json");
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["rho"].get<double>() == doctest::Approx(2000.0 / 2002));
  std::filesystem::remove(path);
  r = run("topo inspect star:3000 --json");  // said lambda_2 = 4.02e26
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["lambda_2"].get<double>() == doctest::Approx(1 - 1 / 3000.0));
  r = run("topo inspect complete:4 --dense-limit 1 --json");  // TridiagEigen failed
  REQUIRE(r.code == 0);
  CHECK(std::abs(nlohmann::json::parse(r.out)["rho"].get<double>()) < 1e-9);
}

TEST_CASE("best-constant on a star: inspect says the diagonal is negative") {
  const auto r = run("topo inspect star:6,weights=best-constant");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("negative diagonal") != std::string::npos);
}

TEST_CASE("compare prints one row per topology") {
  const auto r = run("topo compare ring:8 torus:3x3 exponential:8");
  REQUIRE(r.code == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 4);
}

TEST_CASE("compare: columns stay apart whatever the values") {
  // "never (rho >= 1)" was glued to beta ("2.000000never"), and complete:1500's 1124250 edges to
  // its 1500 peers ("   15001124250").
  const auto path = std::filesystem::temp_directory_path() /
                    ("gossip_swap_" + std::to_string(::getpid()) + ".toml");
  std::ofstream(path) << "[[peer]]\nrank = 0\nendpoint = \"ipc:///tmp/gossip-swap-0\"\n"
                         "[[peer]]\nrank = 1\nendpoint = \"ipc:///tmp/gossip-swap-1\"\n"
                         "[[edge]]\npeers = [0, 1]\nweight = 1.0\n";
  const auto r = run("topo compare ring:8 " + path.string() +
                     " complete:1500 random-regular:3000,d=4,seed=123456789012345678");
  std::filesystem::remove(path);
  REQUIRE(r.code == 0);
  std::istringstream lines(r.out);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    rows.emplace_back(std::istream_iterator<std::string>(fields),
                      std::istream_iterator<std::string>());
  }
  REQUIRE(rows.size() == 5);
  CHECK(rows[0].size() == 11);  // "rounds 1e-6" is two words
  CHECK(rows[1].size() == 10);
  REQUIRE(rows[2].size() == 13);  // "never (rho >= 1)" is four
  CHECK(rows[2][8] == "2.000000");
  CHECK(rows[2][9] == "never");
  REQUIRE(rows[3].size() == 10);
  CHECK(rows[3][1] == "1500");
  CHECK(rows[3][2] == "1124250");
  CHECK(rows[3][3] == "1499.00");
  REQUIRE(rows[4].size() == 10);  // the name is longer than its column
  CHECK(rows[4][1] == "3000");
}

TEST_CASE("errors: non-zero exit and one clear line on stderr") {
  for (const char* args :
       {"topo inspect nosuch.toml", "topo generate hexagon 4", "topo generate ring 0",
        "topo inspect ring:8 --frobnicate", "topo generate erdos-renyi 30 --p 0"}) {
    CAPTURE(args);
    const auto r = run(args);
    CHECK(r.code != 0);
    CHECK(!r.err.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);
  }
  const auto bad = std::filesystem::temp_directory_path() /
                   ("gossip_bad_" + std::to_string(::getpid()) + ".toml");
  std::ofstream(bad) << "[generator]\nkind = \"ring\"\nsizes = [4]\nweights = \"uniform\"\n";
  const auto r = run("topo inspect " + bad.string());
  CHECK(r.code != 0);
  CHECK(r.err.find(bad.string() + ":4:") != std::string::npos);
  CHECK(r.err.find("unknown weight scheme 'uniform'") != std::string::npos);
  std::filesystem::remove(bad);
}

TEST_CASE("help explains the options") {
  auto r = run("topo generate --help");
  CHECK(r.code == 0);
  for (const char* opt : {"--weights", "--seed", "--output", "--degree", "--p"})
    CHECK_MESSAGE(r.out.find(opt) != std::string::npos, opt);
  r = run("topo inspect --help");
  for (const char* opt : {"--json", "--matrix"})
    CHECK_MESSAGE(r.out.find(opt) != std::string::npos, opt);
}

TEST_CASE("bad arguments and inputs: a clear error, never a crash, a hang or a wrong message") {
  auto r = run("topo inspect torus:65536x65537");  // crashed with SIGSEGV
  CHECK(r.code == 1);
  CHECK(r.err.find("4,295,032,832 peers, more than 10,000,000") != std::string::npos);
  r = run("topo inspect complete:100000");  // ran for minutes, eating gigabytes
  CHECK(r.code == 1);
  CHECK(r.err.find("more than the limit of 20,000,000") != std::string::npos);
  r = run("topo inspect ring:1 --dense-limit 0");  // leaked Spectra's "nev must satisfy ..."
  CHECK(r.code == 0);
  r = run("topo inspect ring:2 --dense-limit 0 --json");
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["solver"] == "dense (Eigen)");
  r = run("topo inspect ring:4 --dense-limit -1");  // was accepted
  CHECK(r.code != 0);
  CHECK(r.err.find("--dense-limit: Value -1 not in range 0 to") != std::string::npos);
  r = run("topo generate erdos-renyi 16 --p nan");  // said "erdos-renyi needs p"
  CHECK(r.code != 0);
  CHECK(r.err.find("p must be a number in [0, 1], got 'nan'") != std::string::npos);
  r = run("topo generate random-regular 16 --degree -3");  // said "random-regular needs d"
  CHECK(r.err.find("degree must lie in [0, n-1] = [0, 15], got -3") != std::string::npos);
  r = run("topo generate ring 16 --p 0.3");  // p was ignored
  CHECK(r.code != 0);
  CHECK(r.err.find("ring does not use the key 'p'") != std::string::npos);
  r = run("topo generate random-regular 8 --degree 3 --seed 99999999999");
  CHECK(r.code == 0);
  r = run("topo generate random-regular 10 -d 3 --seed 18446744073709551615");
  CHECK(r.code == 0);
  CHECK(r.out.find("seed=18446744073709551615") != std::string::npos);
  // CLI11 wrapped -1 to 2^64 - 1 and saturated 2^64; seed=-1 in a spec was already refused.
  for (const char* seed : {"-1", "18446744073709551616", "1,weights=ring"}) {
    CAPTURE(seed);
    r = run(std::string("topo generate random-regular 10 -d 3 --seed ") + seed);
    CHECK(r.code != 0);
    CHECK(r.out.empty());
    CHECK(r.err.find(std::string("seed must be an integer in [0, 2^64 - 1], got '") + seed + "'") !=
          std::string::npos);
  }
  r = run("topo compare ring:0 torus:4x4");  // printed the table header, then the error
  CHECK(r.code != 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("sizes must be at least 1") != std::string::npos);
  const auto dir = std::filesystem::temp_directory_path().string();
  r = run("topo inspect " + dir);  // said "no peers: write a [generator] table"
  CHECK(r.code != 0);
  CHECK(r.err.find(dir + ":0: is a directory, not a topology file") != std::string::npos);
  if (std::filesystem::exists("/dev/zero")) {
    r = run("topo inspect /dev/zero");  // hung, growing memory
    CHECK(r.code != 0);
    CHECK(r.err.find("larger than 64 MiB") != std::string::npos);
  }
}
