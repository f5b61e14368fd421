// Models and data: gradients against finite differences, learning on a separable problem,
// partitions that cover every row once, and the IDX reader on files the test writes.

#include <doctest/doctest.h>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "gossip/inproc_transport.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/data.hpp"
#include "src/runtime/hosts.hpp"
#include "src/runtime/model.hpp"
#include "src/runtime/threads.hpp"
#include "src/runtime/trainer.hpp"
#include "tests/common/scratch.hpp"
#include "topology/generators.hpp"
#include "topology/topology_file.hpp"

using namespace gossip::runtime;
using gossip::testing::Scratch;

TEST_CASE("MLP gradient matches central finite differences") {
  const auto tt = synthetic_blobs(6, 3, 40, 10, 5);
  for (const std::vector<std::size_t>& hidden : {std::vector<std::size_t>{}, {5}, {7, 4}}) {
    Mlp m(6, hidden, 3, 16);
    std::vector<float> x(m.size()), g(m.size()), scratch(m.size());
    m.init(x, 11);
    // Non-zero biases so that every ReLU pattern is exercised away from its kink.
    for (std::size_t k = 0; k < x.size(); ++k) x[k] += 0.01f * static_cast<float>(k % 7);
    const std::vector<std::size_t> batch{0, 3, 5, 8, 13, 21, 34};
    m.loss_grad(x, tt.train, batch, g);
    const float h = 1e-2f;
    double max_err = 0.0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      auto xp = x, xm = x;
      xp[k] += h;
      xm[k] -= h;
      const double fd =
          (m.loss_grad(xp, tt.train, batch, scratch) - m.loss_grad(xm, tt.train, batch, scratch)) /
          (2.0 * h);
      max_err = std::max(max_err, std::abs(fd - g[k]) / std::max(1.0, std::abs(fd)));
    }
    CAPTURE(hidden.size());
    CHECK(max_err < 2e-3);
  }
}

TEST_CASE("layout: tensor sizes add up and split W and b per layer") {
  Mlp m(784, {256, 128}, 10);
  const std::vector<std::size_t> expect{256 * 784, 256, 128 * 256, 128, 10 * 128, 10};
  CHECK(m.tensor_sizes() == expect);
  CHECK(m.size() == std::accumulate(expect.begin(), expect.end(), std::size_t{0}));
}

