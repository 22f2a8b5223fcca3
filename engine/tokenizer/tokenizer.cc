#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "base/mapping.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace cellhouse::engine {

namespace {

// Every byte value once, so a byte piece can decode to a view of one byte.
constexpr std::array<char, 256> kAllBytes = [] {
  std::array<char, 256> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>(i);
  }
  return bytes;
}();

// Longest piece a file may declare. llama2.c's largest vocabularies stay far below this; the
// limit only keeps a lying header from making every later check meaningless.
constexpr int32_t kMaxPieceBytes = 1 << 16;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// The byte a "<0xHH>" piece stands for, or -1.
int16_t ByteValue(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') {
    return -1;
  }
  int hi = HexDigit(piece[3]);
  int lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) {
    return -1;
  }
  return static_cast<int16_t>(hi * 16 + lo);
}

}  // namespace

uint8_t TypeBit(TokenType type) { return static_cast<uint8_t>(1U << static_cast<uint32_t>(type)); }

namespace {

template <typename T>
T ReadLittle(std::span<const std::byte> file, size_t offset) {
  T value;
  std::memcpy(&value, file.data() + offset, sizeof(T));
  return value;
}

// llama2.c starts its search for the best pair at -1e10: a pair scoring no higher never merges.
constexpr float kNoMergeScore = -1e10F;

// The names llama2.c's three fixed ids answer to in a template's markup.
constexpr std::array<std::string_view, 3> kLlama2cSpecialText = {"<unk>", "<s>", "</s>"};

}  // namespace

std::string_view TokenizerKindName(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kLlama2c:
      return "llama2.c";
    case TokenizerKind::kSentencePiece:
      return "sentencepiece";
    case TokenizerKind::kBytePair:
      return "bpe";
  }
  return "?";
}

Tokenizer::Tokenizer() { byte_tokens_.fill(-1); }
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::Open(const std::string& path, int32_t vocab_size) {
  Result<Mapping> mapping = Mapping::MapFile(path.c_str());
  if (!mapping) {
    return std::move(mapping).error().Context("opening tokenizer '" + path + "'");
  }
  return Parse(mapping->bytes(), vocab_size, path);
}

