#include "src/runtime/model.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "src/runtime/threads.hpp"

namespace gossip::runtime {

namespace {
// cblas_sgemm holding a BlasSlot for the call, so that no more threads are inside OpenBLAS at
// once than its buffers allow (threads.hpp).
template <class... Args>
void blas_sgemm(Args... args) {
  const BlasSlot slot;
  cblas_sgemm(args...);
}
}  // namespace

MlpLayout::MlpLayout(std::size_t inputs, std::vector<std::size_t> hidden, std::size_t classes) {
  if (inputs == 0 || classes < 1)
    throw std::invalid_argument("a model needs inputs and at least one output");
  widths_.push_back(inputs);
  for (auto h : hidden) {
    if (h == 0) throw std::invalid_argument("hidden layer widths must be positive");
    widths_.push_back(h);
  }
  widths_.push_back(classes);
  // Counted in floating point first: the products of absurd widths must not wrap around. The
  // sparse codecs index with u32, which bounds every model this runtime can train.
  double count = 0.0;
  for (std::size_t l = 0; l + 1 < widths_.size(); ++l)
    count += static_cast<double>(widths_[l + 1]) * (static_cast<double>(widths_[l]) + 1.0);
  if (count >= 4294967296.0)
    throw std::invalid_argument(fmt::format(
        "a model of widths {} has {:.4g} parameters; at most 2^32 - 1 (lower model.hidden)",
        fmt::join(widths_, "-"), count));
  for (std::size_t l = 0; l + 1 < widths_.size(); ++l) {
    offsets_.push_back(size_);
    tensor_sizes_.push_back(widths_[l + 1] * widths_[l]);
    size_ += tensor_sizes_.back();
    offsets_.push_back(size_);
    tensor_sizes_.push_back(widths_[l + 1]);
    size_ += tensor_sizes_.back();
  }
}

std::string MlpLayout::describe() const {
  if (widths_.size() > 2) return fmt::format("mlp {}", fmt::join(widths_, "-"));
  return fmt::format("{} regression {}", widths_.back() == 1 ? "least-squares" : "softmax",
                     fmt::join(widths_, "-"));
}

void MlpLayout::init(std::span<float> params, std::uint64_t seed) const {
  if (params.size() != size_) throw std::invalid_argument("parameter vector has the wrong size");
  std::mt19937_64 rng(seed);
  for (std::size_t l = 0; l + 1 < widths_.size(); ++l) {
    const double bound = std::sqrt(6.0 / static_cast<double>(widths_[l]));
    float* w = params.data() + offsets_[2 * l];
    for (std::size_t k = 0; k < tensor_sizes_[2 * l]; ++k)
      w[k] = static_cast<float>((static_cast<double>(rng() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
    std::fill_n(params.data() + offsets_[2 * l + 1], tensor_sizes_[2 * l + 1], 0.0f);
  }
}

Mlp::Mlp(std::size_t inputs, std::vector<std::size_t> hidden, std::size_t classes,
         std::size_t max_batch)
    : Model(MlpLayout(inputs, std::move(hidden), classes)), max_batch_(max_batch) {
  if (max_batch_ == 0) throw std::invalid_argument("max_batch must be positive");
  const auto& widths = layout_.widths();
  act_.resize(widths.size());
  for (std::size_t l = 1; l < widths.size(); ++l) act_[l].resize(max_batch_ * widths[l]);
  const std::size_t widest = *std::max_element(widths.begin() + 1, widths.end());
  delta_.resize(max_batch_ * widest);
  delta_next_.resize(max_batch_ * widest);
  xbatch_.resize(max_batch_ * inputs);
  ybatch_.resize(max_batch_);
}

std::pair<double, std::size_t> Mlp::forward(std::span<const float> params, const float* x,
                                            const std::int32_t* labels, std::size_t rows) {
  const auto& widths = layout_.widths();
  const auto& offsets = layout_.offsets();
  const float* in = x;
  const std::size_t layers = widths.size() - 1;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::size_t n_in = widths[l], n_out = widths[l + 1];
    const float* w = params.data() + offsets[2 * l];
    const float* b = params.data() + offsets[2 * l + 1];
    float* out = act_[l + 1].data();
    for (std::size_t r = 0; r < rows; ++r) std::copy_n(b, n_out, out + r * n_out);
    // out (rows x n_out) += in (rows x n_in) * W^T (W is n_out x n_in, row-major).
    blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
               static_cast<int>(n_out), static_cast<int>(n_in), 1.0f, in, static_cast<int>(n_in), w,
               static_cast<int>(n_in), 1.0f, out, static_cast<int>(n_out));
    if (l + 1 < layers)
      for (std::size_t k = 0; k < rows * n_out; ++k) out[k] = std::max(out[k], 0.0f);
    in = out;
  }
  // Softmax in place on the logits, loss and accuracy.
  const std::size_t c = widths.back();
  float* p = act_[layers].data();
  double loss = 0.0;
  std::size_t correct = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = p + r * c;
    const auto top = std::max_element(row, row + c);
    if (static_cast<std::int32_t>(top - row) == labels[r]) ++correct;
    const float m = *top;
    const double label_logit = double{row[labels[r]]} - m;
    double z = 0.0;
    for (std::size_t k = 0; k < c; ++k) {
      const double e = std::exp(double{row[k]} - m);
      row[k] = static_cast<float>(e);
      z += e;
    }
    loss += std::log(z) - label_logit;
    const double inv_z = 1.0 / z;
    for (std::size_t k = 0; k < c; ++k) row[k] = static_cast<float>(row[k] * inv_z);
  }
  return {loss, correct};
}

void Model::check_loss_grad(std::span<const float> params, std::span<const float> grad,
                            const Dataset& data, std::span<const std::size_t> batch,
                            std::size_t max_batch) const {
  if (params.size() != layout_.size() || grad.size() != layout_.size())
    throw std::invalid_argument("parameter or gradient vector has the wrong size");
  if (batch.empty() || batch.size() > max_batch)
    throw std::invalid_argument(
        fmt::format("batch of {} rows (1..{} allowed)", batch.size(), max_batch));
  for (std::size_t r : batch)
    if (r >= data.size())
      throw std::invalid_argument(
          fmt::format("batch names row {} of a data set of {} rows", r, data.size()));
  if (data.dim != layout_.widths()[0])
    throw std::invalid_argument(fmt::format("data rows have {} features, the model takes {}",
                                            data.dim, layout_.widths()[0]));
}

double Mlp::loss_grad(std::span<const float> params, const Dataset& data,
                      std::span<const std::size_t> batch, std::span<float> grad) {
  const auto& widths = layout_.widths();
  const auto& offsets = layout_.offsets();
  const std::size_t rows = batch.size();
  check_loss_grad(params, grad, data, batch, max_batch_);
  const std::size_t in0 = widths[0];
  for (std::size_t r = 0; r < rows; ++r) {
    std::copy_n(data.features.data() + batch[r] * in0, in0, xbatch_.data() + r * in0);
    ybatch_[r] = data.labels[batch[r]];
  }
  const auto [loss, correct] = forward(params, xbatch_.data(), ybatch_.data(), rows);
  (void)correct;
  const std::size_t layers = widths.size() - 1;
  // dL/dlogits = (softmax - onehot) / rows.
  const std::size_t c = widths.back();
  const float inv = 1.0f / static_cast<float>(rows);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < c; ++k)
      delta_[r * c + k] =
          (act_[layers][r * c + k] - (static_cast<std::int32_t>(k) == ybatch_[r] ? 1.0f : 0.0f)) *
          inv;
  for (std::size_t l = layers; l-- > 0;) {
    const std::size_t n_in = widths[l], n_out = widths[l + 1];
    const float* in = l == 0 ? xbatch_.data() : act_[l].data();
    float* gw = grad.data() + offsets[2 * l];
    float* gb = grad.data() + offsets[2 * l + 1];
    // gW (n_out x n_in) = delta^T (n_out x rows) * in (rows x n_in).
    blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(n_out),
               static_cast<int>(n_in), static_cast<int>(rows), 1.0f, delta_.data(),
               static_cast<int>(n_out), in, static_cast<int>(n_in), 0.0f, gw,
               static_cast<int>(n_in));
    std::fill_n(gb, n_out, 0.0f);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < n_out; ++k) gb[k] += delta_[r * n_out + k];
    if (l == 0) break;
    // delta_prev (rows x n_in) = delta (rows x n_out) * W (n_out x n_in), masked by ReLU.
    const float* w = params.data() + offsets[2 * l];
    blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
               static_cast<int>(n_in), static_cast<int>(n_out), 1.0f, delta_.data(),
               static_cast<int>(n_out), w, static_cast<int>(n_in), 0.0f, delta_next_.data(),
               static_cast<int>(n_in));
    for (std::size_t k = 0; k < rows * n_in; ++k)
      if (act_[l][k] <= 0.0f) delta_next_[k] = 0.0f;
    delta_.swap(delta_next_);
  }
  return loss / static_cast<double>(rows);
}