TEST_CASE("softmax regression and MLP learn separable blobs with plain SGD") {
  const auto tt = synthetic_blobs(20, 4, 2000, 500, 3);
  for (const std::vector<std::size_t>& hidden : {std::vector<std::size_t>{}, {32}}) {
    Mlp m(20, hidden, 4, 64);
    std::vector<float> x(m.size()), g(m.size());
    m.init(x, 1);
    const double before = m.evaluate(x, tt.test).loss;
    std::vector<std::size_t> idx(tt.train.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    for (int epoch = 0; epoch < 3; ++epoch)
      for (std::size_t s = 0; s + 32 <= idx.size(); s += 32) {
        m.loss_grad(x, tt.train, std::span(idx).subspan(s, 32), g);
        for (std::size_t k = 0; k < x.size(); ++k) x[k] -= 0.05f * g[k];
      }
    const auto e = m.evaluate(x, tt.test);
    CHECK(e.loss < before);
    CHECK(e.accuracy > 0.95);
  }
}

TEST_CASE("partitions: every row exactly once; by-label gives few classes per peer") {
  const auto tt = synthetic_blobs(2, 10, 1000, 1, 9);
  for (auto kind : {PartitionKind::iid, PartitionKind::by_label, PartitionKind::dirichlet}) {
    std::vector<int> owner(tt.train.size(), -1);
    for (int r = 0; r < 8; ++r)
      for (auto i : partition(tt.train, kind, 8, r, 42, 0.3)) {
        CHECK(owner[i] == -1);
        owner[i] = r;
      }
    CHECK(std::count(owner.begin(), owner.end(), -1) == 0);
  }
  for (int r = 0; r < 8; ++r) {
    const auto iid = partition(tt.train, PartitionKind::iid, 8, r, 42);
    CHECK(iid.size() == 125);
    std::set<int> classes;
    for (auto i : partition(tt.train, PartitionKind::by_label, 8, r, 42))
      classes.insert(tt.train.labels[i]);
    CHECK(classes.size() <= 3);
  }
  CHECK(partition(tt.train, PartitionKind::iid, 8, 3, 42) ==
        partition(tt.train, PartitionKind::iid, 8, 3, 42));
  CHECK(partition(tt.train, PartitionKind::iid, 8, 3, 42) !=
        partition(tt.train, PartitionKind::iid, 8, 3, 43));
  CHECK_THROWS_AS(partition(tt.train, PartitionKind::iid, 8, 8, 42), std::invalid_argument);
  CHECK_THROWS_WITH(parse_partition("random"), doctest::Contains("known: iid, label, dirichlet"));
}

TEST_CASE("partitions: Dirichlet draws its own shares for every class, by the seed") {
  // One share vector for all classes would give every class the same split over the peers and
  // still put every row exactly once: the test above could not tell.
  const auto tt = synthetic_blobs(2, 10, 2000, 1, 9);
  const int peers = 8, classes = 10;
  const auto split = [&](std::uint64_t seed) {
    std::vector<std::vector<double>> frac(classes, std::vector<double>(peers, 0.0));
    std::vector<double> size(classes, 0.0);
    const auto shards = partition_all(tt.train, PartitionKind::dirichlet, peers, seed, 0.1);
    for (int r = 0; r < peers; ++r)
      for (auto i : shards[static_cast<std::size_t>(r)]) {
        const auto c = static_cast<std::size_t>(tt.train.labels[i]);
        frac[c][static_cast<std::size_t>(r)] += 1.0;
        size[c] += 1.0;
      }
    for (std::size_t c = 0; c < frac.size(); ++c) {
      REQUIRE(size[c] > 100.0);
      for (double& f : frac[c]) f /= size[c];
    }
    return frac;
  };
  const auto frac = split(42);
  // alpha = 0.1: each class sits mostly on one or two peers, not the same ones for every class.
  std::set<std::size_t> argmax;
  double tv_sum = 0.0;
  int pairs = 0;
  for (int a = 0; a < classes; ++a) {
    const auto& fa = frac[static_cast<std::size_t>(a)];
    argmax.insert(static_cast<std::size_t>(std::max_element(fa.begin(), fa.end()) - fa.begin()));
    for (int b = a + 1; b < classes; ++b, ++pairs) {
      double tv = 0.0;
      for (int r = 0; r < peers; ++r)
        tv += std::abs(fa[static_cast<std::size_t>(r)] -
                       frac[static_cast<std::size_t>(b)][static_cast<std::size_t>(r)]);
      tv_sum += tv / 2;
    }
  }
  CHECK(argmax.size() >= 3);
  // Independent Dirichlet(0.1) draws over 8 peers are far apart (total variation near 1); one
  // shared draw would put every pair within rounding of 0.
  CHECK(tv_sum / pairs > 0.5);
  CHECK(split(42) == frac);
  CHECK(split(43) != frac);
}

TEST_CASE("a peer's batches: passes over its whole shard, reshuffled, the same after a resume") {
  std::vector<std::size_t> shard(103);
  std::iota(shard.begin(), shard.end(), std::size_t{1000});
  ShardOrder order(shard, 10, 7, 3);
  REQUIRE(order.batches_per_pass() == 10);  // 3 rows of each pass wait for a later one
  std::vector<std::vector<std::size_t>> passes(3);
  for (std::uint64_t t = 0; t < 30; ++t) {
    const auto rows = order.batch(t);
    REQUIRE(rows.size() == 10);
    auto& p = passes[t / 10];
    p.insert(p.end(), rows.begin(), rows.end());
  }
  for (auto& p : passes) {
    std::set<std::size_t> distinct(p.begin(), p.end());
    CHECK(distinct.size() == 100);  // no row twice within a pass
    CHECK(*distinct.begin() >= 1000);
    CHECK(*distinct.rbegin() < 1103);  // only the shard's rows
  }
  CHECK(passes[0] != passes[1]);  // each pass its own shuffle
  // A fresh order (a resumed run) that starts in the middle of pass 2 gives the same batches.
  ShardOrder resumed(shard, 10, 7, 3);
  for (std::uint64_t t = 25; t < 30; ++t) {
    const auto rows = resumed.batch(t);
    CHECK(std::vector<std::size_t>(rows.begin(), rows.end()) ==
          std::vector<std::size_t>(passes[2].begin() + static_cast<std::ptrdiff_t>((t - 20) * 10),
                                   passes[2].begin() + static_cast<std::ptrdiff_t>((t - 19) * 10)));
  }
  ShardOrder other_rank(shard, 10, 7, 4);
  const auto b = other_rank.batch(0);
  CHECK(std::vector<std::size_t>(b.begin(), b.end()) !=
        std::vector<std::size_t>(passes[0].begin(), passes[0].begin() + 10));
  CHECK_THROWS_WITH_AS(
      ShardOrder(std::vector<std::size_t>(9), 10, 7, 5),
      doctest::Contains("peer 5: its shard holds 9 rows, fewer than a batch of 10"),
      std::invalid_argument);
}

TEST_CASE("unequal shards: an epoch is a pass over the data set on average") {
  auto c = parse_run_config("[topology]\nfile = \"ring:4\"\n", "test.toml");
  apply_override(c, "data.dataset=blobs");
  apply_override(c, "data.train_limit=4000");
  apply_override(c, "data.test_limit=100");
  apply_override(c, "model.hidden=[4]");
  apply_override(c, "run.batch_size=10");
  const auto topo = gossip::topology::make_topology(gossip::topology::parse_spec(c.topology));
  const auto data = load_data(c);
  // Shards of 100, 500, 1400 and 2000 rows: 1000 on average, 100 rounds an epoch (not the
  // smallest shard's 10, which would leave most of the large shards unseen).
  std::vector<std::vector<std::size_t>> shards(4);
  std::size_t next = 0;
  for (std::size_t r = 0; r < 4; ++r)
    for (std::size_t k = 0; k < std::array<std::size_t, 4>{100, 500, 1400, 2000}[r]; ++k)
      shards[r].push_back(next++);
  gossip::net::InprocTransport t(std::make_shared<gossip::net::InprocHub>(topo), 0);
  const PeerTrainer trainer(c, topo, 0, t, data, shards);
  CHECK(trainer.rounds_per_epoch() == 100);
  shards[0].resize(9);
  CHECK_THROWS_WITH(PeerTrainer(c, topo, 0, t, data, shards),
                    doctest::Contains("the smallest shard (peer 0's) holds 9 rows, fewer than "
                                      "run.batch_size = 10: raise data.train_limit"));
  apply_override(c, "data.partition=dirichlet");
  CHECK_THROWS_WITH(PeerTrainer(c, topo, 0, t, data, shards),
                    doctest::Contains("10: raise data.alpha (more even shares)"));
}

TEST_CASE("IDX reader: a file the test writes, and the missing-package error") {
  const Scratch scratch("idx");
  const auto& dir = scratch.dir();
  std::filesystem::create_directories(dir);
  auto write = [&](const char* name, std::vector<unsigned char> bytes) {
    gzFile f = gzopen((dir / name).c_str(), "wb");
    REQUIRE(f != nullptr);
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  };
  // 3 images of 2x2 pixels and their labels.
  write("train-images-idx3-ubyte.gz", {0, 0, 8, 3,   0, 0,   0,  3,  0,  0,  0,   2,   0,   0,
                                       0, 2, 0, 255, 0, 255, 10, 20, 30, 40, 255, 255, 255, 255});
  write("train-labels-idx1-ubyte.gz", {0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9});
  write("t10k-images-idx3-ubyte.gz", {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4});
  write("t10k-labels-idx1-ubyte.gz", {0, 0, 8, 1, 0, 0, 0, 1, 4});
  std::vector<std::uint32_t> dims;
  const auto px = read_idx(dir / "train-images-idx3-ubyte.gz", dims);
  CHECK(dims == std::vector<std::uint32_t>{3, 2, 2});
  CHECK(px[5] == 20);
  const auto tt = load_fashion_mnist(dir);
  CHECK(tt.train.size() == 3);
  CHECK(tt.train.dim == 4);
  CHECK(tt.train.labels == std::vector<std::int32_t>{7, 0, 9});
  // Standardised with the training pixels' mean and deviation.
  double mean = 0.0;
  for (float v : tt.train.features) mean += v;
  CHECK(std::abs(mean / 12.0) < 1e-6);
  write("t10k-labels-idx1-ubyte.gz", {0, 0, 8, 1, 0, 0, 0, 1});  // truncated
  CHECK_THROWS_WITH(load_fashion_mnist(dir), doctest::Contains("truncated"));
  std::filesystem::remove_all(dir);
  CHECK_THROWS_WITH(load_fashion_mnist(dir),
                    doctest::Contains("apt-get install dataset-fashion-mnist"));
}

TEST_CASE("IDX reader: a crafted header cannot overflow the size or allocate past the file") {
  const Scratch scratch("idx_crafted");
  const auto& dir = scratch.dir();
  std::filesystem::create_directories(dir);
  auto write = [&](std::vector<unsigned char> bytes) {
    const auto path = dir / "crafted-idx.gz";
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return path;
  };
  std::vector<std::uint32_t> dims;
  // Three dimensions of 2^31: the product, 2^93, wraps to 0 in 64 bits; unchecked, that passed
  // the size check and returned no pixels for 2^93 of them.
  const auto wraps = write({0, 0, 8, 3, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 1, 2, 3});
  CHECK_THROWS_WITH(read_idx(wraps, dims), doctest::Contains("2147483648 x 2147483648"));
  // Two of 2^31 (2^62 bytes, no wrap): refused before anything is allocated.
  const auto huge = write({0, 0, 8, 2, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 1, 2, 3});
  CHECK_THROWS_WITH(read_idx(huge, dims), doctest::Contains("implausible IDX size"));
  // A size that passes the cap but is far more than a file of 20 bytes can hold.
  const auto big = write({0, 0, 8, 1, 0x40, 0, 0, 0, 1, 2, 3});
  CHECK_THROWS_WITH(read_idx(big, dims), doctest::Contains("more than"));
  // A zero dimension is an empty array, not an error.
  const auto empty = write({0, 0, 8, 2, 0, 0, 0, 0, 0x80, 0, 0, 0});
  CHECK(read_idx(empty, dims).empty());
}

TEST_CASE("the CPU backend through the Model interface: layout, init and device") {
  auto c = parse_run_config("[topology]\nfile = \"ring:2\"\n[model]\nhidden = [8]\n", "t.toml");
  const auto tt = synthetic_blobs(6, 3, 40, 10, 5);
  const auto model = make_model(c, tt.train);
  CHECK(model->device() == "cpu");
  // Weights and bias of each layer, in order: 6·8, 8, 8·3, 3.
  CHECK(model->tensor_sizes() == std::vector<std::size_t>{48, 8, 24, 3});
  CHECK(model->describe() == "mlp 6-8-3");
  // The init is a function of the seed alone.
  std::vector<float> a(model->size()), b(model->size());
  model->init(a, 9);
  model->init(b, 9);
  CHECK(a == b);
  model->init(b, 10);
  CHECK(a != b);
  apply_override(c, "model.kind=softmax");
  CHECK(make_model(c, tt.train)->describe() == "softmax regression 6-3");
}

TEST_CASE("a model too large to index is refused before anything is allocated") {
  CHECK_THROWS_WITH_AS(MlpLayout(32, {100000, 100000}, 10),
                       doctest::Contains("has 1e+10 parameters; at most 2^32 - 1"),
                       std::invalid_argument);
  CHECK(MlpLayout(32, {1000, 1000}, 10).size() == 32u * 1000 + 1000 + 1000u * 1000 + 1000 + 10010);
}

TEST_CASE("loss_grad rejects a bad batch before it reads a row") {
  auto c = parse_run_config("[topology]\nfile = \"ring:2\"\n[model]\nhidden = [8]\n", "t.toml");
  const auto tt = synthetic_blobs(6, 3, 40, 10, 5);
  const auto model = make_model(c, tt.train);
  std::vector<float> params(model->size()), grad(model->size());
  model->init(params, 1);
  const std::vector<std::size_t> past_end = {0, 40}, none;
  CHECK_THROWS_WITH_AS(model->loss_grad(params, tt.train, past_end, grad),
                       doctest::Contains("row 40 of a data set of 40 rows"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(model->loss_grad(params, tt.train, none, grad),
                       doctest::Contains("batch of 0 rows"), std::invalid_argument);
  const std::vector<std::size_t> ok = {0, 39};
  CHECK(std::isfinite(model->loss_grad(params, tt.train, ok, grad)));
}

TEST_CASE("run.device = cuda without the CUDA backend or a GPU: an error naming the key") {
  auto c =
      parse_run_config("[topology]\nfile = \"ring:2\"\n[run]\ndevice = \"cuda\"\n", "gpu.toml");
  const auto tt = synthetic_blobs(6, 3, 40, 10, 5);
  if (!cuda_model_built()) {
    CHECK(cuda_device_count() == 0);
    CHECK_THROWS_WITH_AS(check_device(c),
                         doctest::Contains("gpu.toml: run.device = \"cuda\", but this gossip was "
                                           "built without the CUDA backend"),
                         ConfigError);
    CHECK_THROWS_WITH_AS(make_model(c, tt.train), doctest::Contains("run.device"), ConfigError);
    CHECK_THROWS_AS(make_cuda_mlp(6, {}, 3, 8, 0), std::runtime_error);
  } else if (std::string why; cuda_device_count(&why) == 0) {
    MESSAGE("CUDA backend built, no GPU visible (" << why << "): checking the error");
    CHECK_THROWS_WITH_AS(
        check_device(c),
        doctest::Contains("gpu.toml: run.device = \"cuda\", but no CUDA GPU is visible here"),
        ConfigError);
    CHECK_THROWS_WITH_AS(make_model(c, tt.train), doctest::Contains("run.device"), ConfigError);
    CHECK_THROWS_WITH_AS(make_cuda_mlp(6, {}, 3, 8, 0), doctest::Contains("no CUDA GPU"),
                         std::runtime_error);
  } else {
    MESSAGE("a GPU is visible: run.device = cuda is usable, no error to check");
    CHECK_NOTHROW(check_device(c));
  }
  apply_override(c, "run.device=cpu");
  CHECK_NOTHROW(check_device(c));
}

TEST_CASE("GPU choice: topology device, else local rank, else rank, modulo the visible GPUs") {
  CHECK(choose_gpu(2, 5, std::nullopt, 4).device == 2);
  CHECK(choose_gpu(2, 5, std::nullopt, 4).reason == "topology file");
  CHECK(choose_gpu(0, 5, LocalRank{3, "SLURM_LOCALID"}, 4).device == 0);  // the file wins
  const auto local = choose_gpu(std::nullopt, 9, LocalRank{3, "SLURM_LOCALID"}, 4);
  CHECK(local.device == 3);
  CHECK(local.reason == "local rank 3 (SLURM_LOCALID) modulo 4 visible GPUs");
  CHECK(choose_gpu(std::nullopt, 9, LocalRank{5, "MPI_LOCALRANKID"}, 4).device == 1);
  CHECK(choose_gpu(std::nullopt, 9, std::nullopt, 4).device == 1);
  CHECK(choose_gpu(std::nullopt, 9, std::nullopt, 1).device == 0);
  CHECK_THROWS_WITH_AS(choose_gpu(4, 1, std::nullopt, 4),
                       doctest::Contains("peer 1 device = 4, but 4 GPUs are visible"),
                       std::invalid_argument);
  CHECK_THROWS_AS(choose_gpu(std::nullopt, 0, std::nullopt, 0), std::invalid_argument);

  for (const char* var :
       {"GOSSIP_LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
    ::unsetenv(var);
  CHECK_FALSE(local_rank_from_environment().has_value());
  ::setenv("MPI_LOCALRANKID", "2", 1);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  auto lr = local_rank_from_environment();
  REQUIRE(lr.has_value());
  CHECK(lr->value == 1);  // the first variable set, in the documented order
  CHECK(lr->variable == "OMPI_COMM_WORLD_LOCAL_RANK");
  ::setenv("GOSSIP_LOCAL_RANK", "4", 1);  // set by `gossip launch`: comes first
  CHECK(local_rank_from_environment()->value == 4);
  ::unsetenv("GOSSIP_LOCAL_RANK");
  ::setenv("SLURM_LOCALID", "x3", 1);
  CHECK_THROWS_WITH_AS(local_rank_from_environment(),
                       doctest::Contains("SLURM_LOCALID='x3' is not a local rank"),
                       std::invalid_argument);
  for (const char* var :
       {"GOSSIP_LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
    ::unsetenv(var);
}

TEST_CASE("threads per peer: the usable cores shared out, unless the user chose") {
  // Saved and restored: the test must not change what later tests in this process see.
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const char* blas = std::getenv("OPENBLAS_NUM_THREADS");
  const std::string omp_saved = omp ? omp : "", blas_saved = blas ? blas : "";
  ::unsetenv("OMP_NUM_THREADS");
  ::unsetenv("OPENBLAS_NUM_THREADS");
  const int cores = usable_cores();
  CHECK(threads_per_peer(1) == cores);
  CHECK(threads_per_peer(cores) == 1);
  CHECK(threads_per_peer(8 * cores) == 1);  // never 0
  CHECK(describe_threads(8 * cores, threads_per_peer(8 * cores)).find("1 thread each") !=
        std::string::npos);
  ::setenv("OPENBLAS_NUM_THREADS", "3", 1);
  CHECK_FALSE(threads_per_peer(8).has_value());
  ::unsetenv("OPENBLAS_NUM_THREADS");
  ::setenv("OMP_NUM_THREADS", "3", 1);
  CHECK_FALSE(threads_per_peer(8).has_value());
  ::unsetenv("OMP_NUM_THREADS");
  if (omp) ::setenv("OMP_NUM_THREADS", omp_saved.c_str(), 1);
  if (blas) ::setenv("OPENBLAS_NUM_THREADS", blas_saved.c_str(), 1);
}

TEST_CASE("which peers live on this host: ipc, loopback, and this machine's names") {
  CHECK(gossip::topology::endpoint_host("tcp://10.1.2.3:29500") == "10.1.2.3");
  CHECK(gossip::topology::endpoint_host("tcp://[fe80::1]:29500") == "fe80::1");
  CHECK(gossip::topology::endpoint_host("tcp://node7.cluster:1") == "node7.cluster");
  CHECK(gossip::topology::endpoint_host("ipc:///tmp/x.sock").empty());
  const std::set<std::string> names{"10.1.2.3", "node7"};
  CHECK(on_this_host("tcp://10.1.2.3:1", names));
  CHECK(on_this_host("tcp://node7:1", names));
  CHECK_FALSE(on_this_host("tcp://10.1.2.4:1", names));
  CHECK_FALSE(on_this_host("tcp://10.1.2.30:1", names));  // a prefix is not the host
  CHECK(on_this_host("ipc:///tmp/a", names));
  CHECK(on_this_host("tcp://127.0.0.5:1", {}));
  CHECK(on_this_host("tcp://localhost:1", {}));
  CHECK(on_this_host("tcp://[::1]:1", {}));
  std::string text = "name = \"two hosts\"\n";
  for (int r = 0; r < 4; ++r)
    text += fmt::format("[[peer]]\nrank = {}\nendpoint = \"tcp://10.1.2.{}:{}\"\n", r,
                        r < 3 ? 3 : 4, 29500 + r);
  for (int r = 0; r < 4; ++r) text += fmt::format("[[edge]]\npeers = [{}, {}]\n", r, (r + 1) % 4);
  const auto topo = gossip::topology::parse_topology(text, "two_hosts.toml");
  CHECK(peers_on_host_of(topo, 0, names) == 3);
  CHECK(peers_on_host_of(topo, 3, names) == 1);
  CHECK(peers_on_host_of(topo, 3, {}) == 1);
  CHECK(peers_on_host_of(topo, 0, {}) == 3);  // grouped by the host they name
  // The loopback interface is one of this machine's addresses.
  CHECK(this_host_names().contains("127.0.0.1"));
}

TEST_CASE("BLAS slots: never more threads inside OpenBLAS at once than its buffers allow") {
  // Debian's OpenBLAS says MAX_THREADS=64: half of it.
  const int slots = blas_slots();
  CHECK(slots >= 1);
  CHECK(slots <= 64);
  std::atomic<int> inside{0}, most{0};
  std::vector<std::thread> threads;
  const int n = 4 * slots + 8;
  std::latch start(n);  // all at once, as simulate's peer threads start a round
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int k = 0; k < 3; ++k) {
        const BlasSlot slot;
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= slots);
  CHECK(most.load() >= 2);  // the slots are shared, not one at a time
}

TEST_CASE("the launch nonce: GOSSIP_RUN_NONCE in hexadecimal into the transport options") {
  const auto c = parse_run_config("[topology]\nfile = \"ring:2\"\n", "t.toml");
  ::unsetenv("GOSSIP_RUN_NONCE");
  CHECK(transport_options(c, 0).run_nonce == 0);  // started by hand: none
  ::setenv("GOSSIP_RUN_NONCE", "00000000deadbeef", 1);
  CHECK(transport_options(c, 0).run_nonce == 0xdeadbeefull);
  ::setenv("GOSSIP_RUN_NONCE", "12x", 1);
  CHECK_THROWS_WITH(transport_options(c, 0), doctest::Contains("GOSSIP_RUN_NONCE='12x'"));
  ::setenv("GOSSIP_RUN_NONCE", "10000000000000000", 1);  // 17 digits
  CHECK_THROWS_AS(transport_options(c, 0), std::invalid_argument);
  ::unsetenv("GOSSIP_RUN_NONCE");
}

TEST_CASE("the network model and the clock of a run config, into the transport options") {
  auto c = parse_run_config("[topology]\nfile = \"ring:2\"\n", "t.toml");
  apply_override(c, "transport.uplink_mbit=5");
  apply_override(c, "transport.downlink_mbit=100");
  auto o = transport_options(c, 0);
  CHECK(o.link.uplink_bytes_per_s == 625'000.0);
  CHECK(o.link.downlink_bytes_per_s == 12.5e6);
  CHECK_FALSE(o.virtual_time);
  apply_override(c, "transport.clock=virtual");
  // Only peers that are threads of one process share a time line.
  CHECK_THROWS_WITH_AS(transport_options(c, 0),
                       doctest::Contains("t.toml: transport.clock = \"virtual\" works only under "
                                         "`gossip simulate`"),
                       ConfigError);
  o = transport_options(c, 0, true);
  CHECK(o.virtual_time);
  CHECK(o.virtual_cpu);
  apply_override(c, "transport.compute_ms_per_round=12");
  CHECK_FALSE(transport_options(c, 0, true).virtual_cpu);
}
