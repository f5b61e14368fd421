#pragma once
// Data sets for training: Fashion-MNIST from the Debian package, synthetic problems with a known
// optimum, and seeded partitions across peers.

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gossip::runtime {

// Rows of features (row-major, `dim` floats each) with a class label per row, and for a
// regression problem a real target per row (the label then names the row's group, which the
// by-label and Dirichlet partitions go by).
struct Dataset {
  std::size_t dim = 0;
  int classes = 0;
  std::vector<float> features;  // size() * dim
  std::vector<std::int32_t> labels;
  std::vector<float> targets;  // size() values for regression; empty for classification

  bool regression() const { return !targets.empty(); }

  std::size_t size() const { return labels.size(); }
  std::span<const float> row(std::size_t i) const { return {features.data() + i * dim, dim}; }
  // The rows `index` in that order, as a new data set.
  Dataset subset(std::span<const std::size_t> index) const;
};

struct TrainTest {
  Dataset train, test;
};

// Where `apt-get install dataset-fashion-mnist` puts the IDX files.
inline constexpr std::string_view kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Reads train-{images,labels} and t10k-{images,labels} (IDX, gzip) from `dir`. Pixels are scaled
// to [0, 1] and then standardised with the training set's mean and deviation. A missing folder or
// file throws an error that names it and the Debian package to install.
TrainTest load_fashion_mnist(const std::filesystem::path& dir = kFashionMnistDir);

// Reads one gzip'ed IDX file (ubyte, 1-D labels or 3-D images); throws naming the file.
std::vector<std::uint8_t> read_idx(const std::filesystem::path& path,
                                   std::vector<std::uint32_t>& dims);

// A synthetic classification problem: Gaussian blobs around `classes` random centres in `dim`
// dimensions; seeded.
TrainTest synthetic_blobs(std::size_t dim, int classes, std::size_t train, std::size_t test,
                          std::uint64_t seed);

// Convex problems whose optimum the runtime computes (src/optimum.hpp), for quick checks of an
// algorithm against the exact answer. Rows come from 10 groups (labels 0..9) with their own
// feature means, so by-label partitions give each peer a different local optimum.
//   least squares: targets y = a·w_g + 0.1·noise, with weights w_g per group g;
//   logistic:      two classes, P(y = 1 | a) = σ(a·w_g), the same group structure (labels are
//                  the classes; the groups shape the features only).
TrainTest synthetic_least_squares(std::size_t dim, std::size_t train, std::size_t test,
                                  std::uint64_t seed);
TrainTest synthetic_logistic(std::size_t dim, std::size_t train, std::size_t test,
                             std::uint64_t seed);

enum class PartitionKind { iid, by_label, dirichlet };
PartitionKind parse_partition(std::string_view name);  // "iid", "label", "dirichlet"

// Indices of the training rows peer `rank` of `peers` holds. Every row goes to exactly one peer.
//   iid:       a seeded shuffle cut into equal contiguous shards;
//   by_label:  rows sorted by label (ties in seeded order) cut into equal contiguous shards, so
//              each peer sees one or two classes (McMahan et al. 2017's pathological non-iid);
//   dirichlet: for each class, shares drawn from Dirichlet(alpha) over the peers (Hsu et al. 2019).
std::vector<std::vector<std::size_t>> partition_all(const Dataset& d, PartitionKind kind, int peers,
                                                    std::uint64_t seed, double alpha = 0.5);
// partition_all(...)[rank].
std::vector<std::size_t> partition(const Dataset& d, PartitionKind kind, int peers, int rank,
                                   std::uint64_t seed, double alpha = 0.5);

// The batches one peer takes from its shard: passes over the shard of ⌊shard / batch⌋ batches
// each (the rows left over in a pass wait for a later pass's shuffle), every pass a seeded
// shuffle that is a function of (seed, rank, pass), so batch(t) does not depend on which rounds
// came before (a resumed run sees the same batches).
class ShardOrder {
 public:
  // Throws std::invalid_argument when the shard holds fewer rows than one batch.
  ShardOrder(std::vector<std::size_t> shard, std::size_t batch, std::uint64_t seed, int rank);
  std::size_t batches_per_pass() const { return per_pass_; }
  // The rows of round t's batch; valid until the next call.
  std::span<const std::size_t> batch(std::uint64_t t);

 private:
  std::vector<std::size_t> shard_, order_;
  std::size_t batch_, per_pass_;
  std::uint64_t seed_, pass_ = UINT64_MAX;
  int rank_;
};

}  // namespace gossip::runtime
