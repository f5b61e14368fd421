#include "src/runtime/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace gossip::runtime {

Dataset Dataset::subset(std::span<const std::size_t> index) const {
  Dataset out;
  out.dim = dim;
  out.classes = classes;
  out.features.resize(index.size() * dim);
  out.labels.resize(index.size());
  for (std::size_t k = 0; k < index.size(); ++k) {
    std::copy_n(features.begin() + static_cast<std::ptrdiff_t>(index[k] * dim), dim,
                out.features.begin() + static_cast<std::ptrdiff_t>(k * dim));
    out.labels[k] = labels[index[k]];
  }
  if (regression()) {
    out.targets.resize(index.size());
    for (std::size_t k = 0; k < index.size(); ++k) out.targets[k] = targets[index[k]];
  }
  return out;
}

namespace {

struct GzFile {
  gzFile f = nullptr;
  explicit GzFile(const std::filesystem::path& p) : f(gzopen(p.c_str(), "rb")) {}
  ~GzFile() {
    if (f) gzclose(f);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
};

void read_exact(GzFile& gz, void* dst, std::size_t n, const std::filesystem::path& path) {
  auto* p = static_cast<unsigned char*>(dst);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n, 1u << 30));
    const int got = gzread(gz.f, p, chunk);
    if (got <= 0)
      throw std::runtime_error(fmt::format("{}: truncated or not gzip data", path.string()));
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

std::uint32_t big_endian(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

}  // namespace

std::vector<std::uint8_t> read_idx(const std::filesystem::path& path,
                                   std::vector<std::uint32_t>& dims) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error(fmt::format(
        "{} not found: install the Fashion-MNIST data with `apt-get install dataset-fashion-mnist` "
        "(or set data.path to a folder holding the IDX files)",
        path.string()));
  GzFile gz(path);
  if (!gz.f) throw std::runtime_error(fmt::format("{}: cannot open", path.string()));
  unsigned char magic[4];
  read_exact(gz, magic, 4, path);
  // IDX: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 4)
    throw std::runtime_error(fmt::format("{}: not an unsigned-byte IDX file", path.string()));
  dims.assign(magic[3], 0);
  for (auto& d : dims) {
    unsigned char b[4];
    read_exact(gz, b, 4, path);
    d = big_endian(b);
  }
  // The header is the file's word, not ours: the product is checked against the cap one factor
  // at a time (it cannot wrap), and against what the file can hold before anything is allocated.
  constexpr std::uint64_t kMaxBytes = std::uint64_t{1} << 32;
  const auto shape = [&] { return fmt::format("{}", fmt::join(dims, " x ")); };
  std::uint64_t total = 1;
  for (const auto d : dims) {
    if (d == 0) {
      total = 0;
      break;
    }
    if (total > kMaxBytes / d)
      throw std::runtime_error(
          fmt::format("{}: implausible IDX size: dimensions {} make more than "
                      "2^32 bytes",
                      path.string(), shape()));
    total *= d;
  }
  // Deflate expands at most about 1032-fold; a plain (uncompressed) file holds its own size.
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);
  constexpr std::uint64_t kDeflateRatio = 1032, kSlack = 4096;
  if (!ec && total > file_bytes * kDeflateRatio + kSlack)
    throw std::runtime_error(fmt::format(
        "{}: the header promises {} bytes (dimensions {}), more than a file of {} bytes can hold",
        path.string(), total, shape(), file_bytes));
  // Grown as the bytes arrive: a header that lies about the size costs no more than the file.
  std::vector<std::uint8_t> data;
  constexpr std::uint64_t kChunk = std::uint64_t{1} << 24;
  while (data.size() < total) {
    const std::size_t at = data.size();
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, total - at));
    data.resize(at + n);
    read_exact(gz, data.data() + at, n, path);
  }
  return data;
}

