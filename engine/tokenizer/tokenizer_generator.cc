// The tokenizer half of generator.h.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <string>
#include <unordered_set>
#include <utility>

#include "engine/formats/atomic_file.h"
#include "engine/formats/generator.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine {

namespace {

// Text the first merges are learned from, so that common English fragments (" the", "ing")
// become pieces and encoded prose is shorter than its characters.
constexpr std::string_view kCorpus =
    "Once upon a time there was a little dog named Sam. Sam liked to run in the park with his "
    "friend Lily. One day the sun was bright and the sky was blue. Lily said, \"Let us play with "
    "the ball!\" Sam was happy and they played all day. When it was time to go home, Sam was "
    "tired but he was very happy. The next morning Tom came to the park. He wanted to play too. "
    "They shared the ball and laughed together. The little dog jumped and the children "
    "clapped. It was the best day ever, and they were friends forever. Every evening their "
    "mother read them a story about a brave cat who lived in a tall tree near the river.";

// Characters outside ASCII that get a piece of their own.
constexpr std::array<std::string_view, 16> kExtraCharacters = {
    "\xC3\xA9",     "\xC3\xA8", "\xC3\xA0",     "\xC3\xBC",     "\xC3\xB6",     "\xC3\xA4",
    "\xC3\xB1",     "\xC3\xA7", "\xE2\x80\x94", "\xE2\x80\x99", "\xE2\x80\x9C", "\xE2\x80\x9D",
    "\xE2\x82\xAC", "\xCE\xBB", "\xE4\xBD\xA0", "\xE5\xA5\xBD"};

constexpr size_t kMaxGeneratedPiece = 16;

struct Piece {
  std::string text;
  float score;
};

class VocabularyBuilder {
 public:
  explicit VocabularyBuilder(uint64_t seed) : rng_(seed == 0 ? 0x2545F4914F6CDD1DULL : seed) {}

  std::vector<Piece> Build(size_t vocab_size) {
    Add("<unk>", 0);
    Add("\n<s>\n", 0);
    Add("\n</s>\n", 0);
    for (int b = 0; b < 256; ++b) {
      std::array<char, 8> name{};
      static_cast<void>(std::snprintf(name.data(), name.size(), "<0x%02X>", b));
      Add(name.data(), 0);
    }
    // Single characters are looked up directly by the encoder; their score never matters.
    for (char c = ' '; c <= '~'; ++c) {
      Add(std::string(1, c), -1e6F);
    }
    for (std::string_view c : kExtraCharacters) {
      Add(std::string(c), -1e6F);
    }
    LearnMerges(vocab_size);
    AddRandomMerges(vocab_size);
    return std::move(pieces_);
  }

 private:
  bool Add(std::string text, float score) {
    if (!known_.insert(text).second) {
      return false;
    }
    pieces_.push_back({std::move(text), score});
    return true;
  }
  // Merge pieces get descending scores, so earlier (more frequent) merges win ties.
  bool AddMerge(std::string text) {
    if (text.size() > kMaxGeneratedPiece) {
      return false;
    }
    float score = -static_cast<float>(merges_);
    if (!Add(std::move(text), score)) {
      return false;
    }
    ++merges_;
    return true;
  }

  // Byte-pair encoding over the corpus's words (each with its leading space, as sentencepiece
  // does): repeatedly merge the most frequent adjacent pair.
  void LearnMerges(size_t vocab_size) {
    std::vector<std::vector<std::string>> words;
    size_t start = 0;
    while (start < kCorpus.size()) {
      size_t end = kCorpus.find(' ', start + 1);
      if (end == std::string_view::npos) {
        end = kCorpus.size();
      }
      std::string_view word = kCorpus.substr(start, end - start);
      std::vector<std::string> symbols = {" "};
      if (word.front() == ' ') {
        word.remove_prefix(1);
      }
      if (start == 0) {
        symbols.clear();
      }
      for (char c : word) {
        symbols.emplace_back(1, c);
      }
      words.push_back(std::move(symbols));
      start = end;
    }
    while (pieces_.size() < vocab_size) {
      std::map<std::pair<std::string, std::string>, int> counts;
      for (const auto& w : words) {
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          ++counts[{w[i], w[i + 1]}];
        }
      }
      auto best = std::max_element(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
        return a.second < b.second;
      });
      if (best == counts.end() || best->second < 2) {
        return;
      }
      const auto [left, right] = best->first;
      if (!AddMerge(left + right)) {
        return;
      }
      for (auto& w : words) {
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          if (w[i] == left && w[i + 1] == right) {
            w[i] += right;
            w.erase(w.begin() + static_cast<ptrdiff_t>(i) + 1);
          }
        }
      }
    }
  }

  // Fills the rest with concatenations of two existing text pieces, drawn at random.
  void AddRandomMerges(size_t vocab_size) {
    const size_t first_text = 3 + 256;
    while (pieces_.size() < vocab_size) {
      const size_t n = pieces_.size() - first_text;
      const Piece& a = pieces_[first_text + Next() % n];
      const Piece& b = pieces_[first_text + Next() % n];
      static_cast<void>(AddMerge(a.text + b.text));
    }
  }

  uint64_t Next() {  // xorshift64
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  uint64_t rng_;
  size_t merges_ = 1;
  std::vector<Piece> pieces_;
  std::unordered_set<std::string> known_;
};

template <typename T>
void Append(std::vector<std::byte>& out, T value) {
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace

Result<std::vector<std::byte>> GenerateTokenizer(int32_t vocab_size, uint64_t seed) {
  if (vocab_size < kMinGeneratedVocab) {
    return Error("generating a tokenizer: vocab_size " + std::to_string(vocab_size) +
                 " is below the minimum of " + std::to_string(kMinGeneratedVocab) +
                 " (specials, 256 bytes and the single characters)");
  }
  std::vector<Piece> pieces = VocabularyBuilder(seed).Build(static_cast<size_t>(vocab_size));
  size_t longest = 0;
  for (const Piece& p : pieces) {
    longest = std::max(longest, p.text.size());
  }
  std::vector<std::byte> out;
  Append(out, static_cast<int32_t>(longest));
  for (const Piece& p : pieces) {
    Append(out, p.score);
    Append(out, static_cast<int32_t>(p.text.size()));
    const auto* text = reinterpret_cast<const std::byte*>(p.text.data());
    out.insert(out.end(), text, text + p.text.size());
  }
  return out;
}

Status WriteTokenizer(int32_t vocab_size, uint64_t seed, const std::string& path) {
  CH_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, GenerateTokenizer(vocab_size, seed));
  CH_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, 0644));
  CH_RETURN_IF_ERROR(file.Write(bytes));
  return file.Commit();
}

}  // namespace cellhouse::engine
