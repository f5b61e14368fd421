// D-PSGD (Lian et al. 2017): x_i ← Σ_j W_ij x_j − γ g_i, the message is x_i itself (fp32, or
// fp16/bf16 through the codec). The gradient and the message both only read x_i, so with
// overlap_gradient a worker thread computes g_i while this thread encodes and exchanges.

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

// One persistent thread that runs a gradient callback on request; handing over a job is a
// mutex and a condition variable, so a step allocates nothing.
class GradientWorker {
 public:
  GradientWorker() : thread_([this] { loop(); }) {}
  ~GradientWorker() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  GradientWorker(const GradientWorker&) = delete;
  GradientWorker& operator=(const GradientWorker&) = delete;

  void start(GradientFn fn, std::span<const float> x, std::span<float> g) {
    {
      std::lock_guard lock(mutex_);
      job_.emplace(Job{fn, x, g});
      done_ = false;
      error_ = nullptr;
    }
    cv_.notify_all();
  }
  // Waits for the job; returns its duration in seconds and rethrows what the callback threw.
  double wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return done_; });
    if (error_) std::rethrow_exception(error_);
    return seconds_;
  }

 private:
  struct Job {
    GradientFn fn;
    std::span<const float> x;
    std::span<float> g;
  };

  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || job_.has_value(); });
      if (stop_) return;
      Job job = *job_;
      job_.reset();
      lock.unlock();
      const auto start = std::chrono::steady_clock::now();
      std::exception_ptr error;
      try {
        job.fn(job.x, job.g);
      } catch (...) {
        error = std::current_exception();
      }
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      lock.lock();
      seconds_ = s;
      error_ = error;
      done_ = true;
      cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<Job> job_;
  bool done_ = true;
  bool stop_ = false;
  double seconds_ = 0.0;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after the members it uses exist
};

class Dpsgd final : public GossipAlgorithm {
 public:
  Dpsgd(const AlgorithmConfig& config, net::Transport& transport,
        const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0) {
    // On a GPU the model and the codec would share the device from two threads: no overlap.
    if (config.overlap_gradient && !on_device()) worker_.emplace();
  }

 private:
  void run_round() override {
    encode(x_);
    // x_i ← W_ii x_i + Σ_j W_ij C(x_j) − γ g_i, the neighbours' terms decoded as they arrive.
    scale_own();
    exchange_accumulate(1.0f, x_);
    apply_gradient();
  }

  bool run_round_with(GradientFn grad) override {
    if (!worker_) return false;
    worker_->start(grad, x_, g_);
    encode(x_);
    const std::vector<std::span<const std::byte>>* messages = nullptr;
    try {
      messages = &exchange();
    } catch (...) {
      worker_->wait();  // never leave the worker writing g_ behind an exception
      throw;
    }
    last_.compute_s = worker_->wait();
    apply_direction();
    combine(*messages);
    return true;
  }

  // x_i ← W_ii x_i + Σ_j W_ij C(x_j) − γ g_i. The own term uses the exact x_i (the rule's
  // W_ii x_i), not the codec's copy; x is rescaled in place so the neighbours' messages
  // accumulate straight into it.
  // (With overlap_gradient the worker reads x_i during the exchange, so the messages are kept and
  // combined afterwards.)
  void combine(const std::vector<std::span<const std::byte>>& messages) {
    scale_own();
    accumulate_neighbors(messages, 1.0f, x_);
    apply_gradient();
  }
  void scale_own() {
    Clock::time_point mark = Clock::now();
    run(ew::Scale{self_weight(), x_.data()});
    last_.update_s += seconds_since(mark);
  }
  void apply_gradient() {
    Clock::time_point mark = Clock::now();
    run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  std::optional<GradientWorker> worker_;
};

}  // namespace

std::unique_ptr<Algorithm> make_dpsgd(const AlgorithmConfig& config, net::Transport& transport,
                                      const topology::Topology& topology,
                                      std::span<const float> x0) {
  return std::make_unique<Dpsgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
