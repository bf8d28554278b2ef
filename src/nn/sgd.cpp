#include "convgemm/nn/sgd.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "check.hpp"

namespace convgemm::nn {
namespace {

[[noreturn]] void fail_option(const char* field, float value, const char* rule) {
  std::string message = field;
  message += " ";
  message += rule;
  message += " (got ";
  message += std::to_string(value);
  message += ")";
  detail::fail_message(message);
}

void validate(const SgdOptions& o) {
  if (!std::isfinite(o.learning_rate) || o.learning_rate <= 0.0f) {
    fail_option("learning_rate", o.learning_rate, "must be finite and > 0");
  }
  if (!(o.momentum >= 0.0f && o.momentum < 1.0f)) {
    fail_option("momentum", o.momentum, "must be in [0, 1)");
  }
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0.0f) {
    fail_option("weight_decay", o.weight_decay, "must be finite and >= 0");
  }
  detail::require_at_least("accumulation_steps", o.accumulation_steps, 1);
}

}  // namespace

Sgd::Sgd(std::vector<Parameter> parameters, const SgdOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  validate(options_);
  for (const Parameter& p : parameters_) {
    if (p.values.size() != p.gradients.size()) {
      detail::fail_message(p.name + ": values and gradients must have the same size");
    }
    velocity_.emplace_back(options_.momentum > 0.0f ? p.values.size() : 0, 0.0f);
  }
}

bool Sgd::step() {
  if (++pending_ < options_.accumulation_steps) return false;
  apply(pending_);
  return true;
}

bool Sgd::flush() {
  if (pending_ == 0) return false;
  apply(pending_);
  return true;
}

void Sgd::zero_grad() {
  zero_gradients(parameters_);
  pending_ = 0;
}

void Sgd::set_learning_rate(float learning_rate) {
  SgdOptions changed = options_;
  changed.learning_rate = learning_rate;
  validate(changed);
  options_ = changed;
}

SgdState Sgd::state() const {
  if (pending_ != 0) {
    detail::fail("sgd pending_micro_batches", pending_,
                 "must be 0 to save the optimizer state (save after an update or flush())");
  }
  SgdState saved{options_, updates_, {}};
  for (const std::vector<float>& v : velocity_) {
    saved.velocity.insert(saved.velocity.end(), v.begin(), v.end());
  }
  return saved;
}

void Sgd::restore(const SgdState& saved) {
  // Every check before the first change.
  auto differs = [](const char* field, double theirs, double mine) {
    detail::fail_message(std::string("restored sgd ") + field + " (" + std::to_string(theirs) +
                         ") must equal this optimizer's (" + std::to_string(mine) + ")");
  };
  if (saved.options.momentum != options_.momentum) {
    differs("momentum", saved.options.momentum, options_.momentum);
  }
  if (saved.options.weight_decay != options_.weight_decay) {
    differs("weight_decay", saved.options.weight_decay, options_.weight_decay);
  }
  if (saved.options.accumulation_steps != options_.accumulation_steps) {
    differs("accumulation_steps", double(saved.options.accumulation_steps),
            double(options_.accumulation_steps));
  }
  SgdOptions changed = options_;
  changed.learning_rate = saved.options.learning_rate;
  validate(changed);
  detail::require_at_least("restored sgd updates", saved.updates, 0);
  int64_t expected = 0;
  for (const std::vector<float>& v : velocity_) expected += static_cast<int64_t>(v.size());
  if (static_cast<int64_t>(saved.velocity.size()) != expected) {
    detail::fail("restored sgd velocity.size()", static_cast<int64_t>(saved.velocity.size()),
                 "must equal the momentum buffers' total (" + std::to_string(expected) + ")");
  }
  options_ = changed;
  updates_ = saved.updates;
  auto next = saved.velocity.begin();
  for (std::vector<float>& v : velocity_) {
    std::copy(next, next + static_cast<std::ptrdiff_t>(v.size()), v.begin());
    next += static_cast<std::ptrdiff_t>(v.size());
  }
}

void Sgd::apply(int64_t micro_batches) {
  // The update rule of sgd.hpp; the 1/k turns the sum of micro-batch means into the mean.
  const float scale = 1.0f / static_cast<float>(micro_batches);
  const float lr = options_.learning_rate, mu = options_.momentum, wd = options_.weight_decay;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    std::span<float> w = parameters_[i].values, g = parameters_[i].gradients;
    if (mu > 0.0f) {
      std::vector<float>& v = velocity_[i];
      for (std::size_t j = 0; j < w.size(); ++j) {
        v[j] = mu * v[j] + (g[j] * scale + wd * w[j]);
        w[j] -= lr * v[j];
        g[j] = 0.0f;
      }
    } else {
      for (std::size_t j = 0; j < w.size(); ++j) {
        w[j] -= lr * (g[j] * scale + wd * w[j]);
        g[j] = 0.0f;
      }
    }
  }
  pending_ = 0;
  ++updates_;
}

}  // namespace convgemm::nn
