// Tokenizer: text to token ids and back, for every vocabulary the engine runs.
//
//   - llama2.c's tokenizer file (Open/Parse): its encode() and decode() exactly, so outputs
//     compare with the reference implementation. File: int32 max_token_length, then per piece a
//     float32 score, an int32 length and the bytes. Ids 0, 1, 2 are <unk>, BOS, EOS; 3..258 the
//     byte pieces "<0x00>".."<0xFF>".
//   - A model file's own vocabulary (FromVocabulary, vocabulary.h), as llama.cpp tokenizes it:
//     SentencePiece-style (score-ordered merges, byte fallback, the leading-space rule, UNK) or
//     byte-level BPE (ranked merges over the byte-to-unicode alphabet, after the pre-tokenizer
//     the file names, pretokenizer.h).
//
//   CH_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromVocabulary(std::move(spec)));
//   CH_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode("Hello", {.add_bos = tok.add_bos()}));
//   std::string text = tok.Detokenize(ids);
//
// Special tokens. Control tokens (BOS, <|im_end|>, ...) come from text only where the caller
// asks for it (EncodeOptions::parse_special), which only a chat template's own markup does: a
// message's content is always encoded with it off, so "<|im_end|>" typed by a tenant is plain
// text (EncodeSegments). As in llama.cpp and Hugging Face, user-defined added tokens (Qwen's
// <think>) are matched in any text; they are not control tokens. Unlike llama.cpp, merges never
// form a control, unknown, byte or unused token from text (SentencePiece itself never does).
//
// End of generation: the EOS and EOT ids, and the pieces llama.cpp recognises by their text
// (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <|eom_id|>, ...; the FIM pad,
// repo and file-separator tokens), as llama.cpp derives its EOG set. For a llama2.c tokenizer it
// is BOS alone, llama2.c's stop rule.
#ifndef CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_
#define CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "engine/tokenizer/vocabulary.h"

namespace cellhouse::engine {

// llama2.c's fixed ids.
inline constexpr int32_t kUnkToken = 0;
inline constexpr int32_t kBosToken = 1;
inline constexpr int32_t kEosToken = 2;
// Byte b is token b + kFirstByteToken when the vocabulary has no piece for it (llama2.c).
inline constexpr int32_t kFirstByteToken = 3;

// "▁" (U+2581): how SentencePiece vocabularies write a space.
inline constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";

// The bit of a token type in Tokenizer's attribute bytes.
uint8_t TypeBit(TokenType type);

enum class TokenizerKind {
  kLlama2c,        // llama2.c's tokenizer file and algorithm
  kSentencePiece,  // tokenizer.ggml.model = llama
  kBytePair,       // tokenizer.ggml.model = gpt2
};
std::string_view TokenizerKindName(TokenizerKind kind);  // "llama2.c", "sentencepiece", "bpe"

struct EncodeOptions {
  bool add_bos = false;  // start with BOS, unless the text itself starts with it
  bool add_eos = false;  // end with EOS
  // Control tokens written in the text become those tokens. Only for a template's markup.
  bool parse_special = false;
};

// A piece of a rendered prompt: the template's markup (special tokens parsed) or a message's
// content (never parsed).
struct TextSegment {
  std::string_view text;
  bool markup = false;
};

class BpeMerges;
class PreTokenizer;

class Tokenizer {
 public:
  static Result<Tokenizer> Open(const std::string& path, int32_t vocab_size);
  // Pure: parses a llama2.c tokenizer file of exactly `vocab_size` pieces. `name` prefixes
  // messages.
  static Result<Tokenizer> Parse(std::span<const std::byte> file, int32_t vocab_size,
                                 std::string_view name);
  // A model file's vocabulary. Refuses an unknown model or pre-tokenizer, ids out of range,
  // merges of pieces the vocabulary lacks, and the like, with a message naming spec.name.
  static Result<Tokenizer> FromVocabulary(VocabularySpec spec);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  TokenizerKind kind() const { return kind_; }
  int32_t vocab_size() const { return static_cast<int32_t>(offsets_.size()) - 1; }
  // The longest piece in bytes: no token stands for more bytes of text than this (the byte
  // pieces' "<0xHH>" included, so it is an upper bound, as the context check needs).
  int32_t max_token_length() const { return max_token_length_; }
  // The vocabulary's text of `id` ("▁Hello", "Ġworld", "<|im_end|>"); "" out of range.
  std::string_view Piece(int32_t id) const;
  float Score(int32_t id) const;
  TokenType Type(int32_t id) const;
  bool IsControl(int32_t id) const;  // control or unknown: never made from plain text

  int32_t bos() const { return bos_; }       // -1: none
  int32_t eos() const { return eos_; }       // -1: none
  bool add_bos() const { return add_bos_; }  // the vocabulary starts a sequence with BOS
  bool add_eos() const { return add_eos_; }
  bool IsEndOfGeneration(int32_t id) const;
  const std::vector<int32_t>& end_of_generation() const { return eog_; }
  // tokenizer.chat_template, "" when the file has none.
  const std::string& chat_template() const { return chat_template_; }
  // The pre-tokenizer's name (BPE), "" otherwise.
  std::string_view pre() const;

