#include "tests/engine/test_models.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "engine/formats/generator.h"
#include "engine/formats/quantize.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine::testing {

ModelConfig TinyConfig() {
  return {.dim = 48,
          .hidden_dim = 100,
          .n_layers = 2,
          .n_heads = 4,
          .n_kv_heads = 2,
          .vocab_size = 400,
          .seq_len = 160,
          .shared_classifier = false};
}

void PrintTo(const NamedShape& shape, std::ostream* os) { *os << shape.name; }

std::vector<NamedShape> ForwardShapes() {
  return {
      {"MultiHeadShared",
       {.dim = 64,
        .hidden_dim = 172,
        .n_layers = 2,
        .n_heads = 4,
        .n_kv_heads = 4,
        .vocab_size = 300,
        .seq_len = 160,
        .shared_classifier = true}},
      {"GroupedQuerySeparate",
       {.dim = 96,
        .hidden_dim = 200,
        .n_layers = 3,
        .n_heads = 6,
        .n_kv_heads = 2,
        .vocab_size = 257,
        .seq_len = 160,
        .shared_classifier = false}},
      {"OddSizesMultiQuery",
       {.dim = 36,
        .hidden_dim = 37,
        .n_layers = 1,
        .n_heads = 3,
        .n_kv_heads = 1,
        .vocab_size = 19,
        .seq_len = 144,
        .shared_classifier = false}},
      {"OddSizesShared",
       {.dim = 20,
        .hidden_dim = 53,
        .n_layers = 2,
        .n_heads = 2,
        .n_kv_heads = 1,
        .vocab_size = 31,
        .seq_len = 144,
        .shared_classifier = true}},
  };
}

std::vector<int32_t> TokenSequence(int32_t vocab, int32_t count) {
  std::vector<int32_t> tokens(count);
  for (int32_t i = 0; i < count; ++i) {
    tokens[i] = (i * 7 + 3) % vocab;
  }
  return tokens;
}

void WriteBytes(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "writing " << path;
}

std::vector<std::byte> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

ModelFiles WriteModelFiles(const cellhouse::testing::TempDir& dir, const ModelConfig& config,
                           uint64_t seed) {
  ModelFiles files{dir.File("model" + std::to_string(seed) + ".bin"), ""};
  files.tokenizer = files.model + ".tokenizer";
  Status m = WriteModel(config, seed, files.model);
  EXPECT_TRUE(m) << m.error().message();
  Status t = WriteTokenizer(config.vocab_size, seed, files.tokenizer);
  EXPECT_TRUE(t) << t.error().message();
  return files;
}

ModelFiles WriteQuantizedModelFiles(const cellhouse::testing::TempDir& dir,
                                    const ModelConfig& config, uint64_t seed, int32_t group_size) {
  const ModelFiles fp32 = WriteModelFiles(dir, config, seed);
  ModelFiles files{dir.File("model" + std::to_string(seed) + ".q8"), ""};
  files.tokenizer = files.model + ".tokenizer";
  Result<Model> model = Model::Open(fp32.model);
  EXPECT_TRUE(model) << model.error().message();
  if (model) {
    Status q = WriteQuantizedModel(std::get<ModelWeights>(model->weights()),
                                   {.group_size = group_size}, files.model);
    EXPECT_TRUE(q) << q.error().message();
  }
  Status t = WriteTokenizer(config.vocab_size, seed, files.tokenizer);
  EXPECT_TRUE(t) << t.error().message();
  return files;
}

std::string WriteGgufModelFiles(const cellhouse::testing::TempDir& dir, const ModelConfig& config,
                                uint64_t seed, GgufFileType type) {
  const ModelFiles fp32 = WriteModelFiles(dir, config, seed);
  std::string path = dir.File("model" + std::to_string(seed) + "-" +
                              std::string(GgufFileTypeName(type)) + ".gguf");
  Result<Model> model = Model::Open(fp32.model);
  Result<Tokenizer> tok = Tokenizer::Open(fp32.tokenizer, config.vocab_size);
  EXPECT_TRUE(model && tok);
  if (model && tok) {
    Status st =
        WriteGgufModel(std::get<ModelWeights>(model->weights()), *tok, {.type = type}, path);
    EXPECT_TRUE(st) << st.error().message();
  }
  return path;
}

Result<std::vector<std::string>> SmapsFields(const std::function<bool(std::string_view)>& header) {
  CH_ASSIGN_OR_RETURN(std::string smaps, ReadFileToString("/proc/self/smaps", size_t{64} << 20));
  std::vector<std::string> fields;
  bool inside = false;
  for (std::string_view line : Split(smaps, '\n')) {
    // A field's first word ends in ':' ("Pss:", "VmFlags:"); a header's is "start-end".
    const std::string_view first = line.substr(0, line.find(' '));
    if (!first.empty() && !first.ends_with(':')) {
      inside = header(line);
    } else if (inside) {
      fields.emplace_back(line);
    }
  }
  return fields;
}

std::vector<MatVecKernel> SupportedKernels() {
  std::vector<MatVecKernel> kernels;
  for (MatVecKernel k : {MatVecKernel::kOpenBlas, MatVecKernel::kAvx2, MatVecKernel::kAvx512}) {
    if (MatVecKernelSupported(k)) {
      kernels.push_back(k);
    }
  }
  return kernels;
}

}  // namespace cellhouse::engine::testing
