// Byte-level BPE (GPT-2's scheme, as Llama 3 and Qwen use it): every byte of the text is first
// mapped to a printable character (bytes_to_unicode: "Ġ" for a space), a word's bytes start as
// single-byte tokens, and the adjacent pair with the lowest merge rank is merged until no ranked
// pair is left (the leftmost first on a tie, as llama.cpp and Hugging Face's tokenizers do).
//
//   CH_ASSIGN_OR_RETURN(BpeMerges bpe, BpeMerges::Build(merges, lookup, "model.gguf"));
//   BpeMerges::Scratch scratch;
//   bpe.EncodeWord("hello", scratch, out);
//
// Pairs are looked up by token ids in a hash table built once, and the merges run on a heap over
// a linked list of symbols, so a word of n bytes costs O(n log n), not the O(n²) of rescanning
// every pair after each merge.
#ifndef CELLHOUSE_ENGINE_TOKENIZER_BPE_H_
#define CELLHOUSE_ENGINE_TOKENIZER_BPE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace cellhouse::engine {

// GPT-2's bytes_to_unicode(): the code point byte b is written as in the vocabulary.
char32_t ByteToUnicode(uint8_t b);
// The vocabulary spelling of raw bytes ("Ġworld" for " world").
std::string ByteLevelEncode(std::string_view bytes);
// The raw bytes of a vocabulary spelling; false if a character is not one of the 256.
bool ByteLevelDecode(std::string_view text, std::string& bytes);

class BpeMerges {
 public:
  // `lookup` gives the id of a vocabulary piece or -1. Refuses a vocabulary that lacks one of
  // the 256 byte characters; merges whose halves or result are missing are skipped, as they
  // could never apply.
  static Result<BpeMerges> Build(const std::vector<std::string>& merges,
                                 const std::function<int32_t(std::string_view)>& lookup,
                                 std::string_view name);

  // Reused between words so that encoding allocates only while buffers grow.
  struct Scratch {
    struct Symbol {
      int32_t token;
      int32_t prev;
      int32_t next;
      uint32_t version;
    };
    struct Candidate {
      int32_t rank;
      int32_t left;
      int32_t right;
      int32_t merged;
      uint32_t left_version;
      uint32_t right_version;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };
  // Appends the tokens of one pre-tokenized word (raw bytes).
  void EncodeWord(std::string_view word, Scratch& scratch, std::vector<int32_t>& out) const;
  int32_t byte_token(uint8_t b) const { return byte_tokens_[b]; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  std::array<int32_t, 256> byte_tokens_{};
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_BPE_H_
