#include "engine/tokenizer/gguf_vocabulary.h"

#include <optional>
#include <string>
#include <utility>

namespace cellhouse::engine {
namespace {

Result<std::optional<int32_t>> OptionalId(const GgufFile& gguf, std::string_view key) {
  if (!gguf.Has(key)) return std::optional<int32_t>();
  CH_ASSIGN_OR_RETURN(uint32_t id, gguf.GetUint32(key));
  if (id > static_cast<uint32_t>(INT32_MAX)) {
    return gguf.Refuse("key '" + std::string(key) + "' is " + std::to_string(id) +
                       ", not a token id");
  }
  return std::optional<int32_t>(static_cast<int32_t>(id));
}

Result<std::optional<bool>> OptionalBool(const GgufFile& gguf, std::string_view key) {
  if (!gguf.Has(key)) return std::optional<bool>();
  CH_ASSIGN_OR_RETURN(bool value, gguf.GetBool(key));
  return std::optional<bool>(value);
}

// The most pieces (and merges) a vocabulary may have, as BuildVocabulary allows.
constexpr uint64_t kMostPieces = uint64_t{1} << 24;

// An array's length checked before it is decoded, so that a hostile count costs nothing: at
// most `most` elements, or exactly `exactly` when given (an empty one reads as absent).
Status CheckArrayLength(const GgufFile& gguf, std::string_view key, uint64_t most,
                        std::optional<uint64_t> exactly, std::string_view unit) {
  const GgufValue* v = gguf.Find(key);
  if (v == nullptr || v->type() != GgufType::kArray) return Ok();  // the getter says what is wrong
  const uint64_t n = v->array_size();
  if (exactly && n != 0 && n != *exactly) {
    return gguf.Refuse("key '" + std::string(key) + "' has " + std::to_string(n) + " values for " +
                       std::to_string(*exactly) + " " + std::string(unit));
  }
  if (n > most) {
    return gguf.Refuse("key '" + std::string(key) + "' has " + std::to_string(n) +
                       " entries; at most " + std::to_string(most) + " are supported");
  }
  return Ok();
}

std::vector<std::string> Strings(const std::vector<std::string_view>& views) {
  std::vector<std::string> out;
  out.reserve(views.size());
  for (std::string_view v : views) out.emplace_back(v);
  return out;
}

}  // namespace

std::string GgufVocabularyInfo::Describe() const {
  std::string kind_text;
  switch (kind) {
    case VocabularyKind::kNone:
      return "none";
    case VocabularyKind::kSentencePiece:
      kind_text = "SentencePiece (llama)";
      break;
    case VocabularyKind::kByteLevelBpe:
      kind_text = "byte-level BPE (gpt2" + (pre.empty() ? "" : ", pre " + pre) + ")";
      break;
    case VocabularyKind::kOther:
      kind_text = "'" + model + "'";
      break;
  }
  return kind_text + ", " + std::to_string(size) + " tokens";
}

GgufVocabularyInfo DescribeGgufVocabulary(const GgufFile& g) {
  GgufVocabularyInfo info;
  Result<std::string_view> model = g.GetString("tokenizer.ggml.model");
  if (!model) return info;
  info.model = std::string(model->substr(0, 64));
  info.kind = *model == "llama"  ? VocabularyKind::kSentencePiece
              : *model == "gpt2" ? VocabularyKind::kByteLevelBpe
                                 : VocabularyKind::kOther;
  if (Result<std::string_view> pre = g.GetString("tokenizer.ggml.pre")) {
    info.pre = std::string(pre->substr(0, 64));
  }
  if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens")) info.size = tokens->array_size();
  info.chat_template = g.GetString("tokenizer.chat_template").has_value();
  return info;
}

Result<VocabularySpec> VocabularyFromGguf(const GgufFile& gguf) {
  VocabularySpec spec;
  spec.name = gguf.name();
  CH_ASSIGN_OR_RETURN(std::string_view model, gguf.GetString("tokenizer.ggml.model"));
  spec.model = std::string(model);
  if (gguf.Has("tokenizer.ggml.pre")) {
    CH_ASSIGN_OR_RETURN(std::string_view pre, gguf.GetString("tokenizer.ggml.pre"));
    spec.pre = std::string(pre);
  }
  CH_RETURN_IF_ERROR(
      CheckArrayLength(gguf, "tokenizer.ggml.tokens", kMostPieces, std::nullopt, "pieces"));
  CH_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                      gguf.GetStringArray("tokenizer.ggml.tokens"));
  spec.tokens = Strings(tokens);
  for (std::string_view key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
    CH_RETURN_IF_ERROR(CheckArrayLength(gguf, key, kMostPieces, tokens.size(), "pieces"));
  }
  CH_RETURN_IF_ERROR(
      CheckArrayLength(gguf, "tokenizer.ggml.merges", kMostPieces, std::nullopt, "merges"));
  if (gguf.Has("tokenizer.ggml.scores")) {
    CH_ASSIGN_OR_RETURN(spec.scores, gguf.GetFloat32Array("tokenizer.ggml.scores"));
  }
  if (gguf.Has("tokenizer.ggml.token_type")) {
    CH_ASSIGN_OR_RETURN(spec.token_types, gguf.GetInt32Array("tokenizer.ggml.token_type"));
  }
  if (gguf.Has("tokenizer.ggml.merges")) {
    CH_ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                        gguf.GetStringArray("tokenizer.ggml.merges"));
    spec.merges = Strings(merges);
  }
  CH_ASSIGN_OR_RETURN(spec.bos, OptionalId(gguf, "tokenizer.ggml.bos_token_id"));
  CH_ASSIGN_OR_RETURN(spec.eos, OptionalId(gguf, "tokenizer.ggml.eos_token_id"));
  CH_ASSIGN_OR_RETURN(spec.eot, OptionalId(gguf, "tokenizer.ggml.eot_token_id"));
  CH_ASSIGN_OR_RETURN(spec.eom, OptionalId(gguf, "tokenizer.ggml.eom_token_id"));
  CH_ASSIGN_OR_RETURN(spec.unk, OptionalId(gguf, "tokenizer.ggml.unknown_token_id"));
  CH_ASSIGN_OR_RETURN(spec.add_bos, OptionalBool(gguf, "tokenizer.ggml.add_bos_token"));
  CH_ASSIGN_OR_RETURN(spec.add_eos, OptionalBool(gguf, "tokenizer.ggml.add_eos_token"));
  CH_ASSIGN_OR_RETURN(spec.add_space_prefix, OptionalBool(gguf, "tokenizer.ggml.add_space_prefix"));
  if (gguf.Has("tokenizer.chat_template")) {
    CH_ASSIGN_OR_RETURN(std::string_view chat_template, gguf.GetString("tokenizer.chat_template"));
    spec.chat_template = std::string(chat_template);
  }
  return spec;
}

Result<Tokenizer> TokenizerFromGguf(const GgufFile& gguf) {
  CH_ASSIGN_OR_RETURN(VocabularySpec spec, VocabularyFromGguf(gguf));
  return Tokenizer::FromVocabulary(std::move(spec));
}

}  // namespace cellhouse::engine
