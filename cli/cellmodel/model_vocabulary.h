// The tokenizer of a model file for the chat commands: a GGUF file's own vocabulary, or the
// llama2.c tokenizer file beside a checkpoint (FILE.tokenizer, or --tokenizer).
#ifndef CELLHOUSE_CLI_CELLMODEL_MODEL_VOCABULARY_H_
#define CELLHOUSE_CLI_CELLMODEL_MODEL_VOCABULARY_H_

#include <string>

#include "base/result.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::cellmodel {

// `tokenizer_path` empty: the GGUF file's vocabulary, or `model_path`.tokenizer for a llama2.c
// checkpoint (whose header gives the vocabulary size).
Result<engine::Tokenizer> OpenModelTokenizer(const std::string& model_path,
                                             std::string tokenizer_path);

}  // namespace cellhouse::cellmodel

#endif  // CELLHOUSE_CLI_CELLMODEL_MODEL_VOCABULARY_H_
