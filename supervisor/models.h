// The models celld serves, by name: what the command line asks for (`--model NAME=PATH`,
// repeatable; a plain `--model FILE`; `--models-dir DIR`), and for each, once running, its zygote
// (which maps that model's weights once, read-only, for all its sessions), celld's own view of
// the file (residency) and the facts policies and admission need.
//
//   CH_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelFlag("qwen=/srv/models/qwen3-0.6b.gguf"));
//   CH_ASSIGN_OR_RETURN(std::vector<ModelSpec> found, ScanModelsDirectory("/srv/models"));
//   CH_RETURN_IF_ERROR(CheckModelNames(specs));  // unique, valid names
//
// The first model given is the default: an open that names none gets it (and the pool's workers
// are its).
#ifndef CELLHOUSE_SUPERVISOR_MODELS_H_
#define CELLHOUSE_SUPERVISOR_MODELS_H_

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mapping.h"
#include "base/result.h"
#include "policy/validate.h"
#include "supervisor/zygote_process.h"

namespace cellhouse::supervisor {

struct ModelSpec {
  std::string name;       // what clients ask for (OpenSession.model, the gateway's `model`)
  std::string path;       // the model file
  std::string tokenizer;  // empty: <path>.tokenizer, or the GGUF file's own vocabulary
};

// "NAME=PATH", or "PATH" (its name is the file name without its last extension).
Result<ModelSpec> ParseModelFlag(std::string_view value);
// The file name of `path` without directories and its last extension: "/m/qwen3.gguf" → "qwen3".
std::string ModelStem(std::string_view path);
// Every model in `dir` (not recursive), sorted by name: GGUF files (by their magic), and other
// regular files with a tokenizer beside them (`FILE.tokenizer`, a llama2.c or int8 checkpoint).
// Anything else is skipped; a directory with no model, or two files with one name, is an error.
Result<std::vector<ModelSpec>> ScanModelsDirectory(const std::string& dir);
// Names unique and valid; at least one model.
Status CheckModelNames(std::span<const ModelSpec> models);
// Whether `path` begins with GGUF's magic (such a file has its own vocabulary; celld does not
// link the engine, so the magic is all it reads).
bool LooksLikeGguf(const std::string& path);

// Policies are checked once against every model: the largest context and the costliest
// position and state of the models served.
policy::ModelFacts EnvelopeFacts(std::span<const policy::ModelFacts> each);

// One served model, once its zygote runs.
struct ServedModel {
  ModelSpec spec;
  std::optional<ZygoteProcess> zygote;  // empty once it ended
  // celld's own read-only view of the file, never touched: mincore tells how much of the
  // weights is in memory right now (metrics, status).
  Mapping view;
  policy::ModelFacts facts;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_MODELS_H_
