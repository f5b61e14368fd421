// libFuzzer target for checkpoint files (format 04, src/runtime/trainer.cpp) and, inside them,
// each algorithm's saved state (Algorithm::load): PeerTrainer::resume reads the fuzzer's file.
//
// Input: byte 0 picks the trainer (one per algorithm, each rank 0 of a 4-path with a small MLP)
// and, with bit 7, reseals the file: its last 4 bytes become the CRC32C of the rest, as the writer
// makes them, so that the fuzzer reaches the fields behind the checksum. The rest is the file; it
// is resumed at the round its header names, so the round check does not stop every input.
//
// Properties checked (a failure aborts, which libFuzzer reports):
//  - resume throws nothing but CheckpointError;
//  - a refused file leaves the trainer as it was (round and parameters);
//  - a file that loads is written back (checkpoint()) byte for byte: every field, the state and
//    the checksum.

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "gossip/inproc_transport.hpp"
#include "kernels/crc32c.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/data.hpp"
#include "src/runtime/trainer.hpp"
#include "topology/generators.hpp"

namespace {

namespace fs = std::filesystem;
namespace gr = gossip::runtime;
namespace gn = gossip::net;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_checkpoint: property violated: %s\n", what);
  std::abort();
}

// (algorithm, codec) of each trainer.
constexpr const char* kAlgorithms[][2] = {
    {"dpsgd", "fp16"},        {"choco-sgd", "topk:k=5"}, {"deepsqueeze", "quantize:bits=2"},
    {"dcd-psgd", "qsgd:s=4"}, {"d2", "identity"},        {"relaysum", "sign"},
    {"allreduce", "identity"}};
constexpr std::size_t kTrainers = std::size(kAlgorithms);

struct Folder {
  fs::path path;
  Folder() {
    const fs::path shm = "/dev/shm";  // fast and not on disk when there is one
    path = (fs::is_directory(shm) ? shm : fs::temp_directory_path()) /
           ("gossip-fuzz-checkpoint-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~Folder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct Trainer {
  gr::RunConfig config;
  gossip::topology::Topology topo;
  gr::TrainTest data;
  std::vector<std::vector<std::size_t>> shards;
  std::shared_ptr<gn::InprocHub> hub;
  std::unique_ptr<gn::InprocTransport> transport;
  std::unique_ptr<gr::PeerTrainer> trainer;
};

struct World {
  Folder folder;
  std::vector<std::unique_ptr<Trainer>> trainers;
  World() {
    for (std::size_t i = 0; i < kTrainers; ++i) {
      auto t = std::make_unique<Trainer>();
      t->config = gr::parse_run_config("[topology]\nfile = \"grid:4\"\n", "fuzz.toml");
      for (const std::string o : {"data.dataset=blobs", "data.train_limit=64", "data.test_limit=16",
                                  "model.hidden=[3]", "run.batch_size=8", "algorithm.momentum=0.9"})
        gr::apply_override(t->config, o);
      gr::apply_override(t->config, std::string("algorithm.name=") + kAlgorithms[i][0]);
      gr::apply_override(t->config, std::string("compression.codec=\"") + kAlgorithms[i][1] + "\"");
      gr::apply_override(t->config,
                         "run.output=\"" + (folder.path / std::to_string(i)).string() + "\"");
      t->topo = gossip::topology::make_topology(gossip::topology::parse_spec(t->config.topology));
      t->data = gr::load_data(t->config);
      t->shards = gr::partition_all(t->data.train, gr::parse_partition(t->config.partition), 4,
                                    t->config.seed);
      t->hub = std::make_shared<gn::InprocHub>(t->topo);
      t->transport = std::make_unique<gn::InprocTransport>(t->hub, 0);
      t->trainer = std::make_unique<gr::PeerTrainer>(t->config, t->topo, 0, *t->transport, t->data,
                                                     t->shards);
      trainers.push_back(std::move(t));
    }
  }
};

World& world() {
  static World w;
  return w;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// With GOSSIP_FUZZ_SEED_DIR set, writes each trainer's checkpoint there (the seed corpus), as
// PeerTrainer::checkpoint writes it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  auto& w = world();
  const char* dir = std::getenv("GOSSIP_FUZZ_SEED_DIR");
  if (!dir) return 0;
  for (std::size_t i = 0; i < kTrainers; ++i) {
    const auto file = read_all(w.trainers[i]->trainer->checkpoint());
    std::ofstream out(std::string(dir) + "/seed-" + std::to_string(i), std::ios::binary);
    out.put(static_cast<char>(i));
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  auto& t = *world().trainers[data[0] % kTrainers];
  std::vector<char> file(size - 1);
  if (!file.empty()) std::memcpy(file.data(), data + 1, file.size());
  if ((data[0] & 0x80) && file.size() >= 4) {
    const std::uint32_t crc =
        gossip::kernels::crc32c(std::as_bytes(std::span(file.data(), file.size() - 4)));
    std::memcpy(file.data() + file.size() - 4, &crc, 4);
  }
  // Magic 8, config hash 8, topology hash 8, rank 4, then the round.
  std::uint64_t round = 0;
  if (file.size() >= 36) std::memcpy(&round, file.data() + 28, 8);
  const std::string path = gr::PeerTrainer::checkpoint_path(t.config, 0, round);
  fs::create_directories(fs::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  // Gone when the input is done: checkpoint() keeps only a peer's newest three checkpoints (by
  // round), and files left by earlier inputs would make it delete the one it writes.
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove{path};
  const std::uint64_t round_before = t.trainer->round();
  const std::vector<float> params_before(t.trainer->params().begin(), t.trainer->params().end());
  try {
    t.trainer->resume(round);
  } catch (const gr::CheckpointError&) {
    const auto p = t.trainer->params();
    if (t.trainer->round() != round_before || p.size() != params_before.size() ||
        std::memcmp(p.data(), params_before.data(), p.size() * sizeof(float)) != 0)
      violated("a refused checkpoint changed the trainer");
    return 0;
  }
  if (t.trainer->round() != round) violated("a loaded checkpoint did not set the round");
  if (const auto back = read_all(t.trainer->checkpoint()); back != file) {
    const auto at = std::mismatch(back.begin(), back.end(), file.begin(), file.end());
    std::fprintf(stderr, "written back: %zu bytes, read: %zu, first difference at byte %zu\n",
                 back.size(), file.size(), static_cast<std::size_t>(at.first - back.begin()));
    violated("a loaded checkpoint is not written back byte for byte");
  }
  return 0;
}
