// A plain scalar implementation of the Llama forward pass for tests, independent of the
// engine's parser, kernels and BLAS: it walks the checkpoint bytes itself and accumulates in
// double precision, so it is a ground truth the engine's float results are compared against.
//
//   ReferenceModel ref(file_bytes);
//   std::vector<float> logits = ref.Step(token, pos);   // positions must come in order
#ifndef CELLHOUSE_TESTS_ENGINE_REFERENCE_MODEL_H_
#define CELLHOUSE_TESTS_ENGINE_REFERENCE_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace cellhouse::engine::testing {

class ReferenceModel {
 public:
  explicit ReferenceModel(std::span<const std::byte> file);
  // Processes `token` at `pos` (0, 1, 2, ... in order) and returns the logits.
  std::vector<float> Step(int32_t token, int32_t pos);

 private:
  const float* Tensor(size_t index) const { return tensors_[index]; }
  std::vector<double> MatVec(const float* w, const std::vector<double>& x, int rows,
                             int cols) const;
  std::vector<double> RmsNorm(const std::vector<double>& x, const float* weight) const;

  int dim_, hidden_, layers_, heads_, kv_heads_, vocab_, seq_len_;
  bool shared_;
  std::vector<const float*> tensors_;        // in file order
  std::vector<std::vector<double>> keys_;    // [layer][pos * kv_dim]
  std::vector<std::vector<double>> values_;  // [layer][pos * kv_dim]
};

}  // namespace cellhouse::engine::testing

#endif  // CELLHOUSE_TESTS_ENGINE_REFERENCE_MODEL_H_
