// The vocabulary of a GGUF file: its tokenizer.ggml.* keys read into a VocabularySpec, and the
// Tokenizer built from it. The one place that knows those key names.
//
//   CH_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Parse(mapping.bytes(), path));
//   CH_ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(gguf));
//   tokenizer.chat_template();   // tokenizer.chat_template, "" when absent
#ifndef CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
#define CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_

#include "base/result.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocabulary.h"

namespace cellhouse::engine {

// Reads the keys; a missing tokenizer.ggml.model or tokens, or a key of the wrong type, is an
// error naming the file and the key.
Result<VocabularySpec> VocabularyFromGguf(const GgufFile& gguf);
Result<Tokenizer> TokenizerFromGguf(const GgufFile& gguf);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
