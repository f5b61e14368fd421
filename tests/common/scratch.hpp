#pragma once
// A test's files under the temp folder, removed when the test ends, however it ends (a failed
// REQUIRE or an exception included).

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace gossip::testing {

class Scratch {
 public:
  // dir() is <temp>/gossip_<name>_<pid>; it is not created here.
  explicit Scratch(const std::string& name)
      : dir_(std::filesystem::temp_directory_path() /
             ("gossip_" + name + "_" + std::to_string(::getpid()))) {}
  ~Scratch() {
    std::error_code ec;
    for (const auto& f : files_) std::filesystem::remove(f, ec);
    std::filesystem::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  // Writes `text` to a config file of its own beside dir(); returns the path.
  std::string config(const std::string& text) {
    const std::string path = dir_.string() + "-" + std::to_string(files_.size()) + ".toml";
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  // One more file to remove at the end (an ipc socket, say).
  void also_remove(const std::string& path) { files_.push_back(path); }

 private:
  std::filesystem::path dir_;
  std::vector<std::string> files_;
};

}  // namespace gossip::testing
