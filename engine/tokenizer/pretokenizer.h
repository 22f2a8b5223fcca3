// The pre-tokenizer of a byte-level BPE vocabulary: the regular expressions that cut text into
// words before merges, chosen by the GGUF key `tokenizer.ggml.pre` with the names llama.cpp
// writes. PCRE2 does the matching (UTF + UCP: Unicode classes, look-ahead), compiled once and
// run by its interpreter only: JIT compilation needs executable memory, which the worker's
// seccomp filter and celld's MemoryDenyWriteExecute forbid, so pcre2_jit_* is never called.
//
//   CH_ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizer::Create("llama-bpe"));
//   std::vector<std::string_view> words;
//   CH_RETURN_IF_ERROR(pre.Split("Hello, world!", words));   // "Hello" "," " world" "!"
//
// As llama.cpp's unicode_regex_split, each expression in turn cuts every piece the previous one
// left, keeping both what it matched and the text between matches; look-ahead sees only the
// piece. `\s` also covers U+0085 (NEXT LINE), as in the Unicode White_Space property that
// llama.cpp and Hugging Face's tokenizers use (PCRE2's \s stops at the Z categories).
#ifndef CELLHOUSE_ENGINE_TOKENIZER_PRETOKENIZER_H_
#define CELLHOUSE_ENGINE_TOKENIZER_PRETOKENIZER_H_

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse::engine {

class PreTokenizer {
 public:
  // Refuses a name it does not know, listing the ones it does.
  static Result<PreTokenizer> Create(std::string_view pre);
  // The names Create accepts ("default", "gpt-2", "llama-bpe", ...).
  static std::vector<std::string_view> KnownNames();
  // The canonical name of the expressions `pre` selects ("llama3" for "llama-bpe"), or "".
  static std::string_view Canonical(std::string_view pre);

  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  const std::string& name() const { return name_; }
  // Appends the words of `text` (valid UTF-8; check first) to `words`, as views of `text`.
  // Fails only if PCRE2 does (its match limits, or memory).
  Status Split(std::string_view text, std::vector<std::string_view>& words) const;

 private:
  struct Compiled;
  PreTokenizer() = default;
  std::string name_;
  std::vector<std::unique_ptr<Compiled>> expressions_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_PRETOKENIZER_H_
