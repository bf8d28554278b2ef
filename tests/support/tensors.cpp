#include "support/tensors.hpp"

#include <cmath>
#include <limits>

namespace convgemm::test {
namespace {
std::size_t size(int64_t elements) { return static_cast<std::size_t>(elements); }
}  // namespace

Tensor random_tensor(std::mt19937_64& rng, int64_t elements) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Tensor t(size(elements));
  for (float& v : t) v = value(rng);
  return t;
}

Tensor nan_tensor(int64_t elements) {
  return Tensor(size(elements), std::numeric_limits<float>::quiet_NaN());
}

Tensor filled_tensor(int64_t elements, float value) { return Tensor(size(elements), value); }

Tensor abs_of(const Tensor& t) {
  Tensor a(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) a[i] = std::fabs(t[i]);
  return a;
}

TensorD abs_of(const TensorD& t) {
  TensorD a(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) a[i] = std::fabs(t[i]);
  return a;
}

TensorD to_double(const Tensor& t) { return TensorD(t.begin(), t.end()); }

double dot(const Tensor& a, const Tensor& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) sum += double(a[i]) * double(b[i]);
  return sum;
}

double dot(const TensorD& a, const TensorD& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) sum += a[i] * b[i];
  return sum;
}

double sum_of(const Tensor& t) {
  double sum = 0.0;
  for (float v : t) sum += v;
  return sum;
}

TensorD channel_sums(const Tensor& t, int64_t batch, int64_t channels, int64_t plane) {
  TensorD sums(size(channels), 0.0);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < plane; ++i) sums[size(c)] += t[size((n * channels + c) * plane + i)];
  return sums;
}

Tensor slice(const Tensor& t, int64_t begin, int64_t count) {
  return Tensor(t.begin() + begin, t.begin() + begin + count);
}

}  // namespace convgemm::test
