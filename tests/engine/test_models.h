// Helpers for engine tests: generated models written to a test's temporary directory.
//
//   TempDir dir;
//   ModelFiles files = WriteModelFiles(dir, TinyConfig(), /*seed=*/7);
//   Model model = *Model::Open(files.model);
//   ModelFiles q8 = WriteQuantizedModelFiles(dir, TinyConfig(), 7);   // model7.q8
#ifndef CELLHOUSE_TESTS_ENGINE_TEST_MODELS_H_
#define CELLHOUSE_TESTS_ENGINE_TEST_MODELS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "engine/formats/gguf_convert.h"
#include "engine/formats/model_config.h"
#include "engine/kernels/kernels.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine::testing {

struct ModelFiles {
  std::string model;
  std::string tokenizer;
};

// A small grouped-query model with a vocabulary the generated tokenizer supports.
ModelConfig TinyConfig();

// A model shape the forward-pass tests run over, named for the test's parameter.
struct NamedShape {
  std::string name;
  ModelConfig config;
};
void PrintTo(const NamedShape& shape, std::ostream* os);
// Multi-head, grouped-query and multi-query attention, shared and separate classifiers, sizes
// on and off every vector width.
std::vector<NamedShape> ForwardShapes();
// `count` tokens below `vocab`: the same sequence in every test.
std::vector<int32_t> TokenSequence(int32_t vocab, int32_t count);

// The field lines ("Rss:   12 kB", "VmFlags: rd mr ...") of every mapping in /proc/self/smaps
// whose header line ("start-end perms offset dev inode path") `header` accepts, in order.
Result<std::vector<std::string>> SmapsFields(const std::function<bool(std::string_view)>& header);

// The matvec and attention kernel sets this CPU can run: OpenBLAS and scalar loops always, AVX2
// and AVX-512 where present.
std::vector<MatVecKernel> SupportedKernels();

// Writes `bytes` to `path`; fails the test on error.
void WriteBytes(const std::string& path, std::span<const std::byte> bytes);
std::vector<std::byte> ReadBytes(const std::string& path);

// Generates a model and tokenizer into `dir` (names derived from the seed).
ModelFiles WriteModelFiles(const cellhouse::testing::TempDir& dir, const ModelConfig& config,
                           uint64_t seed);
// The same model quantized to int8 groups of `group_size` (model<seed>.q8, and its tokenizer).
ModelFiles WriteQuantizedModelFiles(const cellhouse::testing::TempDir& dir,
                                    const ModelConfig& config, uint64_t seed,
                                    int32_t group_size = 32);

// The same model converted to GGUF (model<seed>-<TYPE>.gguf; its vocabulary inside).
std::string WriteGgufModelFiles(const cellhouse::testing::TempDir& dir, const ModelConfig& config,
                                uint64_t seed, GgufFileType type);

}  // namespace cellhouse::engine::testing

#endif  // CELLHOUSE_TESTS_ENGINE_TEST_MODELS_H_
