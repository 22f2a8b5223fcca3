// Tokenizer::FromVocabulary: a Tokenizer from a model file's vocabulary, with llama.cpp's
// defaults for absent keys and its end-of-generation set.
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace cellhouse::engine {
namespace {

// Pieces llama.cpp (src/llama-vocab.cpp, load) recognises by their text. A token found here is
// treated as a control token even where the file calls it normal or user-defined.
constexpr std::array<std::string_view, 11> kEndOfTurnPieces = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<end_of_utterance>",
    "[EOT]"};
constexpr std::array<std::string_view, 10> kEndOfGenerationPieces = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>", "<end_of_utterance>"};
// Fill-in-the-middle tokens: pad, repository and file separator end a generation; all are
// control tokens.
constexpr std::array<std::string_view, 5> kFimPad = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                                     "<PAD>", "[PAD]"};
constexpr std::array<std::string_view, 5> kFimRepo = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                      "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> kFimSep = {"<|file_sep|>"};
constexpr std::array<std::string_view, 18> kFimOther = {"<|fim_prefix|>",
                                                        "<fim-prefix>",
                                                        "<fim_prefix>",
                                                        "<PRE>",
                                                        "\xE2\x96\x81<PRE>",
                                                        "<|fim_suffix|>",
                                                        "<fim-suffix>",
                                                        "<fim_suffix>",
                                                        "<SUF>",
                                                        "\xE2\x96\x81<SUF>",
                                                        "<|fim_middle|>",
                                                        "<fim-middle>",
                                                        "<fim_middle>",
                                                        "<MID>",
                                                        "\xE2\x96\x81<MID>",
                                                        "<\xEF\xBD\x9C"
                                                        "fim\xE2\x96\x81"
                                                        "begin\xEF\xBD\x9C>",
                                                        "<\xEF\xBD\x9C"
                                                        "fim\xE2\x96\x81"
                                                        "hole\xEF\xBD\x9C>",
                                                        "<\xEF\xBD\x9C"
                                                        "fim\xE2\x96\x81"
                                                        "end\xEF\xBD\x9C>"};

template <size_t N>
bool OneOf(std::string_view text, const std::array<std::string_view, N>& list) {
  return std::find(list.begin(), list.end(), text) != list.end();
}

int16_t BytePieceValue(std::string_view piece) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex(piece[3]);
  const int lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? int16_t{-1} : static_cast<int16_t>(hi * 16 + lo);
}

}  // namespace

Result<Tokenizer> Tokenizer::FromVocabulary(VocabularySpec spec) {
  Tokenizer t;
  CH_RETURN_IF_ERROR(t.BuildFromVocabulary(spec));
  return t;
}

namespace {

// A SentencePiece piece as text: its U+2581 marks become spaces.
void AppendSentencePieceText(std::string_view piece, std::string& out) {
  for (size_t p = 0; p < piece.size();) {
    if (piece.substr(p, kSentencePieceSpace.size()) == kSentencePieceSpace) {
      out.push_back(' ');
      p += kSentencePieceSpace.size();
    } else {
      out.push_back(piece[p++]);
    }
  }
}

}  // namespace

