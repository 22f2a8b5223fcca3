#include "engine/tokenizer/gguf_vocabulary.h"

#include <limits>
#include <string_view>
#include <vector>

namespace cellhouse::engine {

namespace {

// SentencePiece writes a space as U+2581 (LOWER ONE EIGHTH BLOCK); llama2.c's tokenizer, which
// this vocabulary runs with, has spaces.
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";

std::string WithSpaces(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  size_t start = 0;
  for (size_t at = piece.find(kSpaceMark); at != std::string_view::npos;
       at = piece.find(kSpaceMark, start)) {
    out.append(piece.substr(start, at - start));
    out.push_back(' ');
    start = at + kSpaceMark.size();
  }
  out.append(piece.substr(start));
  return out;
}

Result<int32_t> TokenId(const GgufFile& g, const char* key, int32_t absent) {
  if (!g.Has(key)) {
    return absent;
  }
  CH_ASSIGN_OR_RETURN(uint32_t id, g.GetUint32(key));
  if (id > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
    return g.Refuse(std::string("key '") + key + "' is out of range");
  }
  return static_cast<int32_t>(id);
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
  if (!model) {
    return info;
  }
  info.model = std::string(model->substr(0, 64));
  info.kind = *model == "llama"  ? VocabularyKind::kSentencePiece
              : *model == "gpt2" ? VocabularyKind::kByteLevelBpe
                                 : VocabularyKind::kOther;
  if (Result<std::string_view> pre = g.GetString("tokenizer.ggml.pre")) {
    info.pre = std::string(pre->substr(0, 64));
  }
  if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens")) {
    info.size = tokens->array_size();
  }
  info.chat_template = g.GetString("tokenizer.chat_template").has_value();
  return info;
}

Result<Tokenizer> TokenizerFromGguf(const GgufFile& g) {
  const GgufVocabularyInfo info = DescribeGgufVocabulary(g);
  switch (info.kind) {
    case VocabularyKind::kSentencePiece:
      break;
    case VocabularyKind::kNone:
      return g.Refuse("the file has no vocabulary (tokenizer.ggml.model)");
    case VocabularyKind::kByteLevelBpe:
      return g.Refuse("its vocabulary is " + info.Describe() +
                      "; byte-level BPE tokenizers are not supported yet (issue 15), only "
                      "SentencePiece-style ones (tokenizer.ggml.model = llama)");
    case VocabularyKind::kOther:
      return g.Refuse("its vocabulary kind '" + info.model +
                      "' is not supported (supported: llama, the SentencePiece style)");
  }
  CH_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                      g.GetStringArray("tokenizer.ggml.tokens"));
  Vocabulary v;
  v.pieces.reserve(tokens.size());
  for (std::string_view t : tokens) {
    v.pieces.push_back(WithSpaces(t));
  }
  if (g.Has("tokenizer.ggml.scores")) {
    CH_ASSIGN_OR_RETURN(v.scores, g.GetFloat32Array("tokenizer.ggml.scores"));
  } else {
    v.scores.assign(v.pieces.size(), 0.0F);
  }
  // llama.cpp's defaults for a SentencePiece vocabulary: BOS 1, EOS 2, BOS added.
  CH_ASSIGN_OR_RETURN(v.bos, TokenId(g, "tokenizer.ggml.bos_token_id", kBosToken));
  CH_ASSIGN_OR_RETURN(v.eos, TokenId(g, "tokenizer.ggml.eos_token_id", kEosToken));
  CH_ASSIGN_OR_RETURN(v.add_bos, g.GetBoolOr("tokenizer.ggml.add_bos_token", true));
  v.end_of_generation = {v.eos};
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    CH_ASSIGN_OR_RETURN(int32_t id, TokenId(g, key, -1));
    if (id >= 0) {
      v.end_of_generation.push_back(id);
    }
  }
  return Tokenizer::FromVocabulary(v, g.name());
}

}  // namespace cellhouse::engine
