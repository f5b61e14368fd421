#pragma once
// Models over a flat parameter vector that keeps its tensor boundaries (for layer-wise
// compression): a multi-layer perceptron with ReLU hidden layers and a softmax cross-entropy
// output; with no hidden layers it is softmax (multinomial logistic) regression.
//
// `Model` is the interface the trainer holds. Two backends compute the same loss on the same
// layout from the same init:
// - `Mlp` (here): CBLAS sgemm (OpenBLAS) on the host; parameters and gradients are host spans;
// - the CUDA model (src/model_cuda.cpp, made by make_cuda_mlp): cuBLAS sgemm and small kernels on
//   one GPU; parameters and gradients may be host or device spans. Spans in its GPU's memory (the
//   trainer's, where the algorithm keeps its state on the same GPU) are used in place; others are
//   copied in and out.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/runtime/data.hpp"

namespace gossip::runtime {

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;  // NaN for a regression model
  std::size_t samples = 0;
  // On a problem with a known optimum (src/optimum.hpp): F(x) − F(x*) on the training objective,
  // and ‖x − x*‖ / ‖x*‖. Filled by the trainer, not the model.
  std::optional<double> optimality_gap, distance_to_optimum;
};

// The shape of an MLP laid out in a flat vector: widths, tensors W1, b1, W2, b2, ... and their
// offsets. Shared by every backend, so the layout and the init cannot drift apart.
class MlpLayout {
 public:
  // Layer widths: inputs, hidden..., classes. {784, 10} is softmax regression.
  MlpLayout(std::size_t inputs, std::vector<std::size_t> hidden, std::size_t classes);

  const std::vector<std::size_t>& widths() const { return widths_; }
  // Sizes of the tensors laid end to end in the flat vector: W1, b1, W2, b2, ...
  const std::vector<std::size_t>& tensor_sizes() const { return tensor_sizes_; }
  // Offsets of those tensors (W_l at 2l, b_l at 2l + 1).
  const std::vector<std::size_t>& offsets() const { return offsets_; }
  std::size_t size() const { return size_; }
  std::size_t layers() const { return widths_.size() - 1; }
  std::string describe() const;

  // He-uniform weights (scaled by fan-in), zero biases; the same for the same seed.
  void init(std::span<float> params, std::uint64_t seed) const;

 private:
  std::vector<std::size_t> widths_;
  std::vector<std::size_t> tensor_sizes_;
  std::vector<std::size_t> offsets_;
  std::size_t size_ = 0;
};

class Model {
 public:
  explicit Model(MlpLayout layout) : layout_(std::move(layout)) {}
  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const MlpLayout& layout() const { return layout_; }
  const std::vector<std::size_t>& tensor_sizes() const { return layout_.tensor_sizes(); }
  std::size_t size() const { return layout_.size(); }
  std::string describe() const { return layout_.describe(); }
  void init(std::span<float> params, std::uint64_t seed) const { layout_.init(params, seed); }

  // Where the model computes: "cpu", or "cuda:N (device name)".
  virtual std::string device() const = 0;

  // Mean cross-entropy over the rows `batch` of `data` (1..max_batch rows); writes its gradient
  // into `grad`.
  virtual double loss_grad(std::span<const float> params, const Dataset& data,
                           std::span<const std::size_t> batch, std::span<float> grad) = 0;

  // Mean cross-entropy and accuracy over every row of `data`.
  virtual Evaluation evaluate(std::span<const float> params, const Dataset& data) = 0;

 protected:
  // The argument checks every backend's loss_grad makes: sizes of params and grad, 1..max_batch
  // rows, each a row of `data`, data of the model's input width. Throws std::invalid_argument.
  void check_loss_grad(std::span<const float> params, std::span<const float> grad,
                       const Dataset& data, std::span<const std::size_t> batch,
                       std::size_t max_batch) const;

  MlpLayout layout_;
};

// The CPU backend: CBLAS sgemm (OpenBLAS).
class Mlp final : public Model {
 public:
  Mlp(std::size_t inputs, std::vector<std::size_t> hidden, std::size_t classes,
      std::size_t max_batch = 256);

  std::string device() const override { return "cpu"; }
  double loss_grad(std::span<const float> params, const Dataset& data,
                   std::span<const std::size_t> batch, std::span<float> grad) override;
  Evaluation evaluate(std::span<const float> params, const Dataset& data) override;

 private:
  // Forward pass of rows [x, x + rows*inputs); fills act_; returns the summed loss and the
  // number of correct predictions.
  std::pair<double, std::size_t> forward(std::span<const float> params, const float* x,
                                         const std::int32_t* labels, std::size_t rows);

  std::size_t max_batch_;
  std::vector<std::vector<float>> act_;  // per layer: rows x width (post-activation)
  std::vector<float> delta_, delta_next_, xbatch_;
  std::vector<std::int32_t> ybatch_;
};

// Linear least squares on a regression data set (CPU): the layout of softmax regression with one
// output (w, then the bias b); loss ½(⟨a, w⟩ + b − y)² averaged over the rows. Its evaluation has
// no accuracy (NaN): the trainer reports the distance to the known optimum instead.
class LeastSquares final : public Model {
 public:
  explicit LeastSquares(std::size_t inputs);

  std::string device() const override { return "cpu"; }
  double loss_grad(std::span<const float> params, const Dataset& data,
                   std::span<const std::size_t> batch, std::span<float> grad) override;
  Evaluation evaluate(std::span<const float> params, const Dataset& data) override;
};

// --- The CUDA backend (src/model_cuda.cpp; src/model_nocuda.cpp in a build without CUDA). ---

// True when this binary was built with the CUDA model backend.
bool cuda_model_built();
// Visible CUDA GPUs; 0 without the CUDA backend, a driver or a GPU. `why` (when given) receives
// the reason when the answer is 0.
int cuda_device_count(std::string* why = nullptr);
// The MLP on GPU `device` (an index among the visible GPUs). Throws std::runtime_error when the
// backend is not built or the device cannot be used.
std::unique_ptr<Model> make_cuda_mlp(std::size_t inputs, std::vector<std::size_t> hidden,
                                     std::size_t classes, std::size_t max_batch, int device);

// --- Which GPU a peer uses. ---

struct LocalRank {
  int value = 0;
  std::string variable;  // the environment variable it came from
};
// The process's rank on this host from GOSSIP_LOCAL_RANK (set by `gossip launch` for each peer it
// starts), SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK or MPI_LOCALRANKID (the first one set);
// nothing when none is set. A value that is not a
// non-negative integer is an error naming the variable.
std::optional<LocalRank> local_rank_from_environment();

struct GpuChoice {
  int device = 0;
  std::string reason;  // for the log: "topology file", "local rank 2 (SLURM_LOCALID)", ...
};
// The GPU of peer `rank` among `visible` GPUs: the topology file's device when it names one (an
// error when that index is not visible), else the local rank modulo the visible GPUs, else the
// rank modulo the visible GPUs. `visible` must be positive.
GpuChoice choose_gpu(std::optional<int> topology_device, int rank,
                     const std::optional<LocalRank>& local_rank, int visible);

}  // namespace gossip::runtime
