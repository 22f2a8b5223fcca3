#include "tests/executor/fake_compute.h"

namespace cellhouse::testing {
namespace {

float Weight(uint32_t round, uint32_t i, uint32_t j) {
  return static_cast<float>(static_cast<int>((round * 7 + i * 13 + j * 5) % 17) - 8) * 0.125F;
}

}  // namespace

void FakeRowOutput(const executor::SlotShape& shape, uint32_t round, const float* in, float* out) {
  for (uint32_t j = 0; j < shape.output_row_floats; ++j) {
    float acc = static_cast<float>(round + 1);
    for (uint32_t i = 0; i < shape.input_row_floats; ++i) acc += in[i] * Weight(round, i, j);
    out[j] = acc;
  }
}

void FakeFinalOutput(const executor::SlotShape& shape, const float* last_row_in, float* out) {
  for (uint32_t k = 0; k < shape.final_floats; ++k) {
    float acc = 0.5F;
    for (uint32_t i = 0; i < shape.input_row_floats; ++i) {
      acc += last_row_in[i] * Weight(shape.rounds, i, k);
    }
    out[k] = acc;
  }
}

void FakeCompute::Run(const executor::Batch& batch, executor::ThreadPool& pool) {
  const uint32_t in_floats = shape_.input_row_floats;
  // Split by entry (whole rows and whole answers per thread), as a real compute splits by
  // output element: which thread computes a row changes nothing in it.
  pool.ForEachPart([&](int part, int parts) {
    auto [begin, end] =
        executor::PartRange(static_cast<int64_t>(batch.entries.size()), part, parts);
    for (int64_t e = begin; e < end; ++e) {
      const executor::BatchEntry& entry = batch.entries[static_cast<size_t>(e)];
      const float* first = batch.input + size_t{entry.first_row} * in_floats;
      if (batch.final_round) {
        FakeFinalOutput(shape_, first + size_t{entry.rows - 1} * in_floats, entry.output);
        continue;
      }
      for (uint32_t r = 0; r < entry.rows; ++r) {
        FakeRowOutput(shape_, batch.round, first + size_t{r} * in_floats,
                      entry.output + size_t{r} * entry.output_stride_floats);
      }
    }
  });
}

executor::SlotShape SmallShape() {
  return {.max_rows = 4,
          .rounds = 4,
          .input_row_floats = 24,
          .output_row_floats = 40,
          .final_floats = 16};
}

}  // namespace cellhouse::testing
