#include "src/runtime/optimum.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <Eigen/Dense>

namespace gossip::runtime {

namespace {
// Index in the layout of weight (c, t) of the augmented row [a, 1]: W is outputs × dim row-major,
// then one bias per output.
std::size_t at(std::size_t c, std::size_t t, std::size_t dim, std::size_t outputs) {
  return t < dim ? c * dim + t : outputs * dim + c;
}
}  // namespace

KnownOptimum::KnownOptimum(const MlpLayout& layout, const Dataset& train,
                           const std::vector<std::vector<std::size_t>>& shards, double lambda)
    : train_(train), dim_(train.dim), outputs_(layout.widths().back()), lambda_(lambda) {
  if (layout.layers() != 1)
    throw std::invalid_argument("a known optimum needs a model without hidden layers");
  if (outputs_ == 1 && !train.regression())
    throw std::invalid_argument("least squares needs a data set with targets");
  if (outputs_ > 1 && !(lambda > 0.0))
    throw std::invalid_argument(
        "softmax regression has a unique optimum only with algorithm.weight_decay > 0");
  for (const auto& shard : shards)
    for (std::size_t k : shard)
      rows_.emplace_back(
          k, 1.0 / (static_cast<double>(shards.size()) * static_cast<double>(shard.size())));
  const std::size_t p = layout.size();
  std::vector<double> x(p, 0.0), grad, hess;
  if (outputs_ == 1) {
    // The normal equations: (Σ ω ã ãᵀ + λI) x = Σ ω y ã.
    evaluate(x, &grad, &hess);
    Eigen::Map<Eigen::MatrixXd> h(hess.data(), static_cast<Eigen::Index>(p),
                                  static_cast<Eigen::Index>(p));
    Eigen::Map<Eigen::VectorXd> g(grad.data(), static_cast<Eigen::Index>(p));
    const Eigen::VectorXd step = h.ldlt().solve(-g);  // F is quadratic: one Newton step from 0
    for (std::size_t i = 0; i < p; ++i) x[i] = step(static_cast<Eigen::Index>(i));
  } else {
    for (int it = 0; it < 100; ++it) {
      const double f = evaluate(x, &grad, &hess);
      Eigen::Map<Eigen::MatrixXd> h(hess.data(), static_cast<Eigen::Index>(p),
                                    static_cast<Eigen::Index>(p));
      Eigen::Map<Eigen::VectorXd> g(grad.data(), static_cast<Eigen::Index>(p));
      if (g.norm() < 1e-11) break;
      const Eigen::VectorXd step = h.ldlt().solve(-g);
      const double slope = g.dot(step);
      double t = 1.0;
      std::vector<double> trial(p);
      for (int k = 0; k < 60; ++k, t *= 0.5) {
        for (std::size_t i = 0; i < p; ++i)
          trial[i] = x[i] + t * step(static_cast<Eigen::Index>(i));
        if (evaluate(trial, nullptr, nullptr) <= f + 1e-4 * t * slope) break;
      }
      x = trial;
    }
  }
  value_ = evaluate(x, &grad, nullptr);
  double norm = 0.0;
  for (double v : grad) norm += v * v;
  gradient_norm_ = std::sqrt(norm);
  x_ = std::move(x);
}

double KnownOptimum::evaluate(std::span<const double> x, std::vector<double>* grad,
                              std::vector<double>* hess) const {
  const std::size_t p = x.size(), d = dim_, m = outputs_, t_count = d + 1;
  if (grad) grad->assign(p, 0.0);
  if (hess) hess->assign(p * p, 0.0);
  double f = 0.0;
  std::vector<double> a(t_count), z(m), q(m);
  for (const auto& [k, w] : rows_) {
    for (std::size_t t = 0; t < d; ++t) a[t] = train_.features[k * d + t];
    a[d] = 1.0;
    for (std::size_t c = 0; c < m; ++c) {
      z[c] = 0.0;
      for (std::size_t t = 0; t < t_count; ++t) z[c] += x[at(c, t, d, m)] * a[t];
    }
    if (m == 1) {
      const double r = z[0] - train_.targets[k];
      f += w * 0.5 * r * r;
      q[0] = r;  // dℓ/dz
    } else {
      const double top = *std::max_element(z.begin(), z.end());
      double sum = 0.0;
      for (std::size_t c = 0; c < m; ++c) sum += (q[c] = std::exp(z[c] - top));
      const auto y = static_cast<std::size_t>(train_.labels[k]);
      f += w * (std::log(sum) + top - z[y]);
      for (std::size_t c = 0; c < m; ++c) q[c] /= sum;  // softmax probabilities
    }
    if (grad) {
      for (std::size_t c = 0; c < m; ++c) {
        const double dz = m == 1 ? q[0] : q[c] - (c == static_cast<std::size_t>(train_.labels[k]));
        for (std::size_t t = 0; t < t_count; ++t) (*grad)[at(c, t, d, m)] += w * dz * a[t];
      }
    }
    if (hess) {
      // d²ℓ/dz_c dz_c' = 1 (least squares) or q_c [c = c'] − q_c q_c' (softmax), times ã ãᵀ.
      for (std::size_t c = 0; c < m; ++c)
        for (std::size_t c2 = 0; c2 < m; ++c2) {
          const double s = m == 1 ? 1.0 : q[c] * ((c == c2) - q[c2]);
          if (s == 0.0) continue;
          for (std::size_t t = 0; t < t_count; ++t) {
            const double st = w * s * a[t];
            double* row = hess->data() + at(c, t, d, m) * p;
            for (std::size_t t2 = 0; t2 < t_count; ++t2) row[at(c2, t2, d, m)] += st * a[t2];
          }
        }
    }
  }
  double sq = 0.0;
  for (std::size_t i = 0; i < p; ++i) {
    sq += x[i] * x[i];
    if (grad) (*grad)[i] += lambda_ * x[i];
    if (hess) (*hess)[i * p + i] += lambda_;
  }
  return f + 0.5 * lambda_ * sq;
}

double KnownOptimum::objective(std::span<const float> x) const {
  if (x.size() != x_.size())
    throw std::invalid_argument(
        fmt::format("{} parameters, the problem has {}", x.size(), x_.size()));
  const std::vector<double> xd(x.begin(), x.end());
  return evaluate(xd, nullptr, nullptr);
}

double KnownOptimum::distance(std::span<const float> x) const {
  if (x.size() != x_.size())
    throw std::invalid_argument(
        fmt::format("{} parameters, the problem has {}", x.size(), x_.size()));
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    diff += (x[i] - x_[i]) * (x[i] - x_[i]);
    norm += x_[i] * x_[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace gossip::runtime
