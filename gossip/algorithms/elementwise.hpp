#pragma once
// The element-wise arithmetic of the algorithms' update rules: one functor per loop, applied to
// every index k < d. The host space runs each as a plain loop (g++), the CUDA space as a kernel
// (gossip/algorithms/space_cuda.cu, nvcc with -fmad=false): one source, so a GPU peer rounds
// every operation exactly as a CPU peer does. Pointers are in the space that runs the functor.
//
// Each functor writes what its comment says and reads nothing it writes at another index, so
// any order or parallel schedule gives the same bits.

#include <cstddef>
#include <variant>

#include "kernels/hd.hpp"

namespace gossip::algorithms::ew {

// y += a·x (x −= γ·g is a = −γ: negating is exact, so the bits are those of the subtraction).
struct Axpy {
  float a;
  const float* x;
  float* y;
  GOSSIP_HD void operator()(std::size_t k) const { y[k] += a * x[k]; }
};

// y *= a.
struct Scale {
  float a;
  float* y;
  GOSSIP_HD void operator()(std::size_t k) const { y[k] *= a; }
};

// out = a − b.
struct Sub {
  const float* a;
  const float* b;
  float* out;
  GOSSIP_HD void operator()(std::size_t k) const { out[k] = a[k] - b[k]; }
};

// Heavy ball as torch.optim.SGD: buf = μ·buf + g; g = buf, or g + μ·buf with Nesterov.
struct HeavyBall {
  float mu;
  bool nesterov;
  float* buf;
  float* g;
  GOSSIP_HD void operator()(std::size_t k) const {
    buf[k] = mu * buf[k] + g[k];
    g[k] = nesterov ? g[k] + mu * buf[k] : buf[k];
  }
};

// Quasi-global momentum's direction: m = μ·buf + g; g = m, or g + μ·m with Nesterov (buf kept).
struct QgDirection {
  float mu;
  bool nesterov;
  const float* buf;
  float* g;
  GOSSIP_HD void operator()(std::size_t k) const {
    const float m = mu * buf[k] + g[k];
    g[k] = nesterov ? g[k] + mu * m : m;
  }
};

// Quasi-global momentum's buffer at the end of a round: buf = μ·buf + c·(x_prev − x); x_prev = x.
struct QgBuffer {
  float mu;
  float c;
  const float* x;
  float* buf;
  float* x_prev;
  GOSSIP_HD void operator()(std::size_t k) const {
    const float xk = x[k];
    buf[k] = mu * buf[k] + c * (x_prev[k] - xk);
    x_prev[k] = xk;
  }
};

// x −= γ·g, then g = x − x̂ (CHOCO-SGD's half step and the difference it sends).
struct HalfStepDiff {
  float lr;
  const float* x_hat;
  float* x;
  float* g;
  GOSSIP_HD void operator()(std::size_t k) const {
    x[k] -= lr * g[k];
    g[k] = x[k] - x_hat[k];
  }
};

// x −= γ·g, then acc += x (DeepSqueeze's half step and the error-compensated value it sends).
struct HalfStepAccumulate {
  float lr;
  const float* g;
  float* x;
  float* acc;
  GOSSIP_HD void operator()(std::size_t k) const {
    x[k] -= lr * g[k];
    acc[k] += x[k];
  }
};

// x += γ_c·(s − x̂) (CHOCO-SGD's consensus step).
struct ConsensusStep {
  float gc;
  const float* s;
  const float* x_hat;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const { x[k] += gc * (s[k] - x_hat[k]); }
};

// x += c − γ·g (D²'s φ = ψ + c).
struct CorrectedStep {
  float lr;
  const float* c;
  const float* g;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const { x[k] += c[k] - lr * g[k]; }
};

// t = w·(q − own); c += t; x += t (D²'s pairwise term, applied to both the correction and x).
struct PairwiseTerm {
  float w;
  const float* q;
  const float* own;
  float* c;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const {
    const float t = w * (q[k] - own[k]);
    c[k] += t;
    x[k] += t;
  }
};

// g = (s − γ·g) − x (DCD-PSGD's difference z_i).
struct DcdDifference {
  float lr;
  const float* s;
  const float* x;
  float* g;
  GOSSIP_HD void operator()(std::size_t k) const { g[k] = (s[k] - lr * g[k]) - x[k]; }
};

// x −= γ·(g·inv_n) (C-PSGD with the summed gradient).
struct MeanGradientStep {
  float lr;
  float inv_n;
  const float* g;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const { x[k] -= lr * (g[k] * inv_n); }
};

// RelaySum's relay over one edge: from_j = s_j − out; out = s_i − in; in = from_j.
struct Relay {
  const float* s_j;
  const float* s_i;
  float* in;
  float* out;
  GOSSIP_HD void operator()(std::size_t k) const {
    const float from_j = s_j[k] - out[k];
    out[k] = s_i[k] - in[k];
    in[k] = from_j;
  }
};

// x = x0 + sum·inv_n (RelaySum's average).
struct OffsetMean {
  float inv_n;
  const float* x0;
  const float* sum;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const { x[k] = x0[k] + sum[k] * inv_n; }
};

// Overlapped D-PSGD before the first stale message arrives: the history slot `h` holds x_0 (the
// neighbours' value for rounds before 0) and takes this round's model; x = a·x + b·x_0.
struct ShiftMix {
  float a;
  float b;
  float* h;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const {
    const float old = h[k];
    h[k] = x[k];
    x[k] = a * x[k] + b * old;
  }
};

// x −= γ·((g − own) + sum·inv_n) (DGA: this round's direction, minus the own direction of D
// rounds ago, plus the average of that round's directions).
struct DelayedStep {
  float lr;
  float inv_n;
  const float* g;
  const float* own;
  const float* sum;
  float* x;
  GOSSIP_HD void operator()(std::size_t k) const {
    x[k] -= lr * ((g[k] - own[k]) + sum[k] * inv_n);
  }
};

// y = a·y + x (DoubleSqueeze's server value u = (1/n)·Σ_j c_j + e).
struct ScaleAdd {
  float a;
  const float* x;
  float* y;
  GOSSIP_HD void operator()(std::size_t k) const { y[k] = a * y[k] + x[k]; }
};

// Every functor a space runs; a space dispatches on the alternative.
using Op =
    std::variant<Axpy, Scale, Sub, HeavyBall, QgDirection, QgBuffer, HalfStepDiff,
                 HalfStepAccumulate, ConsensusStep, CorrectedStep, PairwiseTerm, DcdDifference,
                 MeanGradientStep, Relay, OffsetMean, ShiftMix, DelayedStep, ScaleAdd>;

}  // namespace gossip::algorithms::ew
