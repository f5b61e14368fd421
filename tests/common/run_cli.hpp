#pragma once
// Runs the `gossip` binary (GOSSIP_EXE, set by meson test) as a user would, for CLI tests.

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace gossip::testing {

struct CliResult {
  int code = -1;
  std::string out, err;
};

// `args` go through the shell: quote what needs it.
inline CliResult run_cli(const std::string& args) {
  const char* exe = std::getenv("GOSSIP_EXE");
  REQUIRE_MESSAGE(exe != nullptr, "GOSSIP_EXE is set by meson test");
  const auto err_path =
      std::filesystem::temp_directory_path() / ("gossip_cli_test_" + std::to_string(::getpid()));
  const std::string cmd = std::string(exe) + " " + args + " 2>" + err_path.string();
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) r.out += buf.data();
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  std::filesystem::remove(err_path);
  return r;
}

}  // namespace gossip::testing