  // Encodes `text`. For a model file's vocabulary the text must be valid UTF-8 (else an error);
  // a llama2.c tokenizer takes any bytes, as llama2.c does.
  Result<std::vector<int32_t>> Encode(std::string_view text, EncodeOptions options) const;
  // Encodes a rendered prompt: markup with special tokens parsed, content without, as one text
  // (the leading-space rule and the pre-tokenizer see markup and content together, so benign
  // content gives the same ids as llama.cpp's tokenization of the whole prompt). parse_special in
  // `options` is ignored. BOS is added when asked and the markup did not already write it.
  Result<std::vector<int32_t>> EncodeSegments(std::span<const TextSegment> segments,
                                              EncodeOptions options) const;

  // The bytes `token` stands for when generated, valid as long as the Tokenizer: a byte piece
  // is its single byte (so a character may be split across tokens; see utf8.h), control tokens
  // are "" (llama2.c: their piece), and a SentencePiece piece right after BOS loses its leading
  // space. Out of range: "".
  std::string_view Decode(int32_t prev_token, int32_t token) const;
  // The text of a whole sequence: every Decode joined, BOS and EOS skipped, invalid UTF-8 kept
  // as bytes. For a SentencePiece vocabulary the space its encoding added at the start is removed,
  // so Detokenize(Encode(s)) == s.
  std::string Detokenize(std::span<const int32_t> tokens) const;
  // Decode, but a control token shows its text ("<|im_end|>"): for people reading token lists.
  std::string_view DisplayPiece(int32_t token) const;

 private:
  struct Fragment {
    int32_t token;  // -1: text
    size_t offset;  // text: into the joined buffer
    size_t length;
  };

  Tokenizer();
  int32_t Lookup(std::string_view piece) const;
  // The text a special token is written as in a template ("<s>" for llama2.c's BOS).
  std::string_view SpecialText(int32_t id) const;
  // llama2.c's algorithm.
  int32_t MergeOf(int32_t left, int32_t right, std::string& scratch) const;
  void MergePairs(std::vector<int32_t>& tokens) const;
  Status EncodeLlama2c(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const;
  // llama.cpp's SentencePiece session over text whose spaces are already "▁".
  void EncodeSentencePiece(std::string_view escaped, std::vector<int32_t>& out) const;
  Status EncodeBytePair(std::string_view text, std::vector<int32_t>& out) const;
  // Splits `text` (at `base` in `joined`) at special tokens, as llama.cpp's
  // tokenizer_st_partition: control ones only when `parse_special`, user-defined ones always.
  void Partition(std::string_view joined, size_t base, size_t length, bool parse_special,
                 std::vector<Fragment>& out) const;
  Result<std::vector<int32_t>> EncodeFragments(std::string_view joined,
                                               const std::vector<Fragment>& fragments,
                                               EncodeOptions options) const;
  Status BuildFromVocabulary(VocabularySpec& spec);
  void DeriveEndOfGeneration(int32_t eot, int32_t eom);
  // The piece → id index and, for SentencePiece, byte pieces (typed so, or in an untyped
  // vocabulary spelled <0xHH>).
  Status IndexPieces(bool untyped);
  // Special tokens that text can contain, longest first (equal lengths by id).
  void CollectSpecialTokens();
  // What each token decodes to when generated (llama.cpp's token_to_piece, special = false).
  void BuildDecodedText();

  TokenizerKind kind_ = TokenizerKind::kLlama2c;
  int32_t max_token_length_ = 0;
  std::unique_ptr<char[]> text_;   // every piece, back to back
  std::vector<uint32_t> offsets_;  // vocab_size + 1 offsets into text_
  std::vector<float> scores_;
  std::vector<uint8_t> attrs_;       // bit (1 << TokenType) per token; several for promoted ones
  std::vector<int16_t> byte_value_;  // the byte a "<0xHH>" (byte) piece stands for, or -1
  // Piece text -> id. Keys view text_, which never moves. llama2.c keeps the lowest id of a
  // duplicate, a model file the last (as llama.cpp does).
  std::unordered_map<std::string_view, int32_t> ids_;
  // What each token decodes to when generated (model files; llama2.c decodes from the pieces).
  std::string decoded_text_;
  std::vector<uint32_t> decoded_offsets_;
  // Special tokens that text can contain, longest first (llama.cpp's cache_special_tokens).
  std::vector<int32_t> special_tokens_;
  bool has_user_defined_ = false;
  std::vector<int32_t> eog_;
  std::vector<bool> is_eog_;
  std::array<int32_t, 256> byte_tokens_{};  // SentencePiece: the <0xHH> id per byte, or -1
  int32_t bos_ = kBosToken;
  int32_t eos_ = kEosToken;
  int32_t unk_ = kUnkToken;
  bool add_bos_ = true;
  bool add_eos_ = false;
  bool add_space_prefix_ = true;
  bool ignore_merges_ = false;  // BPE: a word that is a piece is taken whole (Llama 3)
  std::string chat_template_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<BpeMerges> bpe_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_TOKENIZER_H_
