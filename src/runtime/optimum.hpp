#pragma once
// The exact answer of a convex synthetic problem (data.dataset = "least-squares" or "logistic"),
// to measure an algorithm against. The peers solve together
//   F(x) = (1/n) Σ_r (1/|S_r|) Σ_{k ∈ S_r} ℓ(x; row k) + (λ/2)‖x‖²,
// every peer's mean loss counting the same (n peers with shards S_r), λ = algorithm.weight_decay
// (the algorithms add λx to each gradient). ℓ is the least-squares loss ½(⟨a, w⟩ + b − y)² or
// softmax regression's cross-entropy, on the layouts of src/model.hpp. The minimiser comes from
// the normal equations (least squares) or Newton's method with a backtracking line search
// (softmax; λ > 0 makes it unique), in double precision.

#include <span>
#include <vector>

#include "src/runtime/data.hpp"
#include "src/runtime/model.hpp"

namespace gossip::runtime {

class KnownOptimum {
 public:
  // `layout` has no hidden layer: one output (least squares, `train` has targets) or one per
  // class (softmax regression). Throws std::invalid_argument otherwise, or when λ = 0 for
  // softmax regression.
  KnownOptimum(const MlpLayout& layout, const Dataset& train,
               const std::vector<std::vector<std::size_t>>& shards, double lambda);

  const std::vector<double>& x() const { return x_; }
  double value() const { return value_; }                  // F(x*)
  double gradient_norm() const { return gradient_norm_; }  // ‖∇F(x*)‖ reached

  double objective(std::span<const float> x) const;
  // ‖x − x*‖ / ‖x*‖.
  double distance(std::span<const float> x) const;

 private:
  // F(x), and when `grad` is given its gradient, and when `hess` is given its Hessian (P × P,
  // row-major), at x in layout order.
  double evaluate(std::span<const double> x, std::vector<double>* grad,
                  std::vector<double>* hess) const;

  const Dataset& train_;
  std::size_t dim_, outputs_;
  std::vector<std::pair<std::size_t, double>> rows_;  // (row, weight 1 / (n |S_r|))
  double lambda_;
  std::vector<double> x_;
  double value_ = 0.0, gradient_norm_ = 0.0;
};

}  // namespace gossip::runtime