Result<Tokenizer> Tokenizer::Parse(std::span<const std::byte> file, int32_t vocab_size,
                                   std::string_view name) {
  auto refuse = [&](const std::string& why) {
    return Error("reading tokenizer '" + std::string(name) + "': " + why);
  };
  if (vocab_size <= 0) {
    return refuse("the model's vocab_size " + std::to_string(vocab_size));
  }
  if (file.size() > std::numeric_limits<uint32_t>::max()) {
    return refuse("the file is over 4 GiB");
  }
  if (file.size() < sizeof(int32_t)) {
    return refuse("the file is shorter than its 4-byte header");
  }
  Tokenizer t;
  t.max_token_length_ = ReadLittle<int32_t>(file, 0);
  if (t.max_token_length_ <= 0 || t.max_token_length_ > kMaxPieceBytes) {
    return refuse("max_token_length " + std::to_string(t.max_token_length_) + " is outside 1.." +
                  std::to_string(kMaxPieceBytes));
  }
  const auto n = static_cast<size_t>(vocab_size);
  t.offsets_.reserve(n + 1);
  t.scores_.reserve(n);
  // First pass: check every record and measure the text; the text buffer is allocated once.
  size_t pos = sizeof(int32_t);
  size_t text_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    if (file.size() - pos < 8) {
      return refuse("the file ends in the record of piece " + std::to_string(i) + " of " +
                    std::to_string(n) + " (truncated, or made for a smaller vocabulary)");
    }
    auto score = ReadLittle<float>(file, pos);
    auto len = ReadLittle<int32_t>(file, pos + 4);
    pos += 8;
    if (std::isnan(score)) {
      return refuse("piece " + std::to_string(i) + " has a NaN score");
    }
    if (len < 0 || len > t.max_token_length_) {
      return refuse("piece " + std::to_string(i) + " claims " + std::to_string(len) +
                    " bytes; the header's max_token_length is " +
                    std::to_string(t.max_token_length_));
    }
    if (file.size() - pos < static_cast<size_t>(len)) {
      return refuse("piece " + std::to_string(i) + " claims " + std::to_string(len) +
                    " bytes but only " + std::to_string(file.size() - pos) + " remain");
    }
    t.offsets_.push_back(static_cast<uint32_t>(text_bytes));
    t.scores_.push_back(score);
    text_bytes += static_cast<size_t>(len);
    pos += static_cast<size_t>(len);
  }
  if (pos != file.size()) {
    return refuse(std::to_string(file.size() - pos) + " bytes follow the last of " +
                  std::to_string(n) + " pieces (made for a larger vocabulary?)");
  }
  t.offsets_.push_back(static_cast<uint32_t>(text_bytes));
  // Second pass: copy the text (now known to be in bounds) and index it.
  t.text_ = std::make_unique<char[]>(text_bytes + 1);
  pos = sizeof(int32_t);
  for (size_t i = 0; i < n; ++i) {
    size_t len = t.offsets_[i + 1] - t.offsets_[i];
    std::memcpy(t.text_.get() + t.offsets_[i], file.data() + pos + 8, len);
    pos += 8 + len;
  }
  t.byte_value_.resize(n);
  t.attrs_.assign(n, TypeBit(TokenType::kNormal));
  t.ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string_view piece = t.Piece(static_cast<int32_t>(i));
    t.byte_value_[i] = ByteValue(piece);
    if (t.byte_value_[i] >= 0) t.attrs_[i] = TypeBit(TokenType::kByte);
    t.ids_.emplace(piece, static_cast<int32_t>(i));  // keeps the lowest id of a duplicate
  }
  // llama2.c's three fixed ids; their pieces in karpathy's files are "\n<s>\n" and the like,
  // so a template's "<s>" is matched by the names below (SpecialText), not by the piece.
  t.attrs_[kUnkToken] = TypeBit(TokenType::kUnknown);
  for (int32_t id : {kBosToken, kEosToken}) {
    if (std::cmp_less(id, n)) t.attrs_[static_cast<size_t>(id)] = TypeBit(TokenType::kControl);
  }
  for (int32_t id : {kBosToken, kEosToken, kUnkToken}) {
    if (std::cmp_less(id, n)) t.special_tokens_.push_back(id);
  }
  // llama2.c stops at BOS, the token its models end a text with.
  if (std::cmp_less(kBosToken, n)) t.eog_.push_back(kBosToken);
  t.is_eog_.assign(n, false);
  for (int32_t id : t.eog_) t.is_eog_[static_cast<size_t>(id)] = true;
  return t;
}

std::string_view Tokenizer::Piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return {};
  }
  const auto i = static_cast<size_t>(id);
  return {text_.get() + offsets_[i], offsets_[i + 1] - offsets_[i]};
}

