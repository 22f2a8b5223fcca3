// The two encoders of model-file vocabularies, each over one text fragment (no special tokens
// in it): llama.cpp's SentencePiece session and its byte-level BPE session.
#include <algorithm>
#include <string>
#include <vector>

#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace cellhouse::engine {
namespace {

// What a merge, or a symbol left whole, may become: never a control, unknown, byte or unused
// token (SentencePiece's matcher never produces them from text; llama.cpp would).
bool MayComeFromText(uint8_t bits) {
  return (bits & (TypeBit(TokenType::kNormal) | TypeBit(TokenType::kUserDefined) |
                  TypeBit(TokenType::kUndefined))) != 0 &&
         (bits & (TypeBit(TokenType::kControl) | TypeBit(TokenType::kUnknown) |
                  TypeBit(TokenType::kByte) | TypeBit(TokenType::kUnused))) == 0;
}

}  // namespace

// llama.cpp's llm_tokenizer_spm_session: symbols are the UTF-8 characters; the adjacent pair
// whose concatenation is the highest-scoring piece merges first (leftmost on a tie), until no
// pair makes a piece; a symbol that is no piece falls back to its <0xHH> byte pieces (or UNK).
// A heap with stale entries skipped keeps it O(n log n).
void Tokenizer::EncodeSentencePiece(std::string_view escaped, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t start;
    uint32_t length;
    int32_t prev;
    int32_t next;
    uint32_t version;
  };
  struct Candidate {
    float score;
    int32_t left;
    int32_t right;
    uint32_t left_version;
    uint32_t right_version;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(escaped.size());
  for (size_t pos = 0; pos < escaped.size();) {
    const size_t n = std::max<size_t>(1, ValidSequenceLength(escaped, pos));
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(n),
                       static_cast<int32_t>(symbols.size()) - 1,
                       static_cast<int32_t>(symbols.size()) + 1, 0});
    pos += n;
  }
  const auto count = static_cast<int32_t>(symbols.size());
  if (count == 0) return;
  std::vector<Candidate> heap;
  heap.reserve(symbols.size());
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  auto offer = [&](int32_t left, int32_t right) {
    if (left < 0 || right >= count) return;
    const Symbol& l = symbols[static_cast<size_t>(left)];
    const Symbol& r = symbols[static_cast<size_t>(right)];
    const int32_t id = Lookup(escaped.substr(l.start, l.length + r.length));
    if (id < 0 || !MayComeFromText(attrs_[static_cast<size_t>(id)])) return;
    heap.push_back({Score(id), left, right, l.version, r.version});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (int32_t i = 0; i + 1 < count; ++i) offer(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    Symbol& right = symbols[static_cast<size_t>(c.right)];
    if (left.version != c.left_version || right.version != c.right_version) continue;
    left.length += right.length;
    ++left.version;
    ++right.version;
    left.next = right.next;
    if (left.next < count) symbols[static_cast<size_t>(left.next)].prev = c.left;
    offer(left.prev, c.left);
    offer(c.left, left.next);
  }
  for (int32_t i = 0; i < count; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& s = symbols[static_cast<size_t>(i)];
    const std::string_view text = escaped.substr(s.start, s.length);
    const int32_t id = Lookup(text);
    if (id >= 0 && MayComeFromText(attrs_[static_cast<size_t>(id)])) {
      out.push_back(id);
      continue;
    }
    for (char c : text) {
      const int32_t byte_id = byte_tokens_[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        out.push_back(byte_id);
      } else if (unk_ >= 0) {
        out.push_back(unk_);
      }
    }
  }
}

Status Tokenizer::EncodeBytePair(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> words;
  words.reserve(text.size() / 4 + 1);
  CH_RETURN_IF_ERROR(pre_->Split(text, words));
  BpeMerges::Scratch scratch;
  std::string spelled;
  for (std::string_view word : words) {
    if (ignore_merges_ && word.size() > 1) {
      spelled.clear();
      for (char c : word) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), spelled);
      const int32_t id = Lookup(spelled);
      if (id >= 0 && MayComeFromText(attrs_[static_cast<size_t>(id)])) {
        out.push_back(id);
        continue;
      }
    }
    bpe_->EncodeWord(word, scratch, out);
  }
  return Ok();
}

}  // namespace cellhouse::engine