TrainTest load_fashion_mnist(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error(
        fmt::format("Fashion-MNIST folder {} not found: install it with `apt-get install "
                    "dataset-fashion-mnist` (or set data.path)",
                    dir.string()));
  auto load = [&](const char* images, const char* labels) {
    std::vector<std::uint32_t> idims, ldims;
    const auto px = read_idx(dir / images, idims);
    const auto lb = read_idx(dir / labels, ldims);
    if (idims.size() != 3 || ldims.size() != 1 || idims[0] != ldims[0])
      throw std::runtime_error(fmt::format("{}: images and labels do not match", dir.string()));
    Dataset d;
    d.dim = std::size_t{idims[1]} * idims[2];
    d.classes = 10;
    d.features.resize(px.size());
    for (std::size_t k = 0; k < px.size(); ++k) d.features[k] = static_cast<float>(px[k]) / 255.0f;
    d.labels.assign(lb.begin(), lb.end());
    for (auto l : d.labels)
      if (l < 0 || l >= 10)
        throw std::runtime_error(fmt::format("{}: label {} outside 0..9", labels, l));
    return d;
  };
  TrainTest tt{load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")};
  // One mean and deviation over all training pixels: keeps the inputs well scaled for SGD.
  double sum = 0.0, sq = 0.0;
  for (float v : tt.train.features) {
    sum += v;
    sq += double{v} * v;
  }
  const double n = static_cast<double>(tt.train.features.size());
  const double mean = sum / n, sd = std::sqrt(std::max(sq / n - mean * mean, 1e-12));
  for (auto* d : {&tt.train, &tt.test})
    for (float& v : d->features) v = static_cast<float>((v - mean) / sd);
  return tt;
}

namespace {
// A data set of `count` zeroed rows, to be filled.
Dataset rows_of(std::size_t dim, int classes, std::size_t count) {
  Dataset d;
  d.dim = dim;
  d.classes = classes;
  d.features.resize(count * dim);
  d.labels.resize(count);
  return d;
}
}  // namespace

TrainTest synthetic_blobs(std::size_t dim, int classes, std::size_t train, std::size_t test,
                          std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(static_cast<std::size_t>(classes) * dim);
  for (float& c : centres) c = 1.5f * normal(rng);
  auto draw = [&](std::size_t count) {
    Dataset d = rows_of(dim, classes, count);
    for (std::size_t i = 0; i < count; ++i) {
      const auto c = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes));
      d.labels[i] = c;
      for (std::size_t k = 0; k < dim; ++k)
        d.features[i * dim + k] = centres[static_cast<std::size_t>(c) * dim + k] + normal(rng);
    }
    return d;
  };
  TrainTest tt;
  tt.train = draw(train);
  tt.test = draw(test);
  return tt;
}

namespace {

// Rows from 10 groups, each with its own feature mean (2·N(0, I/dim): norm about 2, so the
// problems are well conditioned) and its own weights w_g = w + 0.5·N(0, I/dim), w ~ N(0, I/dim);
// `finish` turns a row's group and ⟨a, w_g⟩ into its label (and its target, for regression:
// then the labels are the groups, otherwise two classes).
template <class Finish>
TrainTest synthetic_convex(std::size_t dim, std::size_t train, std::size_t test, std::uint64_t seed,
                           bool regression, Finish finish) {
  constexpr int kGroups = 10;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> means(kGroups * dim), weights(kGroups * dim), shared(dim);
  for (float& w : shared) w = normal(rng) / std::sqrt(static_cast<float>(dim));
  for (std::size_t g = 0; g < kGroups; ++g)
    for (std::size_t k = 0; k < dim; ++k) {
      means[g * dim + k] = 2.0f * normal(rng) / std::sqrt(static_cast<float>(dim));
      weights[g * dim + k] = shared[k] + 0.5f * normal(rng) / std::sqrt(static_cast<float>(dim));
    }
  auto draw = [&](std::size_t count) {
    Dataset d = rows_of(dim, regression ? kGroups : 2, count);
    if (regression) d.targets.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      const auto g = static_cast<std::size_t>(rng() % kGroups);
      double dot = 0.0;
      for (std::size_t k = 0; k < dim; ++k) {
        const float a = means[g * dim + k] + normal(rng);
        d.features[i * dim + k] = a;
        dot += double{a} * weights[g * dim + k];
      }
      finish(d, i, static_cast<std::int32_t>(g), dot, rng);
    }
    return d;
  };
  TrainTest tt;
  tt.train = draw(train);
  tt.test = draw(test);
  return tt;
}

}  // namespace

TrainTest synthetic_least_squares(std::size_t dim, std::size_t train, std::size_t test,
                                  std::uint64_t seed) {
  return synthetic_convex(
      dim, train, test, seed, true,
      [](Dataset& d, std::size_t i, std::int32_t g, double dot, auto& rng) {
        d.labels[i] = g;
        d.targets[i] = static_cast<float>(dot + 0.1 * std::normal_distribution<double>()(rng));
      });
}

