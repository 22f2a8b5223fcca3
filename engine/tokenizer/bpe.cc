#include "engine/tokenizer/bpe.h"

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace cellhouse::engine {
namespace {

// bytes_to_unicode(): the printable Latin-1 bytes stand for themselves; the others, in byte
// order, take the code points from U+0100 on.
constexpr std::array<char32_t, 256> kByteToUnicode = [] {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    table[b] = printable ? b : next++;
  }
  return table;
}();

// The inverse, over U+0000..U+01FF (every value the table uses); -1 elsewhere.
constexpr std::array<int16_t, 512> kUnicodeToByte = [] {
  std::array<int16_t, 512> table{};
  table.fill(-1);
  for (uint32_t b = 0; b < 256; ++b) table[kByteToUnicode[b]] = static_cast<int16_t>(b);
  return table;
}();

}  // namespace

char32_t ByteToUnicode(uint8_t b) { return kByteToUnicode[b]; }

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(kByteToUnicode[static_cast<uint8_t>(c)], out);
  return out;
}

bool ByteLevelDecode(std::string_view text, std::string& bytes) {
  bytes.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) return false;
    const char32_t cp = DecodeSequence(text, pos, n);
    if (cp >= kUnicodeToByte.size() || kUnicodeToByte[cp] < 0) return false;
    bytes.push_back(static_cast<char>(kUnicodeToByte[cp]));
    pos += n;
  }
  return true;
}

Result<BpeMerges> BpeMerges::Build(const std::vector<std::string>& merges,
                                   const std::function<int32_t(std::string_view)>& lookup,
                                   std::string_view name) {
  BpeMerges bpe;
  for (uint32_t b = 0; b < 256; ++b) {
    std::string spelled;
    AppendUtf8(kByteToUnicode[b], spelled);
    bpe.byte_tokens_[b] = lookup(spelled);
    if (bpe.byte_tokens_[b] < 0) {
      return Error("reading the vocabulary of '" + std::string(name) +
                   "': it has no piece for byte " + std::to_string(b) + " ('" + spelled +
                   "'), which every byte-level BPE vocabulary needs");
    }
  }
  bpe.merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    // "left right": the first space after the first character separates the halves (a half may
    // itself be a space only in vocabularies that do not map bytes, as llama.cpp allows).
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      return Error("reading the vocabulary of '" + std::string(name) + "': merge " +
                   std::to_string(rank) + " '" + merge +
                   "' is not two pieces separated by a space");
    }
    const std::string_view left(merge.data(), space);
    const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    const int32_t left_id = lookup(left);
    const int32_t right_id = lookup(right);
    joined.assign(left);
    joined.append(right);
    const int32_t merged = lookup(joined);
    if (left_id < 0 || right_id < 0 || merged < 0) continue;
    // The first (lowest) rank of a pair wins, as a map filled with emplace keeps it.
    bpe.merges_.emplace(Key(left_id, right_id), Merge{static_cast<int32_t>(rank), merged});
  }
  return bpe;
}

void BpeMerges::EncodeWord(std::string_view word, Scratch& scratch,
                           std::vector<int32_t>& out) const {
  const auto n = static_cast<int32_t>(word.size());
  if (n == 0) return;
  if (n == 1) {
    out.push_back(byte_tokens_[static_cast<uint8_t>(word[0])]);
    return;
  }
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  symbols.resize(static_cast<size_t>(n));
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_tokens_[static_cast<uint8_t>(word[i])], i - 1, i + 1, 0};
  }
  // The most urgent candidate on top: lowest rank, then leftmost (lowest initial position,
  // which a merged symbol keeps from its left half).
  auto later = [](const Scratch::Candidate& a, const Scratch::Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  auto offer = [&](int32_t left, int32_t right) {
    auto it = merges_.find(Key(symbols[left].token, symbols[right].token));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, right, it->second.merged, symbols[left].version,
                    symbols[right].version});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) offer(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Scratch::Candidate c = heap.back();
    heap.pop_back();
    if (symbols[c.left].version != c.left_version || symbols[c.right].version != c.right_version) {
      continue;  // a side changed since the pair was offered
    }
    Scratch::Symbol& left = symbols[c.left];
    left.token = c.merged;
    ++left.version;
    ++symbols[c.right].version;
    const int32_t after = symbols[c.right].next;
    left.next = after;
    if (after < n) symbols[after].prev = c.left;
    if (left.prev >= 0) offer(left.prev, c.left);
    if (after < n) offer(c.left, after);
  }
  for (int32_t i = 0; i < n; i = symbols[i].next) out.push_back(symbols[i].token);
}

}  // namespace cellhouse::engine
