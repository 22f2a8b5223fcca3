#include "tests/engine/reference_model.h"

#include <cmath>
#include <cstring>

namespace cellhouse::engine::testing {

namespace {
enum : size_t { kEmb, kRmsAtt, kWq, kWk, kWv, kWo, kRmsFfn, kW1, kW2, kW3, kRmsFinal, kCls };
}  // namespace

ReferenceModel::ReferenceModel(std::span<const std::byte> file) {
  int32_t h[7];
  std::memcpy(h, file.data(), sizeof(h));
  dim_ = h[0];
  hidden_ = h[1];
  layers_ = h[2];
  heads_ = h[3];
  kv_heads_ = h[4];
  shared_ = h[5] > 0;
  vocab_ = std::abs(h[5]);
  seq_len_ = h[6];
  const size_t d = dim_, hd = hidden_, l = layers_, v = vocab_;
  const size_t kv = d / heads_ * kv_heads_;
  const size_t head = d / heads_;
  // Element counts in file order, up to and including the two RoPE tables (never read).
  const size_t counts[] = {v * d,
                           l * d,
                           l * d * d,
                           l * kv * d,
                           l * kv * d,
                           l * d * d,
                           l * d,
                           l * hd * d,
                           l * d * hd,
                           l * hd * d,
                           d,
                           seq_len_ * head / 2,
                           seq_len_ * head / 2};
  const auto* p = reinterpret_cast<const float*>(file.data() + 28);
  for (size_t c : counts) {
    tensors_.push_back(p);
    p += c;
  }
  tensors_.resize(kCls + 1);
  tensors_[kCls] = shared_ ? tensors_[kEmb] : p;  // a separate classifier ends the file
  keys_.assign(l, {});
  values_.assign(l, {});
}

std::vector<double> ReferenceModel::MatVec(const float* w, const std::vector<double>& x, int rows,
                                           int cols) const {
  std::vector<double> y(rows);
  for (int r = 0; r < rows; ++r) {
    double s = 0;
    for (int c = 0; c < cols; ++c) {
      s += static_cast<double>(w[static_cast<size_t>(r) * cols + c]) * x[c];
    }
    y[r] = s;
  }
  return y;
}

std::vector<double> ReferenceModel::RmsNorm(const std::vector<double>& x,
                                            const float* weight) const {
  double ss = 0;
  for (double v : x) {
    ss += v * v;
  }
  const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + 1e-5);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    out[i] = weight[i] * x[i] * scale;
  }
  return out;
}

std::vector<float> ReferenceModel::Step(int32_t token, int32_t pos) {
  const int head = dim_ / heads_;
  const int kv_dim = head * kv_heads_;
  std::vector<double> x(dim_);
  for (int i = 0; i < dim_; ++i) {
    x[i] = Tensor(kEmb)[static_cast<size_t>(token) * dim_ + i];
  }
  for (int l = 0; l < layers_; ++l) {
    std::vector<double> xb = RmsNorm(x, Tensor(kRmsAtt) + static_cast<size_t>(l) * dim_);
    std::vector<double> q =
        MatVec(Tensor(kWq) + static_cast<size_t>(l) * dim_ * dim_, xb, dim_, dim_);
    std::vector<double> k =
        MatVec(Tensor(kWk) + static_cast<size_t>(l) * kv_dim * dim_, xb, kv_dim, dim_);
    std::vector<double> v =
        MatVec(Tensor(kWv) + static_cast<size_t>(l) * kv_dim * dim_, xb, kv_dim, dim_);
    // RoPE: rotate each pair (2j, 2j+1) of every head by pos * 10000^(-2j/head).
    auto rotate = [&](std::vector<double>& vec) {
      for (size_t i = 0; i < vec.size(); i += 2) {
        const double freq = std::pow(10000.0, -static_cast<double>(i % head) / head);
        const double c = std::cos(pos * freq), s = std::sin(pos * freq);
        const double a = vec[i], b = vec[i + 1];
        vec[i] = a * c - b * s;
        vec[i + 1] = a * s + b * c;
      }
    };
    rotate(q);
    rotate(k);
    keys_[l].insert(keys_[l].end(), k.begin(), k.end());
    values_[l].insert(values_[l].end(), v.begin(), v.end());
    std::vector<double> att_out(dim_, 0.0);
    for (int h = 0; h < heads_; ++h) {
      const int kvh = h / (heads_ / kv_heads_);
      std::vector<double> scores(pos + 1);
      double max_score = -1e300;
      for (int t = 0; t <= pos; ++t) {
        double s = 0;
        for (int i = 0; i < head; ++i) {
          s += q[h * head + i] * keys_[l][t * kv_dim + kvh * head + i];
        }
        scores[t] = s / std::sqrt(static_cast<double>(head));
        max_score = std::max(max_score, scores[t]);
      }
      double sum = 0;
      for (double& s : scores) {
        sum += (s = std::exp(s - max_score));
      }
      for (int t = 0; t <= pos; ++t) {
        for (int i = 0; i < head; ++i) {
          att_out[h * head + i] += scores[t] / sum * values_[l][t * kv_dim + kvh * head + i];
        }
      }
    }
    std::vector<double> o =
        MatVec(Tensor(kWo) + static_cast<size_t>(l) * dim_ * dim_, att_out, dim_, dim_);
    for (int i = 0; i < dim_; ++i) {
      x[i] += o[i];
    }
    xb = RmsNorm(x, Tensor(kRmsFfn) + static_cast<size_t>(l) * dim_);
    std::vector<double> g =
        MatVec(Tensor(kW1) + static_cast<size_t>(l) * hidden_ * dim_, xb, hidden_, dim_);
    std::vector<double> u =
        MatVec(Tensor(kW3) + static_cast<size_t>(l) * hidden_ * dim_, xb, hidden_, dim_);
    for (int i = 0; i < hidden_; ++i) {
      g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    }
    std::vector<double> f =
        MatVec(Tensor(kW2) + static_cast<size_t>(l) * dim_ * hidden_, g, dim_, hidden_);
    for (int i = 0; i < dim_; ++i) {
      x[i] += f[i];
    }
  }
  std::vector<double> logits = MatVec(Tensor(kCls), RmsNorm(x, Tensor(kRmsFinal)), vocab_, dim_);
  return {logits.begin(), logits.end()};
}

}  // namespace cellhouse::engine::testing
