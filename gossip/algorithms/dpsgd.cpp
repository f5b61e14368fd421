// D-PSGD (Lian et al. 2017): x_i ← Σ_j W_ij x_j − γ g_i, the message is x_i itself (fp32, or
// fp16/bf16 through the codec). The gradient and the message both only read x_i, so with
// overlap_gradient a worker thread computes g_i while this thread encodes and exchanges.
//
// Overlapped (staleness τ > 0, after overlap-SGP, Assran et al. ICML 2019): in communication
// round c, x_i ← W_ii x_i + Σ_j W_ij C(x_j^{c−τ}) − γ d_i with x_j^s = x_0 for s < 0; the message
// of round c is received by the neighbours in round c + τ (Transport::exchange_lagged). The last τ
// own models sent are kept (x_sent_k holds x^s for s ≡ k mod τ; x_0 before round 0): they are the
// state a resumed peer re-sends, because its neighbours' transports lost them, and they hold x_0
// for the first τ rounds.

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

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
    for (std::uint32_t k = 0; k < config.staleness; ++k) {
      sent_names_.push_back(fmt::format("x_sent_{}", k));
      sent_.push_back(model_buffer());
      space().upload(x0, sent_.back());
    }
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    std::vector<StateBuffer> out;
    for (std::size_t k = 0; k < sent_.size(); ++k) out.push_back({sent_names_[k], sent_[k]});
    return out;
  }
  void after_load() override { resend_pending_ = !sent_.empty(); }

  void run_round() override {
    if (!sent_.empty()) return run_stale_round();
    encode(x_);
    // x_i ← W_ii x_i + Σ_j W_ij C(x_j) − γ g_i, the neighbours' terms decoded as they arrive.
    scale_own();
    exchange_accumulate(1.0f, x_);
    apply_gradient();
  }

  // Communication round c = round_ / H (local steps: round_ = (c + 1)H − 1) with staleness τ.
  void run_stale_round() {
    const std::uint64_t h = config_.local_steps, tau = sent_.size();
    const std::uint64_t c = round_ / h;
    if (resend_pending_) {
      // Resumed: the messages of rounds c − τ … c − 1 were in flight; send them again, as they
      // were (the codec is keyed by their rounds).
      for (std::uint64_t e = c > tau ? c - tau : 0; e < c; ++e)
        resend((e + 1) * h - 1, sent_[e % tau]);
      resend_pending_ = false;
    }
    Buffer& slot = sent_[c % tau];  // x^{c−τ} (x_0 before round 0); takes x^c
    encode(x_);
    if (c < tau) {
      // Every neighbour's value of round c − τ < 0 is x_0: nothing to receive yet.
      exchange_accumulate_from(std::nullopt, 1.0f, x_);
      Clock::time_point mark = Clock::now();
      run(ew::ShiftMix{self_weight(), neighbor_weight_sum(), slot.data(), x_.data()});
      last_.update_s += seconds_since(mark);
    } else {
      Clock::time_point mark = Clock::now();
      space().copy(x_, slot);
      last_.update_s += seconds_since(mark);
      scale_own();
      exchange_accumulate_from(round_ - tau * h, 1.0f, x_);
    }
    apply_gradient();
  }

  bool run_round_with(GradientFn grad) override {
    // Overlapped gossip has its exchange off the critical path already: no gradient thread.
    if (!worker_ || !sent_.empty()) return false;
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
  std::vector<Buffer> sent_;  // τ of them: the own models of the last τ communication rounds
  std::vector<std::string> sent_names_;
  bool resend_pending_ = false;  // loaded: re-send the messages in flight before the next round
};

}  // namespace

std::unique_ptr<Algorithm> make_dpsgd(const AlgorithmConfig& config, net::Transport& transport,
                                      const topology::Topology& topology,
                                      std::span<const float> x0) {
  return std::make_unique<Dpsgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
