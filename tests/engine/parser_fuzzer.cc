// libFuzzer target for the parsers that read untrusted bytes: the checkpoint (fp32 or int8), GGUF
// and the tokenizer. Each may refuse; none may crash, hang or read past the input (ASan). An int8
// file that parses also runs one forward step, so the kernels' indexing meets hostile shapes; so
// does a GGUF file whose model loads, and its vocabulary encodes a text.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "engine/formats/checkpoint.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_model.h"
#include "engine/formats/quantized_checkpoint.h"
#include "engine/forward.h"
#include "engine/gguf_forward.h"
#include "engine/kernels/kernels.h"
#include "engine/run_state.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cellhouse::engine::ParseCheckpoint;
  using cellhouse::engine::Tokenizer;
  // A heap copy of exactly `size` bytes, float-aligned, so ASan catches any overread.
  std::vector<std::byte> bytes(size);
  if (size > 0) {
    std::memcpy(bytes.data(), data, size);
  }
  if (cellhouse::engine::IsGguf(bytes)) {
    auto gguf = cellhouse::engine::GgufFile::Parse(bytes, "fuzz.gguf");
    if (gguf) {
      // Every value read back through the views Parse checked.
      size_t sink = 0;
      for (const cellhouse::engine::GgufMetadata& m : gguf->metadata()) {
        sink += m.value.Describe().size();
        for (const cellhouse::engine::GgufValue& e : m.value.Elements()) {
          sink += e.Describe().size() + e.Elements().size();
        }
        static_cast<void>(gguf->GetStringArray(m.key));
        static_cast<void>(gguf->GetFloat32Array(m.key));
        static_cast<void>(gguf->GetInt32Array(m.key));
      }
      for (const cellhouse::engine::GgufTensor& t : gguf->tensors()) {
        sink += static_cast<size_t>(t.data.back()) + t.Describe().size();
      }
      auto weights = cellhouse::engine::LoadGgufWeights(*gguf, {.max_context = 4});
      if (weights) {
        auto state = cellhouse::engine::RunState::Create(weights->config, 2,
                                                         cellhouse::engine::KvPrecision::kF16);
        if (state) {
          const std::array<int32_t, 2> tokens = {weights->config.vocab_size - 1, 0};
          sink += static_cast<size_t>(
              cellhouse::engine::ForwardGguf(*weights, cellhouse::engine::BestKernelIsa(), *state,
                                             tokens, 0)[0] != 0.0F);
        }
      }
      auto tokenizer = cellhouse::engine::TokenizerFromGguf(*gguf);
      if (tokenizer) {
        auto ids = tokenizer->Encode("Once upon a time \xE4\xBD\xA0", {.add_bos = true});
        sink += ids ? ids->size() : 0;
      }
      volatile size_t keep = sink;
      static_cast<void>(keep);
    }
  } else if (cellhouse::engine::IsQuantizedCheckpoint(bytes)) {
    using cellhouse::engine::Kernels;
    using cellhouse::engine::MatVecKernel;
    using cellhouse::engine::RunState;
    auto q8 = cellhouse::engine::ParseQuantizedCheckpoint(bytes, "fuzz.q8");
    if (q8) {
      auto state = RunState::Create(q8->config, 1, cellhouse::engine::KvPrecision::kF16);
      if (state) {
        const Kernels k = cellhouse::engine::SelectKernels(MatVecKernel::kAuto);
        const int32_t token = q8->config.vocab_size - 1;
        volatile float sink =
            cellhouse::engine::Forward(*q8, k, *state, std::span(&token, 1), 0)[0];
        static_cast<void>(sink);
      }
    }
  } else {
    auto weights = ParseCheckpoint(bytes, "fuzz.bin");
    if (weights) {
      volatile float sink = weights->classifier.back() + weights->rms_final.front();
      static_cast<void>(sink);
    }
  }
  // The tokenizer's vocabulary size comes from the model; take it from the first two bytes.
  if (size >= 2) {
    const int32_t vocab = 1 + (data[0] | (data[1] << 8)) % 1024;
    auto tokenizer = Tokenizer::Parse(std::span(bytes).subspan(2), vocab, "fuzz.tok");
    if (tokenizer) {
      auto ids = tokenizer->Encode("Once upon a time \xE4\xBD\xA0", {.add_bos = true});
      if (ids) {
        for (size_t i = 1; i < ids->size(); ++i) {
          static_cast<void>(tokenizer->Decode((*ids)[i - 1], (*ids)[i]));
        }
      }
    }
  }
  return 0;
}
