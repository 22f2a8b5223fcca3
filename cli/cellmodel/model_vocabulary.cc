#include "cli/cellmodel/model_vocabulary.h"

#include <utility>

#include "base/mapping.h"
#include "engine/formats/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer/gguf_vocabulary.h"

namespace cellhouse::cellmodel {

Result<engine::Tokenizer> OpenModelTokenizer(const std::string& model_path,
                                             std::string tokenizer_path) {
  if (tokenizer_path.empty()) {
    Result<Mapping> mapping = Mapping::MapFile(model_path.c_str());
    if (!mapping) return std::move(mapping).error().Context("opening '" + model_path + "'");
    if (engine::IsGguf(mapping->bytes())) {
      CH_ASSIGN_OR_RETURN(engine::GgufFile gguf,
                          engine::GgufFile::Parse(mapping->bytes(), model_path));
      return engine::TokenizerFromGguf(gguf);
    }
    tokenizer_path = model_path + ".tokenizer";
  }
  CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(model_path));
  return engine::Tokenizer::Open(tokenizer_path, model.config().vocab_size);
}

}  // namespace cellhouse::cellmodel
