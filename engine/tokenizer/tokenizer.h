// Tokenizer: llama2.c's byte-pair tokenizer and its file format.
//
// File: int32 max_token_length, then for each of the model's vocab_size pieces: float32 score,
// int32 length, `length` bytes (no terminator). Ids 0, 1, 2 are <unk>, BOS and EOS; ids 3..258
// are the byte pieces "<0x00>".."<0xFF>" that encode any byte the vocabulary lacks.
//
//   CH_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Open("tok512.bin", model.config().vocab_size));
//   CH_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode("Once upon a time", {.add_bos =
//   true})); std::string text; for (size_t i = 1; i < ids.size(); ++i) text += tok.Decode(ids[i -
//   1], ids[i]);
//
// Encode and Decode reproduce llama2.c's encode() and decode() token for token, so outputs can
// be compared with the reference implementation.
//
// The same tokenizer serves a SentencePiece-style vocabulary from a GGUF file
// (tokenizer.ggml.model = llama; gguf_tokenizer.h builds the Vocabulary): its own BOS, EOS and
// byte-piece ids, whether to add BOS, and which ids end a generation.
#ifndef CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_
#define CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace cellhouse::engine {

inline constexpr int32_t kUnkToken = 0;
inline constexpr int32_t kBosToken = 1;
inline constexpr int32_t kEosToken = 2;
// Byte b is token b + kFirstByteToken when the vocabulary has no piece for it.
inline constexpr int32_t kFirstByteToken = 3;

struct EncodeOptions {
  bool add_bos = false;  // start with BOS (bos(): id 1 in a llama2.c vocabulary)
  bool add_eos = false;  // end with EOS (eos(): id 2 in a llama2.c vocabulary)
};

// A vocabulary given piece by piece, for FromVocabulary.
struct Vocabulary {
  std::vector<std::string> pieces;  // each id's text, spaces as ' ' (not SentencePiece's U+2581)
  std::vector<float> scores;        // one per piece: merges prefer the higher
  int32_t bos = kBosToken;
  int32_t eos = kEosToken;
  bool add_bos = true;  // what a conversation starts with
  // Ids that end a generation when sampled (EOS, end-of-turn, ...), not emitted.
  std::vector<int32_t> end_of_generation = {kEosToken};
};

class Tokenizer {
 public:
  static Result<Tokenizer> Open(const std::string& path, int32_t vocab_size);
  // Pure: parses a tokenizer file of exactly `vocab_size` pieces. `name` prefixes messages.
  static Result<Tokenizer> Parse(std::span<const std::byte> file, int32_t vocab_size,
                                 std::string_view name);
  // From pieces and scores (a GGUF file's vocabulary). `name` prefixes messages. Every special id
  // must be a piece.
  static Result<Tokenizer> FromVocabulary(const Vocabulary& vocabulary, std::string_view name);

  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;

  int32_t vocab_size() const { return static_cast<int32_t>(scores_.size()); }
  int32_t max_token_length() const { return max_token_length_; }
  std::string_view Piece(int32_t id) const;
  float Score(int32_t id) const { return scores_[static_cast<size_t>(id)]; }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  // Whether a conversation starts with BOS (always, for a llama2.c tokenizer).
  bool add_bos() const { return add_bos_; }
  // Whether sampling `id` ends a generation: BOS for a llama2.c tokenizer (llama2.c's run stops
  // there), the vocabulary's end-of-generation ids for one made with FromVocabulary.
  bool IsEndOfGeneration(int32_t id) const;

  // llama2.c's encode(): a leading " " piece when the text is not empty, each UTF-8 character
  // looked up (bytes fall back to byte pieces), then repeated merges of the adjacent pair whose
  // concatenation is the best-scoring piece. Fails only when the vocabulary lacks the byte
  // pieces a fallback needs.
  Result<std::vector<int32_t>> Encode(std::string_view text, EncodeOptions options) const;

  // llama2.c's decode(): the text of `token`, without its leading space right after BOS, and a
  // byte piece "<0xHH>" as the single raw byte. An id out of range decodes to "". The view is
  // valid as long as the Tokenizer.
  std::string_view Decode(int32_t prev_token, int32_t token) const;

 private:
  Tokenizer() = default;
  // Indexes the pieces once text_, offsets_ and scores_ are filled.
  void Index();
  int32_t Lookup(std::string_view piece) const;
  // The piece `left` and `right` concatenate to, if it exists and may merge; else -1.
  int32_t MergeOf(int32_t left, int32_t right, std::string& scratch) const;
  void MergePairs(std::vector<int32_t>& tokens) const;

  int32_t max_token_length_ = 0;
  std::unique_ptr<char[]> text_;   // every piece, back to back
  std::vector<uint32_t> offsets_;  // vocab_size + 1 offsets into text_
  std::vector<float> scores_;
  std::vector<int16_t> byte_value_;  // the byte a "<0xHH>" piece stands for, or -1
  std::vector<int32_t> byte_token_;  // [256]: the lowest id of byte b's piece, or -1
  int32_t bos_ = kBosToken;
  int32_t eos_ = kEosToken;
  bool add_bos_ = true;
  std::vector<int32_t> end_of_generation_ = {kBosToken};
  // Piece text -> lowest id with that text. Keys view text_, which never moves.
  std::unordered_map<std::string_view, int32_t> ids_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_