Status Tokenizer::BuildFromVocabulary(VocabularySpec& spec) {
  const std::string name = spec.name.empty() ? "the model" : "'" + spec.name + "'";
  auto refuse = [&](const std::string& why) {
    return Error("reading the vocabulary of " + name + ": " + why);
  };
  if (spec.model == "llama") {
    kind_ = TokenizerKind::kSentencePiece;
  } else if (spec.model == "gpt2") {
    kind_ = TokenizerKind::kBytePair;
  } else {
    return refuse("tokenizer.ggml.model '" + spec.model +
                  "' is not supported (supported: 'llama' for SentencePiece, 'gpt2' for "
                  "byte-level BPE)");
  }
  const size_t n = spec.tokens.size();
  if (n == 0 || n > (size_t{1} << 24)) {
    return refuse("tokenizer.ggml.tokens has " + std::to_string(n) + " pieces");
  }
  if (!spec.scores.empty() && spec.scores.size() != n) {
    return refuse("tokenizer.ggml.scores has " + std::to_string(spec.scores.size()) +
                  " values for " + std::to_string(n) + " pieces");
  }
  if (!spec.token_types.empty() && spec.token_types.size() != n) {
    return refuse("tokenizer.ggml.token_type has " + std::to_string(spec.token_types.size()) +
                  " values for " + std::to_string(n) + " pieces");
  }
  size_t text_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    // An empty piece would make a merge or a special-token search meaningless; llama.cpp
    // renames it the same way.
    if (spec.tokens[i].empty()) spec.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
    text_bytes += spec.tokens[i].size();
    max_token_length_ = std::max(max_token_length_, static_cast<int32_t>(spec.tokens[i].size()));
  }
  if (text_bytes > std::numeric_limits<uint32_t>::max()) return refuse("the pieces exceed 4 GiB");
  text_ = std::make_unique<char[]>(text_bytes + 1);
  offsets_.reserve(n + 1);
  attrs_.resize(n);
  byte_value_.assign(n, -1);
  scores_ = std::move(spec.scores);
  size_t pos = 0;
  for (size_t i = 0; i < n; ++i) {
    offsets_.push_back(static_cast<uint32_t>(pos));
    std::memcpy(text_.get() + pos, spec.tokens[i].data(), spec.tokens[i].size());
    pos += spec.tokens[i].size();
    int32_t type = spec.token_types.empty() ? 1 : spec.token_types[i];
    if (type < 0 || type > 6) type = 0;  // llama.cpp: any other value is "undefined"
    attrs_[i] = TypeBit(static_cast<TokenType>(type));
  }
  offsets_.push_back(static_cast<uint32_t>(pos));
  if (Status indexed = IndexPieces(spec.token_types.empty()); !indexed) {
    return refuse(indexed.error().message());
  }

  // Special ids: llama.cpp's defaults for an absent key (SentencePiece: 0, 1, 2); an id outside
  // the vocabulary is refused rather than silently replaced.
  auto check_id = [&](const std::optional<int32_t>& id, std::string_view key,
                      int32_t absent) -> Result<int32_t> {
    if (!id) return absent;
    if (*id < 0 || std::cmp_greater_equal(*id, n)) {
      return refuse(std::string(key) + " is " + std::to_string(*id) + ", outside the " +
                    std::to_string(n) + " pieces");
    }
    return *id;
  };
  const bool spm = kind_ == TokenizerKind::kSentencePiece;
  CH_ASSIGN_OR_RETURN(bos_, check_id(spec.bos, "tokenizer.ggml.bos_token_id", spm ? 1 : -1));
  CH_ASSIGN_OR_RETURN(eos_, check_id(spec.eos, "tokenizer.ggml.eos_token_id", spm ? 2 : -1));
  CH_ASSIGN_OR_RETURN(unk_, check_id(spec.unk, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1));
  if (std::cmp_greater_equal(bos_, n)) bos_ = -1;  // defaults in a tiny vocabulary
  if (std::cmp_greater_equal(eos_, n)) eos_ = -1;
  if (std::cmp_greater_equal(unk_, n)) unk_ = -1;

  bool ignore_merges = false;
  if (kind_ == TokenizerKind::kBytePair) {
    CH_ASSIGN_OR_RETURN(PreTokenizer pre,
                        PreTokenizer::Create(spec.pre.empty() ? "default" : spec.pre));
    const bool llama3 = PreTokenizer::Canonical(pre.name()) == "llama3";
    pre_ = std::make_unique<PreTokenizer>(std::move(pre));
    // llama.cpp: Llama 3 vocabularies take a whole word that is a piece as is, and start with
    // BOS unless the file says otherwise.
    ignore_merges = llama3;
    add_bos_ = spec.add_bos.value_or(llama3);
    add_space_prefix_ = spec.add_space_prefix.value_or(false);
    CH_ASSIGN_OR_RETURN(
        BpeMerges merges,
        BpeMerges::Build(
            spec.merges, [this](std::string_view p) { return Lookup(p); }, spec.name));
    bpe_ = std::make_unique<BpeMerges>(std::move(merges));
  } else {
    add_bos_ = spec.add_bos.value_or(true);
    add_space_prefix_ = spec.add_space_prefix.value_or(true);
  }
  ignore_merges_ = ignore_merges;
  add_eos_ = spec.add_eos.value_or(false);
  if (add_bos_ && bos_ < 0) return refuse("add_bos_token is set but there is no BOS token");
  if (add_eos_ && eos_ < 0) return refuse("add_eos_token is set but there is no EOS token");
  CH_ASSIGN_OR_RETURN(int32_t eot, check_id(spec.eot, "tokenizer.ggml.eot_token_id", -1));
  CH_ASSIGN_OR_RETURN(int32_t eom, check_id(spec.eom, "tokenizer.ggml.eom_token_id", -1));
  DeriveEndOfGeneration(eot, eom);

  CollectSpecialTokens();
  BuildDecodedText();
  chat_template_ = std::move(spec.chat_template);
  return Ok();
}

