#include "bench/engine/bytes_per_token.h"

#include <variant>

#include "engine/run_state.h"

namespace cellhouse::bench {

double WeightBytesPerToken(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  const double d = c.dim;
  const double norms = 4.0 * (2 * d * c.n_layers + d);
  if (const auto* g = std::get_if<engine::GgufWeights>(&model.weights())) {
    auto bytes = [](const engine::WeightMatrix& m) {
      return static_cast<double>(m.row_bytes) * static_cast<double>(m.rows);
    };
    double matrices = bytes(g->classifier);
    for (const engine::GgufLayer& l : g->layers) {
      for (const engine::WeightMatrix* m :
           {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
        matrices += bytes(*m);
      }
    }
    return matrices + norms + static_cast<double>(g->token_embedding.row_bytes);
  }
  if (const auto* q8 = std::get_if<engine::QuantizedWeights>(&model.weights())) {
    double matrices = 0;
    for (const engine::Q8Tensor* t :
         {&q8->wq, &q8->wk, &q8->wv, &q8->wo, &q8->w1, &q8->w2, &q8->w3, &q8->classifier}) {
      matrices += static_cast<double>(t->Span().size());
    }
    const engine::Q8Shape& e = q8->token_embedding.shape;
    const double embedding_row =
        static_cast<double>(e.Groups()) * static_cast<double>(e.TileBytes());
    return matrices + norms + embedding_row;
  }
  const double h = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size;
  const double per_layer = 2 * d * d + 2 * kv * d + 3 * d * h;
  return 4.0 * (c.n_layers * per_layer + v * d + d) + norms;
}

double KvBytesPerToken(const engine::Model& model, double context) {
  return static_cast<double>(engine::KvCacheBytesPerToken(model.config(), model.kv_precision())) *
         context;
}

}  // namespace cellhouse::bench
