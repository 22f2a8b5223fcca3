#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "base/mapping.h"

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

template <typename T>
T ReadLittle(std::span<const std::byte> file, size_t offset) {
  T value;
  std::memcpy(&value, file.data() + offset, sizeof(T));
  return value;
}

// llama2.c starts its search for the best pair at -1e10: a pair scoring no higher never merges.
constexpr float kNoMergeScore = -1e10F;

}  // namespace

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
  t.Index();
  return t;
}

void Tokenizer::Index() {
  const size_t n = scores_.size();
  byte_value_.assign(n, -1);
  byte_token_.assign(256, -1);
  ids_.reserve(n);
  for (size_t i = n; i-- > 0;) {  // backwards, so that the lowest id of a duplicate wins
    std::string_view piece = Piece(static_cast<int32_t>(i));
    byte_value_[i] = ByteValue(piece);
    if (byte_value_[i] >= 0) {
      byte_token_[static_cast<size_t>(byte_value_[i])] = static_cast<int32_t>(i);
    }
    ids_[piece] = static_cast<int32_t>(i);
  }
}

Result<Tokenizer> Tokenizer::FromVocabulary(const Vocabulary& v, std::string_view name) {
  auto refuse = [&](const std::string& why) {
    return Error("reading the vocabulary of '" + std::string(name) + "': " + why);
  };
  const size_t n = v.pieces.size();
  if (n == 0 || n > static_cast<size_t>(INT32_MAX / 2)) {
    return refuse("it has " + std::to_string(n) + " pieces");
  }
  if (v.scores.size() != n) {
    return refuse(std::to_string(n) + " pieces but " + std::to_string(v.scores.size()) + " scores");
  }
  const auto vocab = static_cast<int32_t>(n);
  auto in_range = [vocab](int32_t id) { return id >= 0 && id < vocab; };
  if (!in_range(v.bos) || !in_range(v.eos)) {
    return refuse("BOS " + std::to_string(v.bos) + " or EOS " + std::to_string(v.eos) +
                  " is not one of its " + std::to_string(n) + " pieces");
  }
  for (int32_t id : v.end_of_generation) {
    if (!in_range(id)) {
      return refuse("end-of-generation id " + std::to_string(id) + " is not one of its pieces");
    }
  }
  Tokenizer t;
  size_t text_bytes = 0;
  size_t longest = 1;
  t.offsets_.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(v.scores[i])) {
      return refuse("piece " + std::to_string(i) + " has a NaN score");
    }
    t.offsets_.push_back(static_cast<uint32_t>(text_bytes));
    text_bytes += v.pieces[i].size();
    longest = std::max(longest, v.pieces[i].size());
    if (text_bytes > std::numeric_limits<uint32_t>::max() || longest > kMaxPieceBytes) {
      return refuse("its pieces are too long");
    }
  }
  t.offsets_.push_back(static_cast<uint32_t>(text_bytes));
  t.text_ = std::make_unique<char[]>(text_bytes + 1);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(t.text_.get() + t.offsets_[i], v.pieces[i].data(), v.pieces[i].size());
  }
  t.scores_ = v.scores;
  t.max_token_length_ = static_cast<int32_t>(longest);
  t.bos_ = v.bos;
  t.eos_ = v.eos;
  t.add_bos_ = v.add_bos;
  t.end_of_generation_ = v.end_of_generation;
  t.Index();
  return t;
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) !=
         end_of_generation_.end();
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

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, EncodeOptions options) const {
  std::vector<int32_t> tokens;
  tokens.reserve(text.size() + 3);
  if (options.add_bos) {
    tokens.push_back(bos_);
  }
  auto push_bytes = [&](std::string_view bytes) -> Status {
    for (char c : bytes) {
      // A "<0xHH>" piece; llama2.c's position for it (id b + 3) when the vocabulary names none.
      int32_t id = byte_token_[static_cast<unsigned char>(c)];
      if (id < 0) {
        id = static_cast<unsigned char>(c) + kFirstByteToken;
      }
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
  if (!text.empty()) {
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
  if (options.add_eos) {
    tokens.push_back(eos_);
  }
  return tokens;
}

std::string_view Tokenizer::Decode(int32_t prev_token, int32_t token) const {
  if (token < 0 || token >= vocab_size()) {
    return {};
  }
  std::string_view piece = Piece(token);
  // After BOS, sentencepiece strips the leading space of the first piece (the dummy prefix).
  if (prev_token == bos_ && !piece.empty() && piece.front() == ' ') {
    piece.remove_prefix(1);
  }
  int16_t byte = byte_value_[static_cast<size_t>(token)];
  if (byte >= 0) {
    return {&kAllBytes[static_cast<size_t>(byte)], 1};
  }
  return piece;
}

}  // namespace cellhouse::engine