Evaluation Mlp::evaluate(std::span<const float> params, const Dataset& data) {
  if (params.size() != layout_.size())
    throw std::invalid_argument("parameter vector has the wrong size");
  Evaluation e;
  double loss = 0.0;
  std::size_t correct = 0;
  for (std::size_t start = 0; start < data.size(); start += max_batch_) {
    const std::size_t rows = std::min(max_batch_, data.size() - start);
    const auto [l, c] =
        forward(params, data.features.data() + start * data.dim, data.labels.data() + start, rows);
    loss += l;
    correct += c;
  }
  e.samples = data.size();
  if (e.samples > 0) {
    e.loss = loss / static_cast<double>(e.samples);
    e.accuracy = static_cast<double>(correct) / static_cast<double>(e.samples);
  }
  return e;
}

LeastSquares::LeastSquares(std::size_t inputs) : Model(MlpLayout(inputs, {}, 1)) {}

double LeastSquares::loss_grad(std::span<const float> params, const Dataset& data,
                               std::span<const std::size_t> batch, std::span<float> grad) {
  check_loss_grad(params, grad, data, batch, SIZE_MAX);
  if (!data.regression())
    throw std::invalid_argument("least squares needs a data set with targets");
  const std::size_t d = data.dim;
  std::fill(grad.begin(), grad.end(), 0.0f);
  double loss = 0.0;
  const double scale = 1.0 / static_cast<double>(batch.size());
  for (std::size_t k : batch) {
    const float* a = data.features.data() + k * d;
    double r = double{params[d]} - data.targets[k];
    for (std::size_t j = 0; j < d; ++j) r += double{params[j]} * a[j];
    loss += 0.5 * r * r;
    const auto rs = static_cast<float>(r * scale);
    for (std::size_t j = 0; j < d; ++j) grad[j] += rs * a[j];
    grad[d] += rs;
  }
  return loss * scale;
}

