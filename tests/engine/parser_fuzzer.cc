// libFuzzer target for the two parsers that read untrusted bytes: the checkpoint and the
// tokenizer. Either may refuse; neither may crash, hang or read past the input (ASan).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "worker/engine/checkpoint.h"
#include "worker/engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cellhouse::engine::ParseCheckpoint;
  using cellhouse::engine::Tokenizer;
  // A heap copy of exactly `size` bytes, float-aligned, so ASan catches any overread.
  std::vector<std::byte> bytes(size);
  if (size > 0) {
    std::memcpy(bytes.data(), data, size);
  }
  auto weights = ParseCheckpoint(bytes, "fuzz.bin");
  if (weights) {
    volatile float sink = weights->classifier.back() + weights->rms_final.front();
    static_cast<void>(sink);
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
