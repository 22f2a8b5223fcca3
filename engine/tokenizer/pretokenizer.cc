#include "engine/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <utility>

namespace cellhouse::engine {
namespace {

// The expressions, as llama.cpp writes them for each pre-tokenizer type (src/llama-vocab.cpp,
// llm_tokenizer_bpe). The (?i:'s|...) of the Hugging Face files is spelled with explicit case
// classes there, so that it cannot match 'ſ' (U+017F) or 'K' (U+212A) by case folding.
constexpr std::string_view kContractionsAnyCase =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
constexpr std::string_view kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

struct Family {
  std::string_view canonical;
  std::vector<std::string> expressions;
};

Family FamilyOf(std::string_view canonical) {
  const std::string contractions(kContractionsAnyCase);
  if (canonical == "llama3") {
    return {
        canonical,
        {contractions + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}};
  }
  if (canonical == "qwen2") {
    return {canonical,
            {contractions + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                            "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}};
  }
  if (canonical == "gpt2") return {canonical, {std::string(kGpt2)}};
  if (canonical == "smollm") return {canonical, {"\\p{N}", std::string(kGpt2)}};
  // "default": llama.cpp's expressions for a BPE vocabulary of no known type.
  return {canonical,
          {"[\\p{P}\\$\\+<=>\\^~\\|]+", std::string(kGpt2), "\\p{N}+", "[0-9][0-9][0-9]"}};
}

struct Alias {
  std::string_view name;
  std::string_view canonical;
};
// The `tokenizer.ggml.pre` values this engine accepts. Others are refused, not guessed: a wrong
// split silently changes every token id.
constexpr std::array<Alias, 9> kAliases = {{
    {"default", "default"},
    {"gpt-2", "gpt2"},
    {"llama-bpe", "llama3"},
    {"llama3", "llama3"},
    {"llama-v3", "llama3"},
    {"qwen2", "qwen2"},
    {"deepseek-r1-qwen", "qwen2"},
    {"smollm", "smollm"},
    {"phi-2", "gpt2"},
}};

// PCRE2's \s (with UCP: tab, LF, VT, FF, CR and the Z categories) plus U+0085, which is
// White_Space in Unicode and in the references' tables. \S becomes its complement.
std::string WidenWhitespace(std::string_view expression) {
  std::string out;
  out.reserve(expression.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < expression.size(); ++i) {
    const char c = expression[i];
    if (c == '\\' && i + 1 < expression.size()) {
      const char next = expression[++i];
      if (next == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (next == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (c == '[') in_class = true;
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct PreTokenizer::Compiled {
  struct CodeDeleter {
    void operator()(pcre2_code* compiled) const { pcre2_code_free(compiled); }
  };
  std::unique_ptr<pcre2_code, CodeDeleter> code;
};

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

std::vector<std::string_view> PreTokenizer::KnownNames() {
  std::vector<std::string_view> names;
  names.reserve(kAliases.size());
  for (const Alias& a : kAliases) names.push_back(a.name);
  return names;
}

std::string_view PreTokenizer::Canonical(std::string_view pre) {
  for (const Alias& a : kAliases) {
    if (a.name == pre) return a.canonical;
  }
  return {};
}

Result<PreTokenizer> PreTokenizer::Create(std::string_view pre) {
  const std::string_view canonical = Canonical(pre);
  if (canonical.empty()) {
    std::string known;
    for (std::string_view name : KnownNames()) {
      known += (known.empty() ? "" : ", ") + std::string(name);
    }
    return Error("the byte-level BPE pre-tokenizer '" + std::string(pre) +
                 "' (tokenizer.ggml.pre) is not supported; supported: " + known);
  }
  PreTokenizer result;
  result.name_ = std::string(pre);
  for (const std::string& expression : FamilyOf(canonical).expressions) {
    const std::string widened = WidenWhitespace(expression);
    int error = 0;
    PCRE2_SIZE offset = 0;
    // UTF: the pattern and subjects are UTF-8 code points; UCP: \p, \s, \d and [[:...:]] use
    // Unicode properties. No JIT: see the header.
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(widened.data()), widened.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &error, &offset, nullptr);
    if (code == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error, message.data(), message.size());
      return Error("compiling the '" + std::string(pre) + "' pre-tokenizer expression at offset " +
                   std::to_string(offset) + ": " + reinterpret_cast<const char*>(message.data()));
    }
    auto compiled = std::make_unique<Compiled>();
    compiled->code.reset(code);
    result.expressions_.push_back(std::move(compiled));
  }
  return result;
}

namespace {

// The index just past the UTF-8 character that starts at `at` (an empty match steps over it).
size_t NextCharacter(std::string_view text, size_t at) {
  size_t end = at + 1;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) ++end;
  return end;
}

// Splits one piece by one expression: every match and every stretch between matches becomes a
// piece of `out`, in order.
Status SplitPiece(const pcre2_code* code, pcre2_match_data* match, std::string_view piece,
                  std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t start = 0;  // first byte not yet emitted
  size_t search = 0;
  while (search < piece.size()) {
    // The text was checked as UTF-8 once by the caller: NO_UTF_CHECK keeps every call from
    // rescanning the rest of the piece (which would make splitting quadratic).
    const int rc =
        pcre2_match(code, subject, piece.size(), search, PCRE2_NO_UTF_CHECK, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(rc, message.data(), message.size());
      return Error(std::string("splitting text into words: ") +
                   reinterpret_cast<const char*>(message.data()));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end == begin) {  // an empty match (none of ours can): step over one character
      search = NextCharacter(piece, begin);
      continue;
    }
    if (begin > start) out.push_back(piece.substr(start, begin - start));
    out.push_back(piece.substr(begin, end - begin));
    start = end;
    search = end;
  }
  if (start < piece.size()) out.push_back(piece.substr(start));
  return Ok();
}

}  // namespace

Status PreTokenizer::Split(std::string_view text, std::vector<std::string_view>& words) const {
  struct MatchDataDeleter {
    void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
  };
  std::vector<std::string_view> pieces{text};
  std::vector<std::string_view> next;
  for (const auto& expression : expressions_) {
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> match(
        pcre2_match_data_create_from_pattern(expression->code.get(), nullptr));
    if (match == nullptr) return Error("splitting text into words: out of memory");
    next.clear();
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) {
      CH_RETURN_IF_ERROR(SplitPiece(expression->code.get(), match.get(), piece, next));
    }
    std::swap(pieces, next);
  }
  words.insert(words.end(), pieces.begin(), pieces.end());
  return Ok();
}

}  // namespace cellhouse::engine