Status Tokenizer::IndexPieces(bool untyped) {
  const size_t n = attrs_.size();
  ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    ids_[Piece(static_cast<int32_t>(i))] = static_cast<int32_t>(i);  // the last id, as llama.cpp
    // Byte pieces: typed so, or (a file without token types) spelled <0xHH>, as llama.cpp
    // finds byte fallbacks by their text.
    const bool typed_byte = (attrs_[i] & TypeBit(TokenType::kByte)) != 0;
    if (kind_ == TokenizerKind::kSentencePiece && (typed_byte || untyped)) {
      byte_value_[i] = BytePieceValue(Piece(static_cast<int32_t>(i)));
      if (byte_value_[i] < 0 && typed_byte) {
        return Error("piece " + std::to_string(i) + " '" +
                     std::string(Piece(static_cast<int32_t>(i))) +
                     "' is a byte token but not of the form <0xHH>");
      }
      if (byte_value_[i] >= 0) {
        attrs_[i] = TypeBit(TokenType::kByte);
        if (byte_tokens_[static_cast<size_t>(byte_value_[i])] < 0) {
          byte_tokens_[static_cast<size_t>(byte_value_[i])] = static_cast<int32_t>(i);
        }
      }
    }
  }
  return Ok();
}

void Tokenizer::CollectSpecialTokens() {
  // Special tokens text can contain, longest first (equal lengths by id, for determinism).
  for (size_t i = 0; i < attrs_.size(); ++i) {
    const uint8_t bits = attrs_[i];
    if ((bits & (TypeBit(TokenType::kControl) | TypeBit(TokenType::kUserDefined) |
                 TypeBit(TokenType::kUnknown))) != 0) {
      special_tokens_.push_back(static_cast<int32_t>(i));
      if ((bits & (TypeBit(TokenType::kControl) | TypeBit(TokenType::kUnknown))) == 0) {
        has_user_defined_ = true;
      }
    }
  }
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(),
                   [this](int32_t a, int32_t b) { return Piece(a).size() > Piece(b).size(); });
}

void Tokenizer::BuildDecodedText() {
  // What each token decodes to when generated (llama.cpp's token_to_piece, special = false).
  const size_t n = attrs_.size();
  const bool spm = kind_ == TokenizerKind::kSentencePiece;
  decoded_offsets_.reserve(n + 1);
  std::string bytes;
  for (size_t i = 0; i < n; ++i) {
    decoded_offsets_.push_back(static_cast<uint32_t>(decoded_text_.size()));
    const auto id = static_cast<int32_t>(i);
    const uint8_t bits = attrs_[i];
    const std::string_view piece = Piece(id);
    if ((bits & (TypeBit(TokenType::kControl) | TypeBit(TokenType::kUnknown))) != 0) continue;
    if ((bits & TypeBit(TokenType::kUserDefined)) != 0) {
      decoded_text_.append(piece);
    } else if ((bits & TypeBit(TokenType::kNormal)) != 0) {
      if (spm) {
        AppendSentencePieceText(piece, decoded_text_);
      } else if (ByteLevelDecode(piece, bytes)) {
        decoded_text_.append(bytes);
      } else {
        decoded_text_.append(piece);  // not byte-level spelled: shown as written
      }
    } else if ((bits & TypeBit(TokenType::kByte)) != 0 && byte_value_[i] >= 0) {
      decoded_text_.push_back(static_cast<char>(byte_value_[i]));
    }
  }
  decoded_offsets_.push_back(static_cast<uint32_t>(decoded_text_.size()));
}

void Tokenizer::DeriveEndOfGeneration(int32_t eot, int32_t eom) {
  const auto n = static_cast<int32_t>(attrs_.size());
  auto promote = [&](int32_t id) {
    attrs_[static_cast<size_t>(id)] |= TypeBit(TokenType::kControl);
  };
  auto add = [&](int32_t id) {
    if (id < 0 || std::find(eog_.begin(), eog_.end(), id) != eog_.end()) return;
    eog_.push_back(id);
  };
  int32_t fim_pad = -1;
  int32_t fim_repo = -1;
  int32_t fim_sep = -1;
  for (int32_t id = 0; id < n; ++id) {
    const std::string_view piece = Piece(id);
    if (eot < 0 && OneOf(piece, kEndOfTurnPieces)) {
      eot = id;
      promote(id);
    }
    if (eom < 0 && piece == "<|eom_id|>") {
      eom = id;
      promote(id);
    }
    if (fim_pad < 0 && OneOf(piece, kFimPad)) fim_pad = id;
    if (fim_repo < 0 && OneOf(piece, kFimRepo)) fim_repo = id;
    if (fim_sep < 0 && OneOf(piece, kFimSep)) fim_sep = id;
    if (OneOf(piece, kFimPad) || OneOf(piece, kFimRepo) || OneOf(piece, kFimSep) ||
        OneOf(piece, kFimOther)) {
      promote(id);
    }
  }
  add(fim_pad);
  add(fim_repo);
  add(fim_sep);
  for (int32_t id = 0; id < n; ++id) {
    if (OneOf(Piece(id), kEndOfGenerationPieces)) {
      add(id);
      promote(id);
    }
  }
  add(eos_);
  add(eot);
  add(eom);
  std::sort(eog_.begin(), eog_.end());
  is_eog_.assign(static_cast<size_t>(n), false);
  for (int32_t id : eog_) is_eog_[static_cast<size_t>(id)] = true;
}

}  // namespace cellhouse::engine
