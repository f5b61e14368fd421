#pragma once
// Models over a flat parameter vector that keeps its tensor boundaries (for layer-wise
// compression). One implementation: a multi-layer perceptron with ReLU hidden layers and a
// softmax cross-entropy output; with no hidden layers it is softmax (multinomial logistic)
// regression. Dense products go through CBLAS (OpenBLAS).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/data.hpp"

namespace gossip::runtime {

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;
  std::size_t samples = 0;
};

class Mlp {
 public:
  // Layer widths: inputs, hidden..., classes. {784, 10} is softmax regression.
  Mlp(std::size_t inputs, std::vector<std::size_t> hidden, std::size_t classes,
      std::size_t max_batch = 256);

  // Sizes of the tensors laid end to end in the flat vector: W1, b1, W2, b2, ...
  const std::vector<std::size_t>& tensor_sizes() const { return tensor_sizes_; }
  std::size_t size() const { return size_; }
  std::string describe() const;

  // He-uniform weights (scaled by fan-in), zero biases; the same for the same seed.
  void init(std::span<float> params, std::uint64_t seed) const;

  // Mean cross-entropy over the rows `batch` of `data`; writes its gradient into `grad`.
  double loss_grad(std::span<const float> params, const Dataset& data,
                   std::span<const std::size_t> batch, std::span<float> grad);

  Evaluation evaluate(std::span<const float> params, const Dataset& data);

 private:
  // Forward pass of rows [x, x + rows*inputs); fills activations_; returns the summed loss and
  // the number of correct predictions.
  std::pair<double, std::size_t> forward(std::span<const float> params, const float* x,
                                         const std::int32_t* labels, std::size_t rows);

  std::vector<std::size_t> widths_;
  std::vector<std::size_t> tensor_sizes_;
  std::vector<std::size_t> offsets_;  // of W_l and b_l in the flat vector
  std::size_t size_ = 0;
  std::size_t max_batch_;
  std::vector<std::vector<float>> act_;  // per layer: rows x width (post-activation)
  std::vector<float> delta_, delta_next_, xbatch_;
  std::vector<std::int32_t> ybatch_;
};

}  // namespace gossip::runtime