int32_t Tokenizer::Lookup(std::string_view piece) const {
  auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

int32_t Tokenizer::MergeOf(int32_t left, int32_t right, std::string& scratch) const {
  const std::string_view a = Piece(left);
  const std::string_view b = Piece(right);
  // No piece is longer than max_token_length, so a longer concatenation cannot be one.
  if (a.size() + b.size() > static_cast<size_t>(max_token_length_)) {
    return -1;
  }
  scratch.assign(a);
  scratch.append(b);
  const int32_t id = Lookup(scratch);
  return id >= 0 && Score(id) > kNoMergeScore ? id : -1;
}

// llama2.c merges, again and again, the adjacent pair whose concatenation is the best-scoring
// piece, the leftmost on a tie, rescanning every pair each time: O(n²) in the text length. This
// does the same merges in the same order in O(n log n): the tokens are a linked list over their
// initial positions (so "leftmost" is "smallest initial index"), and the candidate pairs wait in
// a heap ordered by (score, then leftmost), entries made stale by a merge being skipped.
void Tokenizer::MergePairs(std::vector<int32_t>& tokens) const {
  const auto n = static_cast<int32_t>(tokens.size());
  if (n < 2) {
    return;
  }
  struct Node {
    int32_t prev;
    int32_t next;      // n: none
    uint32_t version;  // bumped whenever the token changes or is merged away
  };
  struct Candidate {
    float score;
    int32_t left;
    int32_t right;
    int32_t merged;
    uint32_t left_version;
    uint32_t right_version;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Node> nodes(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    nodes[i] = {i - 1, i + 1, 0};
  }
  std::vector<Candidate> heap;
  heap.reserve(static_cast<size_t>(n));
  std::string scratch;
  auto offer = [&](int32_t left, int32_t right) {
    const int32_t merged = MergeOf(tokens[left], tokens[right], scratch);
    if (merged >= 0) {
      heap.push_back(
          {Score(merged), left, right, merged, nodes[left].version, nodes[right].version});
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    offer(i, i + 1);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    if (nodes[c.left].version != c.left_version || nodes[c.right].version != c.right_version) {
      continue;  // one side changed since this pair was offered
    }
    tokens[c.left] = c.merged;
    ++nodes[c.left].version;
    ++nodes[c.right].version;
    const int32_t after = nodes[c.right].next;
    nodes[c.left].next = after;
    if (after < n) {
      nodes[after].prev = c.left;
    }
    if (nodes[c.left].prev >= 0) {
      offer(nodes[c.left].prev, c.left);
    }
    if (after < n) {
      offer(c.left, after);
    }
  }
  std::vector<int32_t> merged;
  merged.reserve(tokens.size());
  for (int32_t i = 0; i < n; i = nodes[i].next) {
    merged.push_back(tokens[i]);
  }
  tokens = std::move(merged);
}

Status Tokenizer::EncodeLlama2c(std::string_view text, bool space_prefix,
                                std::vector<int32_t>& out) const {
  std::vector<int32_t> tokens;
  tokens.reserve(text.size() + 1);
  auto push_bytes = [&](std::string_view bytes) -> Status {
    for (char c : bytes) {
      int32_t id = static_cast<unsigned char>(c) + kFirstByteToken;
      if (id >= vocab_size()) {
        return Error("encoding text: the vocabulary of " + std::to_string(vocab_size()) +
                     " pieces has no byte piece for byte " +
                     std::to_string(static_cast<unsigned char>(c)));
      }
      tokens.push_back(id);
    }
    return Ok();
  };
  // llama2.c prepends the piece " " (sentencepiece's add_dummy_prefix) to non-empty text.
  if (space_prefix && !text.empty()) {
    int32_t space = Lookup(" ");
    if (space >= 0) {
      tokens.push_back(space);
    } else {
      CH_RETURN_IF_ERROR(push_bytes(" "));
    }
  }
  // One lookup per UTF-8 character (at most 4 bytes); unknown ones become byte pieces.
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start + 1;
    while (end < text.size() && end - start < 4 &&
           (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) {
      ++end;
    }
    std::string_view ch = text.substr(start, end - start);
    int32_t id = Lookup(ch);
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      CH_RETURN_IF_ERROR(push_bytes(ch));
    }
    start = end;
  }
  MergePairs(tokens);
  out.insert(out.end(), tokens.begin(), tokens.end());
  return Ok();
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, EncodeOptions options) const {
  if (kind_ == TokenizerKind::kLlama2c && !options.parse_special) {
    // llama2.c's encode(): BOS takes part in the merges there, and can never merge.
    std::vector<int32_t> tokens;
    tokens.reserve(text.size() + 3);
    if (options.add_bos) tokens.push_back(kBosToken);
    CH_RETURN_IF_ERROR(EncodeLlama2c(text, /*space_prefix=*/true, tokens));
    if (tokens.size() > 1 && options.add_bos) MergePairs(tokens);
    if (options.add_eos) tokens.push_back(kEosToken);
    return tokens;
  }
  if (kind_ != TokenizerKind::kLlama2c) CH_RETURN_IF_ERROR(CheckUtf8(text, "the text"));
  std::vector<Fragment> fragments;
  Partition(text, 0, text.size(), options.parse_special, fragments);
  return EncodeFragments(text, fragments, options);
}

Result<std::vector<int32_t>> Tokenizer::EncodeSegments(std::span<const TextSegment> segments,
                                                       EncodeOptions options) const {
  std::string joined;
  size_t total = 0;
  for (const TextSegment& s : segments) total += s.text.size();
  joined.reserve(total);
  std::vector<Fragment> fragments;
  for (const TextSegment& s : segments) {
    if (kind_ != TokenizerKind::kLlama2c) {
      CH_RETURN_IF_ERROR(CheckUtf8(s.text, s.markup ? "the template's text" : "a message"));
    }
    const size_t base = joined.size();
    joined.append(s.text);
    Partition(joined, base, s.text.size(), s.markup, fragments);
  }
  // Text of neighbouring segments is one text, as in the rendered prompt: only special tokens
  // separate texts.
  std::vector<Fragment> merged;
  merged.reserve(fragments.size());
  for (const Fragment& f : fragments) {
    if (f.token < 0 && !merged.empty() && merged.back().token < 0 &&
        merged.back().offset + merged.back().length == f.offset) {
      merged.back().length += f.length;
    } else {
      merged.push_back(f);
    }
  }
  return EncodeFragments(joined, merged, options);
}

std::string_view Tokenizer::SpecialText(int32_t id) const {
  if (kind_ == TokenizerKind::kLlama2c && id >= 0 &&
      std::cmp_less(id, kLlama2cSpecialText.size())) {
    return kLlama2cSpecialText[static_cast<size_t>(id)];
  }
  return Piece(id);
}

void Tokenizer::Partition(std::string_view joined, size_t base, size_t length, bool parse_special,
                          std::vector<Fragment>& out) const {
  if (length == 0) return;
  std::vector<Fragment> current{{-1, base, length}};
  if (parse_special || has_user_defined_) {
    const uint8_t skipped_unless_parsing =
        TypeBit(TokenType::kControl) | TypeBit(TokenType::kUnknown);
    std::vector<Fragment> next;
    for (int32_t id : special_tokens_) {
      if (!parse_special && (attrs_[static_cast<size_t>(id)] & skipped_unless_parsing) != 0) {
        continue;
      }
      const std::string_view needle = SpecialText(id);
      if (needle.empty()) continue;
      next.clear();
      bool found = false;
      for (const Fragment& f : current) {
        if (f.token >= 0) {
          next.push_back(f);
          continue;
        }
        const size_t end = f.offset + f.length;
        const std::string_view window = joined.substr(0, end);
        size_t pos = f.offset;
        for (;;) {
          const size_t match = window.find(needle, pos);
          if (match == std::string_view::npos) break;
          found = true;
          if (match > pos) next.push_back({-1, pos, match - pos});
          next.push_back({id, match, needle.size()});
          pos = match + needle.size();
        }
        if (pos < end) next.push_back({-1, pos, end - pos});
      }
      if (found) std::swap(current, next);
    }
  }
  out.insert(out.end(), current.begin(), current.end());
}

Result<std::vector<int32_t>> Tokenizer::EncodeFragments(std::string_view joined,
                                                        const std::vector<Fragment>& fragments,
                                                        EncodeOptions options) const {
  std::vector<int32_t> out;
  out.reserve(joined.size() / 3 + 4);
  const bool bos = options.add_bos && bos_ >= 0;
  if (bos) out.push_back(bos_);
  bool prev_special = true;  // the leading-space rule: the start counts as after a special token
  std::string escaped;
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view text = joined.substr(f.offset, f.length);
    switch (kind_) {
      case TokenizerKind::kLlama2c:
        CH_RETURN_IF_ERROR(EncodeLlama2c(text, prev_special, out));
        break;
      case TokenizerKind::kSentencePiece: {
        // llama.cpp: a space before text that starts the prompt or follows a special token,
        // then every space written as U+2581 "▁".
        escaped.clear();
        if (add_space_prefix_ && prev_special) escaped.append(kSentencePieceSpace);
        for (char c : text) {
          if (c == ' ') {
            escaped.append(kSentencePieceSpace);
          } else {
            escaped.push_back(c);
          }
        }
        EncodeSentencePiece(escaped, out);
        break;
      }
      case TokenizerKind::kBytePair:
        CH_RETURN_IF_ERROR(EncodeBytePair(text, out));
        break;
    }
    prev_special = false;
  }
  // Never two: a template that writes bos_token itself already has it.
  if (bos && out.size() >= 2 && out[1] == bos_) out.erase(out.begin());
  if (options.add_eos && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string_view Tokenizer::Decode(int32_t prev_token, int32_t token) const {
  if (token < 0 || token >= vocab_size()) {
    return {};
  }
  const auto i = static_cast<size_t>(token);
  if (kind_ != TokenizerKind::kLlama2c) {
    std::string_view text(decoded_text_.data() + decoded_offsets_[i],
                          decoded_offsets_[i + 1] - decoded_offsets_[i]);
    if (kind_ == TokenizerKind::kSentencePiece && add_space_prefix_ && prev_token == bos_ &&
        !text.empty() && text.front() == ' ') {
      text.remove_prefix(1);
    }
    return text;
  }
  std::string_view piece = Piece(token);
  // After BOS, sentencepiece strips the leading space of the first piece (the dummy prefix).
  if (prev_token == kBosToken && !piece.empty() && piece.front() == ' ') {
    piece.remove_prefix(1);
  }
  int16_t byte = byte_value_[i];
  if (byte >= 0) {
    return {&kAllBytes[static_cast<size_t>(byte)], 1};
  }
  return piece;
}

std::string Tokenizer::Detokenize(std::span<const int32_t> tokens) const {
  std::string out;
  size_t start = 0;
  if (!tokens.empty() && tokens.front() == bos_) start = 1;
  for (size_t i = start; i < tokens.size(); ++i) {
    if (tokens[i] == bos_ || tokens[i] == eos_) continue;
    // The first piece: as after BOS (SentencePiece drops the space its encoding added).
    const int32_t prev = i == start ? bos_ : tokens[i - 1];
    out.append(Decode(prev, tokens[i]));
  }
  return out;
}

std::string_view Tokenizer::DisplayPiece(int32_t token) const {
  if (token >= 0 && token < vocab_size() && IsControl(token)) return SpecialText(token);
  return Decode(-1, token);
}

float Tokenizer::Score(int32_t id) const {
  return id >= 0 && std::cmp_less(id, scores_.size()) ? scores_[static_cast<size_t>(id)] : 0.0F;
}

TokenType Tokenizer::Type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUndefined;
  const uint8_t bits = attrs_[static_cast<size_t>(id)];
  // A promoted token (a user-defined one llama.cpp treats as control) reports control.
  for (TokenType t : {TokenType::kControl, TokenType::kUnknown, TokenType::kByte,
                      TokenType::kUserDefined, TokenType::kUnused, TokenType::kNormal}) {
    if ((bits & TypeBit(t)) != 0) return t;
  }
  return TokenType::kUndefined;
}

bool Tokenizer::IsControl(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return (attrs_[static_cast<size_t>(id)] &
          (TypeBit(TokenType::kControl) | TypeBit(TokenType::kUnknown))) != 0;
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && std::cmp_less(id, is_eog_.size()) && is_eog_[static_cast<size_t>(id)];
}

std::string_view Tokenizer::pre() const {
  return pre_ != nullptr ? std::string_view(pre_->name()) : std::string_view();
}

}  // namespace cellhouse::engine