TrainTest synthetic_logistic(std::size_t dim, std::size_t train, std::size_t test,
                             std::uint64_t seed) {
  return synthetic_convex(dim, train, test, seed, false,
                          [](Dataset& d, std::size_t i, std::int32_t, double dot, auto& rng) {
                            const double p = 1.0 / (1.0 + std::exp(-dot));
                            d.labels[i] = std::uniform_real_distribution<double>()(rng) < p ? 1 : 0;
                          });
}

PartitionKind parse_partition(std::string_view name) {
  if (name == "iid") return PartitionKind::iid;
  if (name == "label" || name == "by-label") return PartitionKind::by_label;
  if (name == "dirichlet") return PartitionKind::dirichlet;
  throw std::invalid_argument(
      fmt::format("unknown partition '{}' (known: iid, label, dirichlet)", name));
}

std::vector<std::vector<std::size_t>> partition_all(const Dataset& d, PartitionKind kind, int peers,
                                                    std::uint64_t seed, double alpha) {
  if (peers < 1) throw std::invalid_argument(fmt::format("{} peers: need at least 1", peers));
  const std::size_t n = d.size();
  const auto p = static_cast<std::size_t>(peers);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<std::size_t>> shards(p);
  auto cut = [&](const std::vector<std::size_t>& all) {
    for (std::size_t r = 0; r < p; ++r)
      shards[r].assign(all.begin() + static_cast<std::ptrdiff_t>(all.size() * r / p),
                       all.begin() + static_cast<std::ptrdiff_t>(all.size() * (r + 1) / p));
  };
  switch (kind) {
    case PartitionKind::iid:
      cut(order);
      break;
    case PartitionKind::by_label:
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return d.labels[a] < d.labels[b]; });
      cut(order);
      break;
    case PartitionKind::dirichlet: {
      if (!(alpha > 0.0))
        throw std::invalid_argument(fmt::format("dirichlet alpha must be > 0, got {}", alpha));
      std::gamma_distribution<double> gamma(alpha, 1.0);
      for (int c = 0; c < d.classes; ++c) {
        std::vector<std::size_t> rows;
        for (std::size_t i : order)
          if (d.labels[i] == c) rows.push_back(i);
        std::vector<double> share(p);
        double total = 0.0;
        for (double& s : share) total += (s = gamma(rng));
        // Cumulative cut points over this class's rows.
        double before = 0.0;
        std::size_t lo = 0;
        for (std::size_t r = 0; r < p; ++r) {
          before += share[r];
          const std::size_t hi =
              r + 1 == p ? rows.size()
                         : static_cast<std::size_t>(
                               std::llround(before / total * static_cast<double>(rows.size())));
          shards[r].insert(shards[r].end(), rows.begin() + static_cast<std::ptrdiff_t>(lo),
                           rows.begin() + static_cast<std::ptrdiff_t>(hi));
          lo = hi;
        }
      }
      for (auto& s : shards) std::shuffle(s.begin(), s.end(), rng);
      break;
    }
  }
  return shards;
}

std::vector<std::size_t> partition(const Dataset& d, PartitionKind kind, int peers, int rank,
                                   std::uint64_t seed, double alpha) {
  if (rank < 0 || rank >= peers)
    throw std::invalid_argument(fmt::format("rank {} out of range for {} peers", rank, peers));
  return std::move(partition_all(d, kind, peers, seed, alpha)[static_cast<std::size_t>(rank)]);
}

ShardOrder::ShardOrder(std::vector<std::size_t> shard, std::size_t batch, std::uint64_t seed,
                       int rank)
    : shard_(std::move(shard)),
      batch_(batch),
      per_pass_(batch == 0 ? 0 : shard_.size() / batch),
      seed_(seed),
      rank_(rank) {
  if (per_pass_ == 0)
    throw std::invalid_argument(fmt::format(
        "peer {}: its shard holds {} rows, fewer than a batch of {}", rank, shard_.size(), batch));
}

std::span<const std::size_t> ShardOrder::batch(std::uint64_t t) {
  const std::uint64_t pass = t / per_pass_, pos = t % per_pass_;
  if (pass != pass_) {
    order_ = shard_;
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL +
                        static_cast<std::uint64_t>(rank_) * 1000003ULL + pass);
    std::shuffle(order_.begin(), order_.end(), rng);
    pass_ = pass;
  }
  return {order_.data() + pos * batch_, batch_};
}

}  // namespace gossip::runtime