Evaluation LeastSquares::evaluate(std::span<const float> params, const Dataset& data) {
  if (params.size() != layout_.size())
    throw std::invalid_argument("parameter vector has the wrong size");
  if (!data.regression())
    throw std::invalid_argument("least squares needs a data set with targets");
  const std::size_t d = data.dim;
  Evaluation e;
  e.samples = data.size();
  e.accuracy = std::numeric_limits<double>::quiet_NaN();  // not a classifier
  for (std::size_t k = 0; k < data.size(); ++k) {
    const float* a = data.features.data() + k * d;
    double r = double{params[d]} - data.targets[k];
    for (std::size_t j = 0; j < d; ++j) r += double{params[j]} * a[j];
    e.loss += 0.5 * r * r;
  }
  if (e.samples > 0) e.loss /= static_cast<double>(e.samples);
  return e;
}

std::optional<LocalRank> local_rank_from_environment() {
  for (const char* var :
       {"GOSSIP_LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"}) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long value = std::strtol(v, &end, 10);
    if (*end != '\0' || value < 0 || value > 1'000'000)
      throw std::invalid_argument(fmt::format("{}='{}' is not a local rank", var, v));
    return LocalRank{static_cast<int>(value), var};
  }
  return std::nullopt;
}

GpuChoice choose_gpu(std::optional<int> topology_device, int rank,
                     const std::optional<LocalRank>& local_rank, int visible) {
  if (visible <= 0) throw std::invalid_argument("no CUDA GPU is visible");
  if (topology_device) {
    if (*topology_device < 0 || *topology_device >= visible)
      throw std::invalid_argument(fmt::format(
          "the topology file gives peer {} device = {}, but {} GPU{} visible (devices 0..{}; "
          "CUDA_VISIBLE_DEVICES renumbers them)",
          rank, *topology_device, visible, visible == 1 ? " is" : "s are", visible - 1));
    return {*topology_device, "topology file"};
  }
  if (local_rank)
    return {local_rank->value % visible,
            fmt::format("local rank {} ({}) modulo {} visible GPU{}", local_rank->value,
                        local_rank->variable, visible, visible == 1 ? "" : "s")};
  return {rank % visible,
          fmt::format("rank {} modulo {} visible GPU{}", rank, visible, visible == 1 ? "" : "s")};
}

}  // namespace gossip::runtime
